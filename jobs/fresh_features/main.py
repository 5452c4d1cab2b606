"""spark-submit entry of the fresh_features stage (the same as `cardscore run ...`; see the stage module).

    spark-submit jobs/fresh_features/main.py --help
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.fresh_features.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/fresh_features/main.py"))
