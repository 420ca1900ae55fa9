"""`Code`: a batch of latent codes as named tensors (e.g. code.f, code.z)."""

from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Union

import torch


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
        return tuple(self._t)

    def items(self) -> Iterator:
        return iter(self._t.items())

    def tensors(self) -> List[torch.Tensor]:
        return list(self._t.values())

    def __len__(self) -> int:
        return next(iter(self._t.values())).shape[0]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={list(v.shape)}" for k, v in self._t.items())
        return f"Code({body})"

    # -- functional helpers (each returns a new Code) --------------------------------------
    def map(self, fn) -> "Code":
        return Code(**{k: fn(v) for k, v in self._t.items()})

    def clone(self) -> "Code":
        return self.map(lambda t: t.clone())

    def detach(self) -> "Code":
        return self.map(lambda t: t.detach())

    def to(self, *args, **kwargs) -> "Code":
        return self.map(lambda t: t.to(*args, **kwargs))

    def requires_grad_(self, flag: bool = True) -> "Code":
        for t in self._t.values():
            t.requires_grad_(flag)
        return self

    def select(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "Code":
        """The codes of some images: code.select([0, 2]); an int keeps the batch dim."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self.map(lambda t: t[index])

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self._t.items()}

    @staticmethod
    def cat(codes: Sequence["Code"]) -> "Code":
        fields = codes[0].fields
        if any(c.fields != fields for c in codes):
            raise ValueError("cannot concatenate codes with different fields")
        return Code(**{k: torch.cat([c[k] for c in codes]) for k in fields})
