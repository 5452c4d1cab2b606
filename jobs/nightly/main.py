"""spark-submit entry of the nightly pipeline (the same as `cardscore nightly`).

    spark-submit jobs/nightly/main.py --date yesterday
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.nightly.pipeline import NIGHTLY

if __name__ == "__main__":
    sys.exit(main(NIGHTLY, prog="jobs/nightly/main.py"))
