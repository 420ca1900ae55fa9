"""Errors raised by the checkpoint loaders."""


class CheckpointError(ValueError):
    """A file that is not a supported generator checkpoint, or is broken.

    The message says what the file looks like and which formats are supported. Raised
    before any model is returned: nothing half-loaded ever escapes.
    """
