"""The library's error types, one per kind of failure.

- `CheckpointError` (a ValueError): a file is not the object it was asked to be (wrong format, wrong
  version, broken or hostile content, weights that do not match their stored config). Raised by every
  reader of files: generators, discriminators, encoders and heads, directions, codes.
- `MissingWeightsError` (a FileNotFoundError): optional third-party weights are not on this machine;
  nothing is downloaded, the message names the file, where it was looked for and what to use instead.
- `FaceNotFoundError` (a ValueError): a photograph in which the face detector finds no face; the message
  names the file and the detector's settings.
- `ModelChoiceError` (a ValueError): a model asked for by name (a perceptual distance, an identity
  embedder) that does not exist or does not fit the images; the message lists what does.
"""


MAX_MESSAGE = 300  # characters of a CheckpointError's message: one line a terminal shows whole


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line (runs of whitespace, newlines included, become one space), at most `limit` characters.

    A longer text keeps its start (the file's name) and its end (what to do instead), joined by ' ... ':
    values read from a hostile file (a 120,000-character class name) never reach the terminal whole.
    """
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    head = (limit - 5) * 2 // 3
    return f"{flat[:head]} ... {flat[len(flat) - (limit - 5 - head):]}"


class CheckpointError(ValueError):
    """A file that is not a supported file of the kind asked for, or is broken.

    The message says what the file looks like and what is expected, on one line of at most
    `MAX_MESSAGE` characters (`one_line`). Raised before any object is returned: nothing half-loaded
    ever escapes.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class MissingWeightsError(FileNotFoundError):
    """Optional third-party weights are not on this machine (and are never downloaded)."""


class FaceNotFoundError(ValueError):
    """No face was found in a photograph (`latentspaces.align`)."""


class ModelChoiceError(ValueError):
    """A model named by a caller (`make_perceptual`, `make_identity`) is unknown or does not fit the images."""


__all__ = ["MAX_MESSAGE", "CheckpointError", "FaceNotFoundError", "MissingWeightsError", "ModelChoiceError", "one_line"]
