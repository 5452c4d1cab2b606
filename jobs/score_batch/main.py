"""spark-submit entry of the score_batch stage (the same as `cardscore run ...`; see the stage module).

    spark-submit jobs/score_batch/main.py --help
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.score_batch.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/score_batch/main.py"))
