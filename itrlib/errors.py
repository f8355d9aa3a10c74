"""Error types: every failure the user can fix raises one of these with a message naming the cause."""


class ItrlibError(Exception):
    """Base class of the suite's own errors."""


class DataError(ItrlibError, ValueError):
    """A dataset file is missing, malformed or inconsistent (the message names the file)."""


class ConfigError(ItrlibError, ValueError):
    """A configuration key is unknown or a value has the wrong type or range."""


class WeightsNotFoundError(ItrlibError, FileNotFoundError):
    """Pretrained weights are not available locally (nothing is downloaded at run time)."""
