"""Compatibility only: the names this module held now live where their concept lives.

- `latentspaces.storage`: atomic writes (`atomic_path`, `atomic_write_text`, `atomic_torch_save`,
  `save_figure`), the safetensors header convention (`save_tensors`, `read_raw_header`, `read_header`,
  `load_tensors`, `tensor_shapes`, `read_tensors`), `load_module`, `PathLike`.
- `latentspaces.file_rules`: the rules for broken or hostile files (`MAX_ABS_WEIGHT`, `FLOAT_DTYPES`,
  `check_tensor`, `config_is_plausible`) and their message helpers (`show`, `shape_text`).
- `latentspaces.images`: `to_uint8`, `from_uint8`, `IMAGES_FORMAT` (and `save_image_file`,
  `load_image_file`, formerly in `experiments.runs`).

Reading an old name here still works, with a DeprecationWarning naming its new place; import it from
there instead. Nothing in the project imports this module.
"""

from __future__ import annotations

import warnings

from . import file_rules, images, storage

MOVED = {
    **{name: storage for name in ("PathLike", "atomic_path", "atomic_torch_save", "atomic_write_text", "load_module",
                                  "load_tensors", "read_header", "read_raw_header", "read_tensors", "save_figure",
                                  "save_tensors", "tensor_shapes")},
    **{name: file_rules for name in ("FLOAT_DTYPES", "MAX_ABS_WEIGHT", "check_tensor", "config_is_plausible",
                                     "shape_text", "show")},
    **{name: images for name in ("IMAGES_FORMAT", "from_uint8", "to_uint8")},
}


def __getattr__(name: str) -> object:
    if name not in MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    new = MOVED[name].__name__
    warnings.warn(f"{__name__}.{name} moved to {new}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(MOVED[name], name)


def __dir__() -> list:
    return sorted([*globals(), *MOVED])


__all__ = sorted(MOVED)
