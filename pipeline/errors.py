"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class TabtwinError(Exception):
    """Bad input a user can fix; the message names the file/column and what to do."""


class IngestError(TabtwinError):
    """A table could not be read."""


class SchemaError(TabtwinError):
    """Metadata or inferred schema does not fit the table."""


class EncodingError(TabtwinError):
    """A table does not fit a fitted encoder."""
