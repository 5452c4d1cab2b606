"""Monitoring: drift statistics, delayed-label performance, alerts and the retraining
trigger's rule are pure (pandas in, rows out: `stats`, `metrics`, `trigger`, `profile`'s
`build_profile`). The I/O edge: `reference` (a version's reference profile from the lake and
MLflow), `table` (the `ops.monitoring` Delta table), `report` (the HTML report), `alerts`'
webhook. The stage that uses them is `jobs/monitor`."""
