"""NVlabs network pickles as data: the records the restricted unpickler (`nvlabs_pickle`) builds.

A persistent NVlabs module (``torch_utils.persistence``) comes back as a `PersistentRecord`: its class
name and its ``__dict__`` (type-checked: parameters and buffers are tensors, submodules are records),
never an instance of the file's own classes. ``dnnlib.util.EasyDict`` comes back as `EasyDict`. The
error types of the pickle reader live here too, beside the records they guard.
"""

from __future__ import annotations

import pickle
from typing import Any, Dict, Iterator, List, Set, Tuple

import torch

from ..errors import CheckpointError

_SUPPORTED = "only NVlabs StyleGAN2 network pickles (stylegan2-ada-pytorch / stylegan3 .pkl) are supported"
# Budgets of a record graph's walk: NVlabs' generators nest 4 modules below G_ema (synthesis.b1024.conv0.affine;
# the fixture's 32 px G_ema walks 31 paths, 4 deep) and a 1024 px config-f generator has 72 module paths. A pickle can share one record under many
# parents (a DAG of 40 levels of {a: n, b: n} is 2^40 paths in 2 KB) or chain records 50,000 deep.
MAX_MODULE_DEPTH = 32
MAX_MODULE_PATHS = 20_000


class UnsafePickleError(pickle.UnpicklingError, CheckpointError):
    """The pickle asks for a global outside the allow-list, or a record is not NVlabs-shaped."""


class CorruptPickleError(CheckpointError):
    """The file is not a complete pickle stream: truncated, corrupt, or another format altogether."""


class MissingChildError(KeyError):
    """`PersistentRecord.child` was asked for a submodule that the record does not have."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict whose keys can also be read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"EasyDict({dict.__repr__(self)})"


# ----------------------------------------------------------------------------------------------
# Module records


def _check_module_state(class_name: str, state: dict) -> None:
    """Type-check the torch.nn.Module bookkeeping entries of a module ``__dict__``."""
    for key, allowed in (("_parameters", (torch.Tensor,)), ("_buffers", (torch.Tensor,)),
                         ("_modules", (PersistentRecord,))):
        table = state.get(key)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise UnsafePickleError(f"malformed NVlabs module record {class_name}: state[{key!r}] is a "
                                    f"{type(table).__name__}, expected a dict")
        for name, value in table.items():
            if not isinstance(name, str):
                raise UnsafePickleError(f"malformed NVlabs module record {class_name}: state[{key!r}] has a "
                                        f"non-string key {name!r}")
            if value is not None and not isinstance(value, allowed):
                raise UnsafePickleError(f"malformed NVlabs module record {class_name}: state[{key!r}][{name!r}] "
                                        f"is a {type(value).__name__}, expected {allowed[0].__name__} or None")
    skip = state.get("_non_persistent_buffers_set")
    if skip is not None and not (isinstance(skip, (set, frozenset)) and all(isinstance(n, str) for n in skip)):
        raise UnsafePickleError(f"malformed NVlabs module record {class_name}: state['_non_persistent_buffers_set'] "
                                "is not a set of names")


class PersistentRecord:
    """One NVlabs network module, as data: its class name and its ``__dict__``.

    Made by the allow-listed stand-in for ``_reconstruct_persistent_obj``; the module source text
    of the pickle is never stored (``__slots__`` keeps it that way).
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict) -> None:
        if not isinstance(class_name, str) or not isinstance(state, dict):
            raise UnsafePickleError("a PersistentRecord needs a str class_name and a dict state")
        _check_module_state(class_name, state)
        self.class_name = class_name
        self.state = state

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the module (``_init_kwargs``, ``conv_clamp``, ...), or `default`."""
        return self.state.get(name, default)

    def _table(self, key: str) -> dict:
        table = self.state.get(key)
        return table if table is not None else {}

    def named_children(self) -> Iterator[Tuple[str, "PersistentRecord"]]:
        """(name, record) for each direct submodule that is not None, in stored order."""
        for name, child in self._table("_modules").items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):  # the state dict may have been edited since __init__
                raise UnsafePickleError(f"malformed NVlabs module record {self.class_name}: _modules[{name!r}] is "
                                        f"a {type(child).__name__}, not a module record")
            yield name, child

    def child(self, name: str) -> "PersistentRecord":
        """The submodule `name` (a dotted path such as ``'synthesis.b4.conv1'`` also works)."""
        rec = self
        walked = []
        for part in name.split("."):
            children = dict(rec.named_children())
            if part not in children:
                where = ".".join(walked) or "<root>"
                raise MissingChildError(f"{rec.class_name} at {where!r} has no submodule {part!r} "
                                        f"(submodules: {sorted(children)})")
            rec = children[part]
            walked.append(part)
        return rec

    def walk(self, prefix: str = "") -> Iterator[Tuple[str, "PersistentRecord"]]:
        """(dotted path, record) for this record and every descendant, parents first.

        Like ``torch.nn.Module.named_modules(prefix)``, except that a submodule shared by two
        parents is reported under both paths (matching `state_dict`). A cycle raises.
        """
        yield from self._walk(prefix, set(), 0, [0])

    def _walk(self, path: str, ancestors: Set[int], depth: int,
              count: List[int]) -> Iterator[Tuple[str, "PersistentRecord"]]:
        if id(self) in ancestors:
            raise UnsafePickleError(f"module records form a cycle at {path[:200]!r}")
        if depth > MAX_MODULE_DEPTH:
            raise UnsafePickleError(f"module records nest deeper than {MAX_MODULE_DEPTH} levels (at "
                                    f"{path[:120]!r}...); NVlabs' generators nest 4: not a network pickle")
        count[0] += 1
        if count[0] > MAX_MODULE_PATHS:
            raise UnsafePickleError(f"module records hold more than {MAX_MODULE_PATHS:,} module paths (a record "
                                    "shared by many parents counts once per path); NVlabs' 1024 px generator has "
                                    "72: not a network pickle")
        # Checked again here, not only in __init__: a pickle can edit a state dict after the record is built.
        _check_module_state(f"{path or '<root>'} ({self.class_name})", self.state)
        yield path, self
        ancestors.add(id(self))
        for name, child in self.named_children():
            yield from child._walk(f"{path}.{name}" if path else name, ancestors, depth + 1, count)
        ancestors.discard(id(self))

    def state_dict(self, prefix: str = "") -> Dict[str, torch.Tensor]:
        """Parameters and persistent buffers of the whole tree, keyed like ``torch.nn.Module.state_dict``.

        Values are detached plain tensors sharing memory with the record, in their stored dtype.
        """
        out: Dict[str, torch.Tensor] = {}
        for path, rec in self.walk():
            base = f"{prefix}{path}." if path else prefix
            for name, value in rec._table("_parameters").items():
                if value is not None:
                    out[base + name] = value.detach()
            skip = rec.state.get("_non_persistent_buffers_set") or set()
            for name, value in rec._table("_buffers").items():
                if value is not None and name not in skip:
                    out[base + name] = value.detach()
        return out

    def __repr__(self) -> str:
        kids = [name for name, _ in self.named_children()]
        return f"PersistentRecord({self.class_name!r}, children={kids})"
