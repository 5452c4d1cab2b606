"""The Feast repo as Feast's own CLI sees it (`feast plan`, `feast apply`, `feast ui`, run from
features/ after `eval "$(cardscore features env)"`).

Every object is built by `features.store.feast_objects` from the cardscore settings, exactly as
`cardscore features apply` does; the settings are the exported config ($CARDSCORE_CONFIG,
`CARDSCORE__...` variables) with the exported lake ($CARDSCORE_FEAST_LAKE_ROOT), see
features/feast_cli.py: a missing or wrong lake stops here with the path it looked at. This
module only names the objects at module level, which is where Feast's CLI looks.
feature_store.yaml takes its paths from the same exported variables.
"""

from cardscore.features.feast_cli import repo_settings
from cardscore.features.store import feast_objects

_objects = feast_objects(repo_settings())

customer, terminal = _objects.entities
gold_customer_features, gold_terminal_features = _objects.sources
customer_features, terminal_features = _objects.views
request_time_features = _objects.request_view
fraud_baseline_v1 = _objects.service
card_fresh_events_offline, card_fresh_events_push, terminal_fresh_events_offline, terminal_fresh_events_push = (
    _objects.fresh_sources
)
card_fresh_events, terminal_fresh_events = _objects.fresh_views
