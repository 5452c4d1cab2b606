"""spark-submit entry of the retraining trigger (the same as `cardscore monitor trigger`).

    spark-submit jobs/retrain/main.py --date 2018-05-01 [--dry-run]
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.retrain.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/retrain/main.py"))
