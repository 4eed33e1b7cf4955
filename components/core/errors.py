"""Structured errors whose messages tell the user what to do next."""


class InterestError(Exception):
    """Base class: the CLI turns these into a one-line message and a non-zero exit."""


class ConfigError(InterestError):
    """params.yaml or an environment override is wrong; the message names the key."""


class DataSourceError(InterestError):
    """Input data can't be found or read; the message names the file and the ways out."""


class DataValidationError(InterestError):
    """A Great Expectations suite failed on an expectation configured to stop the pipeline."""
