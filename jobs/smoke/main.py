"""spark-submit entry of the engine smoke test.

    SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit jobs/smoke/main.py --out file:///tmp/smoke
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.smoke.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/smoke/main.py"))
