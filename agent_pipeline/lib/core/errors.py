"""Errors a user can fix. The CLI prints them as one ``error:`` line; Dagster shows the message.

Kept in a dependency-free module so catching them costs no imports.
"""


class ConfigError(ValueError):
    """A configuration file is missing or malformed; the message names the file and the problem."""


class DatasetError(ValueError):
    """A dataset file cannot be read at all; the message names the file."""


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, missing alias, nothing to roll back to)."""


class StateError(RuntimeError):
    """A file in the state folder (baseline pointer, evaluation) is damaged; names it and how to repair."""
