"""The nightly pipeline for day D: ingest -> features -> materialize -> fresh_features -> score -> monitor -> retrain.

    spark-submit jobs/nightly/main.py --date yesterday
    spark-submit jobs/nightly/main.py --from 2018-04-01 --to 2018-04-30      # backfill, day by day
    python jobs/nightly/main.py --date 2018-05-01 --from-stage score          # resume from a stage
    cardscore nightly --date 2018-05-01                                       # the same, with progress

The night after day D closed:
1. ingest      landing files of D (transactions and the label feed) -> bronze -> silver, gated;
2. features    the snapshot of D+1 (all data up to the end of D; tomorrow's stream needs it),
               and of D too when missing (first night, gaps), gated before publishing;
3. materialize the snapshot of D+1 into the online store, for tomorrow's stream scorer;
4. fresh_features  the fresh (event-time) features of D's transactions (gold.fresh_features),
               when `training.feature_set` reads them (skipped otherwise);
5. score       D's transactions with the champion (skipped, not failed, while there is none),
               gated before publishing;
6. monitor     drift, delayed-label performance and freshness for D, when
               `pipeline.monitoring_enabled`;
7. retrain     the k-of-n retraining trigger (jobs/retrain), when `monitoring.trigger.enabled`.

This module is the composition: the steps, each a stage with the day offset and the options
the night gives it. Schedulers run the same steps as separate tasks with the same arguments
(resources/nightly.job.yml: `--shift-days 1` for the two steps that prepare tomorrow); a test
runs every task's argument list through the stage's real parser and checks it against these
steps. `cardscore.core.pipeline.StageRunner` retries unexpected errors with backoff, records
every stage in the `ops.pipeline_runs` ledger, and resumes a re-run of D at the first stage
that did not succeed; a stage that did runs again when its inputs changed since (each spec's
`inputs`: a corrected landing day re-runs ingest, the D+1 snapshot, the online store, D's scores
and monitoring), saying why (`--force` re-runs everything). A range stops at the first failed day.
Exit codes: 0 ok, 1 a stage failed, 2 usage or engine error, 3 monitoring raised an alert
(the night's data are published).
"""

from __future__ import annotations

from cardscore.core.pipeline import Composition, Step
from cardscore.jobs.build_features.stage import SPEC as FEATURES
from cardscore.jobs.fresh_features.stage import SPEC as FRESH
from cardscore.jobs.ingest.stage import SPEC as INGEST
from cardscore.jobs.materialize.stage import SPEC as MATERIALIZE
from cardscore.jobs.monitor.stage import SPEC as MONITOR
from cardscore.jobs.retrain.stage import SPEC as RETRAIN
from cardscore.jobs.score_batch.stage import SPEC as SCORE

PIPELINE = "nightly"


NIGHTLY = Composition(
    name=PIPELINE,
    description="the nightly pipeline for a day that closed: ingest, features, materialize, fresh features, score, "
                "monitor, retrain",
    steps=(
        Step(INGEST),
        Step(FEATURES, shift_days=1, options={"fill_previous": True}),
        Step(MATERIALIZE, shift_days=1),
        Step(FRESH, options={"if_needed": True}),
        Step(SCORE, options={"if_no_model": "skip"}),
        Step(MONITOR, options={"if_enabled": True}),
        Step(RETRAIN, options={"if_enabled": True}),
    ),
)
