"""The core every other layer builds on: settings, engine, lake, catalog, errors, logs,
registry access and the one stage runner. It imports nothing else from cardscore."""
