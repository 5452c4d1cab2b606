"""The one error type configuration problems raise."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""
