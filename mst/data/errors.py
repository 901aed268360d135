"""Errors of the data layer; each message is the single user-facing line: what is wrong; how to fix it."""


class DataError(ValueError):
    """A data set cannot be built from the configuration (bad split, subset too large, ...)."""


class DatasetMissingError(DataError):
    """The data set's files are not where the configuration says (or are damaged). No download is attempted."""
