"""spark-submit entry of the materialize stage (the same as `cardscore run ...`; see the stage module).

    spark-submit jobs/materialize/main.py --help
"""

import sys

from cardscore.core.runner import main
from cardscore.jobs.materialize.stage import SPEC

if __name__ == "__main__":
    sys.exit(main(SPEC, prog="jobs/materialize/main.py"))
