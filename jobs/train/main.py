"""spark-submit entry of the train stage (the same as `cardscore run ...`; see the stage module).

    spark-submit jobs/train/main.py --help
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.train.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/train/main.py"))
