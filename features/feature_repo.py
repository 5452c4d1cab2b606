"""The Feast repo as Feast's own CLI sees it (`feast apply` run from features/).

Every object is built by `features.store.feast_objects` from the cardscore settings
(`$CARDSCORE_CONFIG`, ./cardscore.yaml, `CARDSCORE__...` variables), exactly as
`cardscore features apply` does; this module only names them at module level, which is where
Feast's CLI looks. feature_store.yaml takes its paths from the variables that
`cardscore features env` prints.
"""

from cardscore.core.config import load_settings
from cardscore.features.store import feast_objects

_objects = feast_objects(load_settings())

customer, terminal = _objects.entities
gold_customer_features, gold_terminal_features = _objects.sources
customer_features, terminal_features = _objects.views
request_time_features = _objects.request_view
fraud_baseline_v1 = _objects.service
