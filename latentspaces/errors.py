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


class CheckpointError(ValueError):
    """A file that is not a supported file of the kind asked for, or is broken.

    The message says what the file looks like and what is expected. Raised before any object is
    returned: nothing half-loaded ever escapes.
    """


class MissingWeightsError(FileNotFoundError):
    """Optional third-party weights are not on this machine (and are never downloaded)."""


class FaceNotFoundError(ValueError):
    """No face was found in a photograph (`latentspaces.align`)."""


class ModelChoiceError(ValueError):
    """A model named by a caller (`make_perceptual`, `make_identity`) is unknown or does not fit the images."""


__all__ = ["CheckpointError", "FaceNotFoundError", "MissingWeightsError", "ModelChoiceError"]
