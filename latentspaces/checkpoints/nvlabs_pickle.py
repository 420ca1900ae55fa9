"""Read NVlabs StyleGAN2 network pickles (stylegan2-ada-pytorch, stylegan3) without running them.

Threat model
------------
An NVlabs ``.pkl`` is a plain ``pickle.dump`` of a dict (``training_set_kwargs, G, D, G_ema,
augment_pipe``).  Every network module in it is stored as the call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta['module_src']`` is the
full Python source of the module that defined the class.  Loading such a file the usual way
(``pickle.load``) imports ``torch_utils``/``dnnlib`` and ``exec``s that source, and a pickle can
in general call any importable function.  Users download these files from anywhere, so we treat
every byte of the file as hostile:

* Nothing named in the file is ever imported.  ``find_class`` only answers from a fixed
  allow-list and maps each allowed name to a small function written here that checks its
  arguments and builds plain data.  Any other name raises :class:`UnsafePickleError` before it
  can be called.
* ``module_src`` is dropped unread; a module becomes a :class:`PersistentRecord` holding only
  the class name and the module ``__dict__`` (parameters, buffers, children, plain attributes).
* The pickle ``BUILD`` opcode (which normally calls ``obj.__setstate__(state)``) is only honoured
  for the freshly made numpy dtypes/arrays it is meant for, after their state has been checked;
  everywhere else it is refused.  That is why this module uses the pure-Python unpickler
  (``pickle._Unpickler``): the C one offers no hook for ``BUILD``.
* Each tensor storage is itself a tiny legacy ``torch.save`` stream; those go through
  ``torch.load(weights_only=True)``, torch's own restricted loader.
* Reads are bounded by the file size, so a corrupt length field cannot ask for gigabytes.

Allow-list (module.name -> what we return)
------------------------------------------
``torch_utils.persistence._reconstruct_persistent_obj``  -> :class:`PersistentRecord`
``dnnlib.util.EasyDict``                                  -> :class:`EasyDict` (a dict subclass)
``collections.OrderedDict``, ``builtins.set``, ``builtins.dict``
``torch._utils._rebuild_parameter`` / ``_rebuild_tensor_v2`` / ``_rebuild_tensor``
``torch.storage._load_from_bytes``                        -> ``torch.load(..., weights_only=True)``
``numpy.dtype``                          -> plain numeric dtypes only (bool, int, uint, float, complex)
``numpy[._]core.multiarray.scalar``      -> numpy scalar rebuilt with ``numpy.frombuffer``
``numpy[._]core.multiarray._reconstruct`` + ``numpy.ndarray`` -> plain numeric arrays (stylegan3)
``numpy[._]core.numeric._frombuffer``    -> the same, as written by pickle protocol 5
``_codecs.encode`` (latin-1 only), ``builtins.bytes`` (no arguments), ``copyreg._reconstructor``
(EasyDict only): what pickle protocols 0-2 use to spell bytes and dict subclasses.
Python-2 spellings (``__builtin__``, ``copy_reg``) map to the same entries.

Errors: :class:`UnsafePickleError` (a ``pickle.UnpicklingError``) when the stream decodes but asks
for something outside the allow-list or does not have the NVlabs shape; :class:`CorruptPickleError`
(a ``ValueError``) when the bytes are not a complete pickle stream at all.  Both derive from the
package's ``CheckpointError``.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import warnings
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..errors import CheckpointError
from ..torch_files import LEGACY_MAGIC
from .nvlabs_records import (_SUPPORTED, CorruptPickleError, EasyDict, MissingChildError, PersistentRecord,
                             UnsafePickleError)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "CorruptPickleError",
    "EasyDict",
    "MissingChildError",
    "PersistentRecord",
    "UnsafePickleError",
    "load_nvlabs_pickle",
]

_NOTHING_RAN = "Nothing from the file was executed."


# ----------------------------------------------------------------------------------------------
# Safe stand-ins for the allow-listed globals that need no file context


class _Marker:
    """Placeholder returned for a class that may only appear as an argument (never called)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<allow-listed name {self.name}>"


_NDARRAY = _Marker("numpy.ndarray")
_PLAIN_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex: raw bytes, no objects
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # names written by protocols 0-2


def _is_int(x: Any) -> bool:
    return type(x) is int  # bool is an int subclass; reject it (and int subclasses) explicitly


def _check_plain_dtype(dt: Any, what: str) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.kind not in _PLAIN_KINDS or dt.fields is not None \
            or dt.subdtype is not None or dt.hasobject:
        raise UnsafePickleError(f"{what}: dtype {dt!r} refused (only plain numeric numpy dtypes are allowed)")
    return dt


def _check_shape(shape: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 64 or not all(_is_int(n) and n >= 0 for n in shape):
        raise UnsafePickleError(f"{what}: shape {shape!r} is not a tuple of non-negative ints")
    return shape


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Protocols 0-2 have no bytes opcode and write bytes b as _codecs.encode(b.decode('latin1'), 'latin1').
    if not (isinstance(text, str) and isinstance(encoding, str) and isinstance(errors, str)) \
            or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError("_codecs.encode is only allowed as encode(str, 'latin1') (how pickle spells bytes)")
    return text.encode("latin-1")


def _empty_bytes(*args: Any) -> bytes:
    # Protocols 0-2 write b'' as bytes(); any argument (e.g. a huge size) is refused.
    if args:
        raise UnsafePickleError("builtins.bytes is only allowed without arguments (how pickle spells b'')")
    return b""


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> dict:
    # Protocols 0/1 write a dict subclass as copyreg._reconstructor(cls, dict, dict(obj)).
    if cls is not EasyDict or base is not dict or not isinstance(state, dict):
        raise UnsafePickleError("copyreg._reconstructor is only allowed for dnnlib.util.EasyDict")
    return EasyDict(state)


def _untyped_of(storage: Any) -> torch.UntypedStorage:
    inner = getattr(storage, "_untyped_storage", None)  # what torch's own _rebuild_tensor uses
    if isinstance(inner, torch.UntypedStorage):
        return inner
    with warnings.catch_warnings():  # .untyped() warns that TypedStorage is deprecated
        warnings.simplefilter("ignore", UserWarning)
        return storage.untyped()


def _tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f"a tensor must be built from a typed storage, got {type(storage).__name__}")
    if not _is_int(offset) or offset < 0:
        raise UnsafePickleError(f"tensor storage offset {offset!r} is not a non-negative int")
    _check_shape(size, "tensor")
    if not isinstance(stride, tuple) or len(stride) != len(size) or not all(_is_int(s) and s >= 0 for s in stride):
        raise UnsafePickleError(f"tensor stride {stride!r} does not match size {size!r}")
    untyped = _untyped_of(storage)
    dtype = storage.dtype
    capacity = untyped.nbytes() // torch.empty((), dtype=dtype).element_size()
    if math.prod(size) > 0:
        # torch.Tensor.set_ would silently grow a resizable storage; we want an error instead.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= capacity:
            raise UnsafePickleError(f"tensor view (offset {offset}, size {size}, stride {stride}) reaches element "
                                    f"{last} of a storage holding {capacity}")
    return torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)


def _check_no_hooks(hooks: Any) -> None:
    # NVlabs/torch always write an empty OrderedDict here; hooks would be callables.
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise UnsafePickleError("tensor carries backward hooks; refused")


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    _check_no_hooks(backward_hooks)
    if metadata:  # python attributes to set on the tensor: never needed for weights
        raise UnsafePickleError("tensor carries extra metadata/attributes; refused")
    if not isinstance(requires_grad, bool):
        raise UnsafePickleError(f"tensor requires_grad {requires_grad!r} is not a bool")
    tensor = _tensor_from_storage(storage, storage_offset, size, stride)
    if requires_grad and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _tensor_from_storage(storage, storage_offset, size, stride)  # older torch spelling


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.nn.Parameter:
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise UnsafePickleError("torch._utils._rebuild_parameter needs (tensor, bool, hooks)")
    _check_no_hooks(backward_hooks)
    return torch.nn.Parameter(data, requires_grad=requires_grad and data.is_floating_point())


def _check_dtype_state(state: Any, dt: np.dtype) -> None:
    # numpy writes (3, byteorder, None, None, None, -1, -1, flags) for a plain dtype. Anything else
    # (fields, subarrays, changed flags such as "holds Python objects") is refused.
    ok = (isinstance(state, tuple) and len(state) == 8 and all(_is_int(state[i]) for i in (0, 5, 6, 7))
          and isinstance(state[1], str) and state[0] == 3 and state[1] in ("<", ">", "|", "=")
          and state[2] is None and state[3] is None and state[4] is None
          and state[5] == -1 and state[6] == -1 and state[7] == dt.flags)
    if not ok:
        raise UnsafePickleError(f"numpy dtype state {state!r} refused (not a plain numeric dtype)")


def _check_array_state(state: Any) -> None:
    # ndarray.__reduce__ writes (1, shape, dtype, is_fortran, raw bytes).
    if not isinstance(state, tuple) or len(state) != 5 or not _is_int(state[0]) or state[0] != 1 \
            or not isinstance(state[3], bool):
        raise UnsafePickleError("numpy array state refused (expected (1, shape, dtype, is_fortran, bytes))")
    shape = _check_shape(state[1], "numpy array")
    dt = _check_plain_dtype(state[2], "numpy array")
    raw = state[4]
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dt.itemsize:
        raise UnsafePickleError(f"numpy array data does not match shape {shape} and dtype {dt}")


# ----------------------------------------------------------------------------------------------
# The unpickler


class _BoundedReader:
    """File wrapper that refuses reads past the end of the file instead of allocating them."""

    def __init__(self, f: io.BufferedReader, size: int) -> None:
        self._f = f
        self._size = size
        self._pos = f.tell()

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if n is None or n < 0:
            n = left
        if n > left:
            raise EOFError(f"a length field asks for {n} bytes at offset {self._pos} but only {left} remain")
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def readline(self) -> bytes:  # protocol 0 text opcodes; bounded by the file itself
        line = self._f.readline()
        self._pos += len(line)
        return line

    def tell(self) -> int:
        return self._pos


class _RestrictedUnpickler(pickle._Unpickler):  # pure-Python unpickler: the C one cannot intercept BUILD
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, reader: _BoundedReader, path: str) -> None:
        super().__init__(reader)
        self._path = path
        self._blobs = 0
        # Objects made by our numpy stand-ins whose single BUILD (state) is still due, by id.
        self._awaiting_state: Dict[int, Any] = {}
        self._allowed: Dict[Tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): self._reconstruct_persistent_obj,
            ("dnnlib.util", "EasyDict"): EasyDict,
            ("collections", "OrderedDict"): OrderedDict,
            ("builtins", "set"): set,
            ("builtins", "dict"): dict,  # protocols 0/1: base-class argument of copyreg._reconstructor
            ("builtins", "bytes"): _empty_bytes,
            ("_codecs", "encode"): _latin1_encode,
            ("copyreg", "_reconstructor"): _copyreg_reconstructor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
            ("torch.storage", "_load_from_bytes"): self._load_storage_blob,
            ("numpy", "dtype"): self._numpy_dtype,
            ("numpy", "ndarray"): _NDARRAY,
        }
        for core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spellings
            self._allowed[(f"{core}.multiarray", "scalar")] = self._numpy_scalar
            self._allowed[(f"{core}.multiarray", "_reconstruct")] = self._numpy_reconstruct
            self._allowed[(f"{core}.numeric", "_frombuffer")] = self._numpy_frombuffer

    # -- names ---------------------------------------------------------------------------------

    def find_class(self, module: str, name: str) -> Any:
        # Never imports anything: unknown names are refused before they could be called.
        key = (_PY2_MODULES.get(module, module), name)
        if key not in self._allowed:
            raise UnsafePickleError(f"{self._path}: refused to load global '{(module + '.' + name)[:100]}': {_SUPPORTED}, "
                                    f"and this name is not one they use. {_NOTHING_RAN}")
        return self._allowed[key]

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: the pickle uses persistent ids ({type(pid).__name__}), which NVlabs "
                                f"network pickles never do; {_SUPPORTED}. {_NOTHING_RAN}")

    def load_build(self) -> None:
        # BUILD normally calls inst.__setstate__(state): allow it only once, on our fresh numpy objects.
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._awaiting_state.get(id(inst)) is inst:
            del self._awaiting_state[id(inst)]
            if isinstance(inst, np.dtype):
                _check_dtype_state(state, inst)
            else:
                _check_array_state(state)
            inst.__setstate__(state)
            return
        if isinstance(inst, (EasyDict, OrderedDict)) and (state is None or (isinstance(state, dict) and not state)):
            return  # dict subclass with an empty instance __dict__: nothing to set
        raise UnsafePickleError(f"{self._path}: refused to set the state of a {type(inst).__name__} object "
                                f"(pickle BUILD); {_SUPPORTED}. {_NOTHING_RAN}")

    dispatch[pickle.BUILD[0]] = load_build

    # -- stand-ins that need the file context ---------------------------------------------------

    def _reconstruct_persistent_obj(self, meta: Any) -> PersistentRecord:
        def bad(why: str) -> UnsafePickleError:
            return UnsafePickleError(f"{self._path}: malformed NVlabs persistent-class record: {why}; {_SUPPORTED}. "
                                     f"{_NOTHING_RAN}")

        if not isinstance(meta, dict):
            raise bad(f"expected a dict, got a {type(meta).__name__}")
        kind = meta.get("type")
        if not (isinstance(kind, str) and kind == "class"):
            raise bad(f"type is {kind!r}, expected 'class'")
        class_name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(class_name, str):
            raise bad(f"class_name is a {type(class_name).__name__}, expected str")
        if not isinstance(state, dict):
            raise bad(f"state of {class_name!r} is a {type(state).__name__}, expected dict")
        # meta['module_src'] is deliberately never looked at: it is the code NVlabs' loader would exec.
        try:
            return PersistentRecord(class_name, state)
        except UnsafePickleError as e:
            raise UnsafePickleError(f"{self._path}: {e}; {_SUPPORTED}. {_NOTHING_RAN}") from None

    def _load_storage_blob(self, blob: Any) -> torch.storage.TypedStorage:
        self._blobs += 1
        where = f"{self._path}: tensor storage #{self._blobs}"
        if not isinstance(blob, (bytes, bytearray)):
            raise UnsafePickleError(f"{where}: torch.storage._load_from_bytes needs bytes, got {type(blob).__name__}")
        try:
            # Each blob is a legacy torch.save stream of one storage; torch's weights-only loader reads it.
            storage = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln]
            if lines:
                raise UnsafePickleError(f"{where} was refused by torch's weights-only loader ({lines[0]}); "
                                        f"{_SUPPORTED}. {_NOTHING_RAN}") from None
            raise CorruptPickleError(f"{where} is not a readable torch.save stream: "
                                     f"{' '.join(str(e).split())[:300]}") from None
        except Exception as e:
            raise CorruptPickleError(f"{where} is not a readable torch.save stream: {type(e).__name__}: {e}") from None
        if not isinstance(storage, torch.storage.TypedStorage):
            raise UnsafePickleError(f"{where} holds a {type(storage).__name__}, expected a tensor storage")
        return storage

    def _numpy_dtype(self, obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
        if not isinstance(obj, str) or not isinstance(align, bool) or not isinstance(copy, bool) or len(obj) > 8:
            raise UnsafePickleError(f"{self._path}: numpy.dtype{(obj, align, copy)!r} refused")
        try:
            plain = np.dtype(obj)
        except TypeError:
            raise UnsafePickleError(f"{self._path}: unknown numpy dtype {obj!r}") from None
        _check_plain_dtype(plain, self._path)
        # A private copy (as numpy itself does): the BUILD that follows sets its byte order in
        # place, which must never touch numpy's shared dtype singletons.
        dt = np.dtype(obj, align, True)
        self._awaiting_state[id(dt)] = dt
        return dt

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> np.generic:
        dt = _check_plain_dtype(dtype, f"{self._path}: numpy scalar")
        if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
            raise UnsafePickleError(f"{self._path}: numpy scalar of {dt} needs {dt.itemsize} raw bytes")
        return np.frombuffer(bytes(data), dtype=dt)[0]

    def _numpy_reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
        # ndarray.__reduce__ writes _reconstruct(ndarray, (0,), b'b') and then the real data via BUILD.
        if subtype is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,) \
                or not isinstance(typecode, (bytes, str)) or typecode not in (b"b", "b"):
            raise UnsafePickleError(f"{self._path}: numpy _reconstruct{(subtype, shape, typecode)!r} refused "
                                    "(only plain numpy.ndarray is allowed)")
        arr = np.empty((0,), dtype=np.int8)
        self._awaiting_state[id(arr)] = arr
        return arr

    def _numpy_frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        # Protocol 5 writes arrays as _frombuffer(PickleBuffer, dtype, shape, order).
        dt = _check_plain_dtype(dtype, f"{self._path}: numpy array")
        shape = _check_shape(shape, f"{self._path}: numpy array")
        if not isinstance(buf, (bytes, bytearray)) or len(buf) != math.prod(shape) * dt.itemsize \
                or not isinstance(order, str) or order not in ("C", "F"):
            raise UnsafePickleError(f"{self._path}: numpy array data does not match shape {shape} and dtype {dt}")
        return np.frombuffer(bytes(buf), dtype=dt).reshape(shape, order=order).copy(order="K")


# ----------------------------------------------------------------------------------------------
# Entry point


def _describe_non_pickle(head: bytes, size: int) -> Optional[str]:
    """What the file looks like when it clearly is not a pickle; None when it may be one."""
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return "starts with PK: looks like a torch.save zip archive (or another zip file), not an NVlabs pickle"
    if head.startswith(LEGACY_MAGIC):
        return "starts with torch's magic number: looks like a legacy torch.save file, not an NVlabs pickle"
    if head[:1] == b"\x80":
        if len(head) < 2 or not 2 <= head[1] <= 5:
            proto = head[1] if len(head) > 1 else "?"
            return f"pickle protocol {proto} is not one Python writes (expected 2-5)"
        return None
    if head[:1] in (b"(", b"}", b"]", b"c"):  # protocols 0/1 have no header; a dict starts like this
        return None
    if head.startswith(b"\x1f\x8b"):
        return "starts with 1f 8b: looks like a gzip file; decompress it first"
    if head.startswith(b"\x93NUMPY"):
        return "looks like a numpy .npy file, not an NVlabs pickle"
    if head.startswith(b"\x89HDF"):
        return "looks like an HDF5 file (Keras/TensorFlow?), not an NVlabs pickle"
    if len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "looks like a safetensors file, not an NVlabs pickle"
    return f"does not start like a pickle stream (first bytes {head[:8].hex(' ')})"


def load_nvlabs_pickle(path: PathLike) -> dict:
    """Return the top-level dict of an NVlabs network pickle, reading it without executing anything.

    Networks (``G``, ``D``, ``G_ema``, ``augment_pipe``) come back as :class:`PersistentRecord`
    trees (``None`` where absent); ``dnnlib.EasyDict`` values come back as :class:`EasyDict`.
    Note that the same record object may appear under several keys (NVlabs often pickles
    ``G_ema`` as a reference to ``G``).

    Raises UnsafePickleError for anything outside the allow-list and CorruptPickleError when the
    file is truncated, corrupt, or not a pickle at all.
    """
    path_str = os.fspath(path)
    if isinstance(path_str, bytes):
        path_str = os.fsdecode(path_str)
    size = os.path.getsize(path_str)
    with open(path_str, "rb") as f:
        what = _describe_non_pickle(f.read(16), size)
        if what is not None:
            raise CorruptPickleError(f"{path_str}: {what}; {_SUPPORTED}")
        f.seek(0)
        reader = _BoundedReader(f, size)
        unpickler = _RestrictedUnpickler(reader, path_str)
        expected = "expected a complete NVlabs network pickle"
        try:
            result = unpickler.load()
        except UnsafePickleError as e:
            if path_str in str(e):
                raise
            # refusals from the file-independent helpers: say which file and what we support
            raise UnsafePickleError(f"{path_str}: {e}; {_SUPPORTED}. {_NOTHING_RAN}") from None
        except CheckpointError:
            raise
        except EOFError:
            raise CorruptPickleError(f"{path_str}: the file is truncated: the pickle stream ends at byte "
                                     f"{reader.tell()} of {size}; {expected}. Re-download or re-copy it.") from None
        except Exception as e:  # anything else the stream provoked (bad opcode, bad memo index, ...)
            kind = "truncated" if "truncated" in str(e) or "exhausted" in str(e) else "corrupt"
            if type(e) is KeyError and isinstance(e.args[0], int):  # the pure-Python unpickler's opcode lookup
                detail = f"unknown pickle opcode 0x{e.args[0]:02x}"
            else:
                detail = f"{type(e).__name__}: {e}"
            raise CorruptPickleError(f"{path_str}: the file is {kind}: not a valid pickle stream near byte "
                                     f"{reader.tell()} of {size} ({detail[:80]}); {expected}.") from None
        finally:
            unpickler.memo.clear()  # drop the last references to module_src strings early

    if not isinstance(result, dict):
        raise UnsafePickleError(f"{path_str}: the pickle holds a {type(result).__name__}, not the NVlabs network "
                                f"dict (training_set_kwargs, G, D, G_ema, augment_pipe); {_SUPPORTED}. {_NOTHING_RAN}")
    for key, value in result.items():
        if isinstance(value, PersistentRecord):
            try:  # the pickle can edit a record's state after it was built: check each tree once now
                for _ in value.walk(str(key)):
                    pass
            except UnsafePickleError as e:
                raise UnsafePickleError(f"{path_str}: {e}; {_SUPPORTED}. {_NOTHING_RAN}") from None
    return result
