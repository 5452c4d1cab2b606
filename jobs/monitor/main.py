"""spark-submit entry of the monitor stage (the same as `cardscore run ...`; see the stage module).

    spark-submit jobs/monitor/main.py --help
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.monitor.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/monitor/main.py"))
