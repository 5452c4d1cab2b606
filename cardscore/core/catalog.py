"""Logical names of the project's tables. A name `layer.table` lives at `<lake root>/layer/table`."""

BRONZE_TRANSACTIONS = "bronze.transactions"
BRONZE_LABELS = "bronze.labels"
SILVER_TRANSACTIONS = "silver.transactions"
SILVER_LABELS = "silver.labels"
SILVER_LABEL_REPORTS = "silver.label_reports"  # every report (silver.labels: the latest per id)
QUARANTINE = "quarantine.records"
INGEST_LOADS = "ops.ingest_loads"  # which landing files were loaded, by which load id
LANDING_CORRECTIONS = "ops.landing_corrections"  # landing files superseded or retracted: who, why, when

CUSTOMER_FEATURES = "gold.customer_features"
TERMINAL_FEATURES = "gold.terminal_features"
PREDICTIONS = "gold.predictions"
FRESH_FEATURES = "gold.fresh_features"  # point-in-time fresh features per transaction (tx_date)

PIPELINE_RUNS = "ops.pipeline_runs"  # the nightly run ledger
MONITORING = "ops.monitoring"
