"""The one error type of checkpoint handling: a readable message that names the file."""


class CheckpointError(Exception):
    """A checkpoint cannot be found, read or used. `str(err)` is a complete one-line message."""
