"""spark-submit entry of the ingest stage (the same as `cardscore run ingest`).

    spark-submit jobs/ingest/main.py --date 2018-04-01
    python jobs/ingest/main.py --from 2018-04-01 --to 2018-04-30 --remote sc://127.0.0.1:15002
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.ingest.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/ingest/main.py"))
