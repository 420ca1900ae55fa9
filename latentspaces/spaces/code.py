"""`Code`: a batch of latent codes as named tensors (e.g. code.f, code.z), and the code file format.

Code files (`Code.save` / `read_code_file`) are safetensors in the storage layer's convention, format
"latentspaces.code" version 1: tensors `code.<field>` [N, ...] and optionally `images` (uint8
[N, 3, R, R], the codes' renderings); header `space` (the space's name), `generator_fingerprint`
(`latentspaces.fingerprints.generator_fingerprint` of the generator the codes belong to; absent in
files written before it was recorded) and `meta` (free-form JSON). Files of earlier versions (no
format in the header: `code.`-prefixed keys from `compare`, plain keys from `invert`) are still read.

A code means something only to the generator it was inverted with: `CodeFile.check_generator(G)`
refuses another generator (CheckpointError naming the file and both fingerprints) and warns when the
file does not say. Codes holding NaN or inf are refused when read.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch

from ..errors import CheckpointError
from ..fingerprints import check_sidecar, generator_fingerprint
from ..file_rules import check_tensor
from ..storage import load_tensors, read_raw_header, save_tensors
from ..torch_files import load_torch_file

CODE_FORMAT = "latentspaces.code"


class Code:
    """Named tensors describing N latent codes of one space; every field has batch size N first.

    Field names used by the spaces: `z` (Z-type codes), `w` (W-type), `v` (whitened P_N),
    `s` (flattened style vectors), `f` (F-space base feature [N, C, h, w]).

        code = Code(f=torch.zeros(2, 256, 8, 8), z=torch.randn(2, 6, 512))
        code.f, code["z"], code.fields, len(code)
    """

    __slots__ = ("_t",)

    def __init__(self, **tensors: torch.Tensor):
        if not tensors:
            raise ValueError("a Code needs at least one named tensor")
        n = None
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"Code field {name!r} must be a tensor, got {type(t).__name__}")
            if t.ndim < 2:
                raise ValueError(f"Code field {name!r} must be batched [N, ...], got shape {tuple(t.shape)}")
            if n is not None and t.shape[0] != n:
                raise ValueError(f"Code fields disagree on the batch size: {name!r} has {t.shape[0]}, expected {n}")
            n = t.shape[0]
        object.__setattr__(self, "_t", dict(tensors))

    # -- access ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> torch.Tensor:
        try:
            return object.__getattribute__(self, "_t")[name]
        except KeyError:
            raise AttributeError(f"this code has no field {name!r}; fields: {list(self._t)}") from None

    def __setattr__(self, name: str, value: torch.Tensor) -> None:
        self[name] = value

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.__getattr__(name)

    def __setitem__(self, name: str, value: torch.Tensor) -> None:
        if name not in self._t:
            raise AttributeError(f"cannot add field {name!r}; fields: {list(self._t)}")
        if value.shape != self._t[name].shape:
            raise ValueError(f"field {name!r} has shape {tuple(self._t[name].shape)}, got {tuple(value.shape)}")
        self._t[name] = value

    @property
    def fields(self) -> tuple:
        """The names of the tensors, in the order given."""
        return tuple(self._t)

    def items(self) -> Iterator:
        """(name, tensor) pairs, in field order."""
        return iter(self._t.items())

    def tensors(self) -> List[torch.Tensor]:
        """The tensors, in field order."""
        return list(self._t.values())

    def __len__(self) -> int:
        return next(iter(self._t.values())).shape[0]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={list(v.shape)}" for k, v in self._t.items())
        return f"Code({body})"

    # -- functional helpers (each returns a new Code) --------------------------------------
    def map(self, fn) -> "Code":
        """A Code of fn(tensor) for every field (fn must keep the batch dimension first)."""
        return Code(**{k: fn(v) for k, v in self._t.items()})

    def clone(self) -> "Code":
        """A Code of copies of the tensors."""
        return self.map(lambda t: t.clone())

    def detach(self) -> "Code":
        """A Code of the tensors detached from the autograd graph (sharing memory)."""
        return self.map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> "Code":
        """A Code of tensor.to(*args, **kwargs) for every field (device and/or dtype)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def requires_grad_(self, flag: bool = True) -> "Code":
        """Set requires_grad on every tensor in place; returns self (the optimizer's leaves)."""
        for t in self._t.values():
            t.requires_grad_(flag)
        return self

    def select(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "Code":
        """The codes of some images: code.select([0, 2]); an int keeps the batch dim."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self.map(lambda t: t[index])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """{field: tensor}: what `save` writes (under 'code.<field>')."""
        return {k: v.detach().cpu() for k, v in self._t.items()}

    def save(self, path: Union[str, os.PathLike], space: str = "", images: Optional[torch.Tensor] = None,
             generator_fingerprint: str = "", **meta: object) -> None:
        """Write the codes (and optionally their uint8 images [N, 3, R, R]) to a code file, atomically.

        space: the space's name; generator_fingerprint: `latentspaces.fingerprints.generator_fingerprint(G)`
        of the generator they were inverted with (give it: files without one cannot be checked when read
        back); meta: free-form JSON-able values (steps, settings, ...).
        """
        tensors = {f"code.{k}": v for k, v in self._t.items()}
        if images is not None:
            if images.dtype != torch.uint8 or images.shape[0] != len(self):
                raise ValueError(f"images must be uint8 [{len(self)}, 3, R, R] (latentspaces.images.to_uint8), got "
                                 f"{images.dtype} {tuple(images.shape)}")
            tensors["images"] = images
        header = {"space": space, "meta": meta}
        if generator_fingerprint:
            header["generator_fingerprint"] = generator_fingerprint
        save_tensors(path, tensors, CODE_FORMAT, 1, **header)

    @staticmethod
    def load(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> "Code":
        """The codes of a code file (see `read_code_file` for its space, images and metadata)."""
        return read_code_file(path, device).code

    @staticmethod
    def cat(codes: Sequence["Code"]) -> "Code":
        """The codes of several Code objects of one space, concatenated along the batch."""
        fields = codes[0].fields
        if any(c.fields != fields for c in codes):
            raise ValueError("cannot concatenate codes with different fields")
        return Code(**{k: torch.cat([c[k] for c in codes]) for k in fields})


@dataclass
class CodeFile:
    """The contents of a code file: codes, the space they belong to ('' when unknown), images or None, meta,
    the fingerprint of their generator ('' when the file does not record it) and the file's path."""

    code: Code
    space: str = ""
    images: Optional[torch.Tensor] = None
    meta: dict = field(default_factory=dict)
    generator_fingerprint: str = ""
    path: str = ""

    @property
    def space_options(self) -> Dict[str, object]:
        """The options of the space the codes render in (`LatentSpace.options`: the truncation of a recipe that
        truncates), recorded as meta['space_options']; {} when the file records none. Rebuild the space with
        `build_space(file.space, G, **file.space_options)`. CheckpointError for a record that is not one."""
        options = self.meta.get("space_options", {})
        if not isinstance(options, dict) or set(options) - {"truncation_psi", "truncation_cutoff"}:
            raise CheckpointError(f"{self.path}: meta.space_options must be an object with truncation_psi and "
                                  f"truncation_cutoff, got {options!r}")
        if not options:
            return {}
        psi, cutoff = options.get("truncation_psi"), options.get("truncation_cutoff")
        good_psi = isinstance(psi, (int, float)) and not isinstance(psi, bool) and 0 < psi <= 1
        good_cutoff = cutoff is None or (isinstance(cutoff, int) and not isinstance(cutoff, bool) and cutoff >= 1)
        if not (good_psi and good_cutoff):
            raise CheckpointError(f"{self.path}: meta.space_options holds truncation_psi {psi!r} (expected a number in "
                                  f"(0, 1]) and truncation_cutoff {cutoff!r} (expected a whole number >= 1 or null)")
        return {"truncation_psi": float(psi), "truncation_cutoff": cutoff}

    def check_generator(self, G: torch.nn.Module) -> None:
        """Refuse (CheckpointError) codes inverted with a generator other than G; warn when the file does not say."""
        if not self.generator_fingerprint:
            warnings.warn(f"{self.path}: the file does not record which generator its codes were inverted with "
                          "(written before fingerprints were recorded); they are used as if with this one",
                          stacklevel=2)
            return
        mine = generator_fingerprint(G)
        if mine != self.generator_fingerprint:
            raise CheckpointError(f"{self.path}: codes inverted with generator {self.generator_fingerprint}, not with "
                                  f"this one ({mine}); pass the generator they were inverted with, or invert again")


def _read_ws_tensor(path: str, device: Union[str, torch.device], generator: Optional[torch.nn.Module]) -> CodeFile:
    """A torch.save'd ws tensor (PTI's pivot) as a W+ CodeFile, refused unless floating, finite and [N, L, C]."""
    ws = load_torch_file(path, "ws tensor (PTI pivot)", hint="PTI saves each pivot as one tensor [1, 18, 512].")
    if not isinstance(ws, torch.Tensor) or ws.ndim not in (2, 3):
        what = f"shape {list(ws.shape)}" if isinstance(ws, torch.Tensor) else f"a {type(ws).__name__}"
        raise CheckpointError(f"{path}: holds {what}; expected ws [N, num_ws, w_dim] or [num_ws, w_dim] (PTI's pivot)")
    ws = check_tensor("ws", ws.detach(), None, path).float()
    ws = ws[None] if ws.ndim == 2 else ws
    if generator is not None and tuple(ws.shape[1:]) != (generator.num_ws, generator.w_dim):
        raise CheckpointError(f"{path}: ws of {ws.shape[1]} x {ws.shape[2]}; the generator takes {generator.num_ws} x "
                              f"{generator.w_dim}")
    return CodeFile(Code(w=ws.to(device)), "WPlus", None, {"source": f"ws tensor {os.path.basename(path)}"}, path=path)


def read_code_file(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                   generator: Optional[torch.nn.Module] = None) -> CodeFile:
    """Read a code file written by `Code.save`, or by earlier versions of the project (no format header), or a
    torch.save'd ws tensor [N, num_ws, w_dim] / [num_ws, w_dim] such as PTI's pivots (`embeddings/.../0.pt`,
    [1, 18, 512]), read weights-only as W+ codes (space 'WPlus', no images).

    With `generator`, also `check_generator(generator)`: codes of another generator are refused (a ws tensor
    records no generator: its w_dim and row count are checked against it instead).
    """
    path = os.fspath(path)
    check_sidecar(path)
    with open(path, "rb") as f:
        torch_file = f.read(4) == b"PK\x03\x04"
    if torch_file:
        return _read_ws_tensor(path, device, generator)
    raw = read_raw_header(path)
    if raw.get("format") not in (None, CODE_FORMAT):
        raise CheckpointError(f"{path}: a safetensors file, but not a latentspaces code file (format="
                              f"{raw.get('format')!r}, expected {CODE_FORMAT!r})")
    legacy = raw.get("format") is None
    tensors, header = load_tensors(path, None if legacy else CODE_FORMAT, device=device)
    images = tensors.pop("images", None)
    prefixed = {k[5:]: v for k, v in tensors.items() if k.startswith("code.")}
    fields = prefixed if prefixed or not legacy else tensors  # legacy `invert` files: plain field names
    if not fields:
        raise CheckpointError(f"{path}: a code file without codes (tensors: {sorted(tensors)})")
    try:
        code = Code(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the stored codes are inconsistent ({e})") from e
    bad = [k for k, v in code.items() if not v.dtype.is_floating_point or not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: code field(s) {bad} hold NaN, inf or non-float values")
    if legacy:  # earlier files kept plain strings in the header
        meta = {k: v for k, v in raw.items() if k != "space"}
        out = CodeFile(code, raw.get("space", ""), images, meta, path=path)
    else:
        meta, space, fingerprint = header.get("meta") or {}, header.get("space", ""), header.get("generator_fingerprint") or ""
        if not isinstance(meta, dict) or not isinstance(space, str) or not isinstance(fingerprint, str):
            raise CheckpointError(f"{path}: header fields meta (an object), space and generator_fingerprint (strings) "
                                  f"hold {type(meta).__name__}, {type(space).__name__}, {type(fingerprint).__name__}")
        out = CodeFile(code, space, images, dict(meta), fingerprint, path)
    if generator is not None:
        out.check_generator(generator)
    return out
