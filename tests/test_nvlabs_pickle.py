"""Tests for the restricted NVlabs network-pickle reader (latentspaces.checkpoints.nvlabs_pickle)."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import pickletools
import subprocess
import sys
import time
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import latentspaces as ls
from latentspaces.errors import CheckpointError
from latentspaces.checkpoints.nvlabs_pickle import (
    CorruptPickleError,
    EasyDict,
    MissingChildError,
    PersistentRecord,
    UnsafePickleError,
    load_nvlabs_pickle,
)
from latentspaces.checkpoints.nvlabs_archive import is_nvlabs_module_archive, load_nvlabs_module_archive

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "nvlabs_ada_g32.pkl"   # in the repository: never skipped

# Every global the reader accepts, spelled as pickle writes them (protocols 0-2 use the Python 2 names).
ALLOWED_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict", "collections.OrderedDict",
    "builtins.set", "__builtin__.set", "builtins.dict", "__builtin__.dict", "builtins.bytes", "__builtin__.bytes",
    "_codecs.encode", "copyreg._reconstructor", "copy_reg._reconstructor",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
    "torch.storage._load_from_bytes", "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
}


# ------------------------------------------------------------------------------------------------
# Helpers: scanning pickles, and writing NVlabs-style pickles without the NVlabs code


def globals_in(data: bytes) -> set:
    """'module.name' for every GLOBAL / STACK_GLOBAL in a pickle, found with pickletools.genops.

    STACK_GLOBAL takes its two names from the stack, often via the memo, so strings are tracked
    through MEMOIZE / PUT / GET.
    """
    found, memo, recent = set(), {}, []
    top = None  # what the last pushing opcode left on top of the stack (a str, or None for other values)
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            found.add(arg.replace(" ", "."))
            top = None
        elif name == "STACK_GLOBAL":
            found.add(f"{recent[-2]}.{recent[-1]}")
            top = None
        elif name == "MEMOIZE":
            memo[len(memo)] = top
            continue
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = top
            continue
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            top = memo.get(arg)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                      "SHORT_BINSTRING"):
            top = arg
        elif name in ("FRAME", "PROTO"):
            continue
        else:
            top = None
        recent = (recent + [top])[-2:]
    return found


class _Call:
    """Pickles as the call fn(*args) (plus an optional BUILD state): how hostile pickles are made."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _never_called(*args, **kwargs):  # stand-in for NVlabs' reconstruct function while dumping
    raise AssertionError("the stand-in reconstruct function must never run")


@contextmanager
def nvlabs_names():
    """Register fake `torch_utils.persistence` and `dnnlib.util` modules so pickle can *write* their names.

    They are removed again before anything is loaded, so a loader that imported names from the file
    would fail rather than find them.
    """
    persistence = types.ModuleType("torch_utils.persistence")
    fn = types.FunctionType(_never_called.__code__, {}, "_reconstruct_persistent_obj")
    fn.__module__, fn.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = fn
    util = types.ModuleType("dnnlib.util")
    fake_easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    util.EasyDict = fake_easydict
    torch_utils, dnnlib = types.ModuleType("torch_utils"), types.ModuleType("dnnlib")
    torch_utils.persistence, dnnlib.util = persistence, util
    fakes = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib,
             "dnnlib.util": util}
    with mock.patch.dict(sys.modules, fakes):
        yield types.SimpleNamespace(reconstruct=fn, EasyDict=fake_easydict)
    assert "torch_utils.persistence" not in sys.modules


def record_call(names, class_name, state, module_src="# omitted\n", overrides=None):
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
    meta.update(overrides or {})
    return _Call(names.reconstruct, (meta,))


def to_nvlabs_objects(obj, names, memo=None):
    """Turn loaded records back into objects that pickle exactly as NVlabs writes them."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, PersistentRecord):
        meta = dict(type="class", version=6, module_src="# omitted\n", class_name=obj.class_name, state=None)
        out = memo[id(obj)] = _Call(names.reconstruct, (meta,))
        meta["state"] = to_nvlabs_objects(obj.state, names, memo)
    elif isinstance(obj, EasyDict):
        out = memo[id(obj)] = names.EasyDict()
        out.update({k: to_nvlabs_objects(v, names, memo) for k, v in obj.items()})
    elif isinstance(obj, dict):  # dict and OrderedDict
        out = memo[id(obj)] = type(obj)()
        out.update((k, to_nvlabs_objects(v, names, memo)) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set)):
        out = memo[id(obj)] = type(obj)(to_nvlabs_objects(v, names, memo) for v in obj)
    else:  # tensors, Parameters, numpy scalars/arrays, plain values: pickled by their own reduce
        out = obj
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def deep_strings(obj, seen=None):
    """Every str reachable from obj (containers, record state, dict keys)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, PersistentRecord):
        yield obj.class_name
        yield from deep_strings(obj.state, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from deep_strings(k, seen)
            yield from deep_strings(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from deep_strings(v, seen)


def module_state(**extra):
    """A minimal torch.nn.Module-like __dict__."""
    state = dict(training=False, _parameters={}, _buffers={}, _non_persistent_buffers_set=set(), _modules={})
    state.update(extra)
    return state


@pytest.fixture(scope="module")
def fixture_data():
    return load_nvlabs_pickle(FIXTURE)


# ------------------------------------------------------------------------------------------------
# The real fixture


def test_fixture_uses_only_allowed_globals():
    found = globals_in(FIXTURE.read_bytes())
    assert found <= ALLOWED_GLOBALS, found - ALLOWED_GLOBALS
    assert "torch_utils.persistence._reconstruct_persistent_obj" in found


def test_fixture_top_level(fixture_data):
    assert set(fixture_data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    assert fixture_data["D"] is None and fixture_data["augment_pipe"] is None
    assert isinstance(fixture_data["training_set_kwargs"], dict)
    assert fixture_data["training_set_kwargs"]["resolution"] == 32
    # nothing was imported from the file
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_fixture_generator_record(fixture_data):
    G = fixture_data["G_ema"]
    assert isinstance(G, PersistentRecord)
    assert G.class_name == "Generator"
    kw = G.attr("_init_kwargs")
    assert kw["img_resolution"] == 32 and kw["z_dim"] == 512 and kw["w_dim"] == 512 and kw["c_dim"] == 0
    assert isinstance(kw["mapping_kwargs"], EasyDict) and kw["mapping_kwargs"].num_layers == 2
    assert G.child("mapping").class_name == "MappingNetwork"
    assert G.child("synthesis.b8.conv0").attr("up") == 2
    assert G.child("synthesis.b4.conv1").attr("conv_clamp") == 256
    assert isinstance(G.child("synthesis.b4.torgb").attr("weight_gain"), np.float64)
    assert G.attr("no_such_attribute", "dflt") == "dflt"


def test_fixture_state_dict(fixture_data):
    G = fixture_data["G_ema"]
    sd = G.state_dict()
    expected = {
        "mapping.fc0.weight": (512, 512),
        "mapping.w_avg": (512,),
        "synthesis.b4.const": (128, 4, 4),
        "synthesis.b32.torgb.weight": (3, 64, 1, 1),
        "synthesis.b8.conv0.noise_const": (8, 8),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    for key, value in sd.items():
        assert type(value) is torch.Tensor, key  # not a Parameter
        assert value.dtype == torch.float32 and not value.requires_grad, key
        assert torch.isfinite(value).all(), key
    # every key comes from a parameter or a persistent buffer, and none from a non-persistent buffer
    expected_keys = set()
    for path, rec in G.walk():
        base = f"{path}." if path else ""
        skip = rec.attr("_non_persistent_buffers_set") or set()
        expected_keys |= {base + n for n, v in rec.attr("_parameters").items() if v is not None}
        expected_keys |= {base + n for n, v in rec.attr("_buffers").items() if v is not None and n not in skip}
        assert not {base + n for n in skip} & set(sd)
    assert set(sd) == expected_keys
    assert len(sd) == 75


def test_fixture_walks_well_inside_the_budget(fixture_data):
    """The walk budget's scale: the 32 px fixture's G_ema is 31 module paths, 4 deep."""
    from latentspaces.checkpoints.nvlabs_records import MAX_MODULE_DEPTH, MAX_MODULE_PATHS

    paths = [p for p, _ in fixture_data["G_ema"].walk()]
    assert len(paths) == 31 and max(p.count(".") + 1 for p in paths if p) == 4
    assert len(paths) < MAX_MODULE_PATHS and 4 < MAX_MODULE_DEPTH


def test_fixture_g_and_g_ema_are_one_record(fixture_data):
    # The fixture pickles G_ema as a memo reference to G; the reader keeps that sharing.
    assert fixture_data["G"] is fixture_data["G_ema"]


def test_fixture_accepts_str_and_pathlike():
    a = load_nvlabs_pickle(str(FIXTURE))["G_ema"].state_dict()
    b = load_nvlabs_pickle(FIXTURE)["G_ema"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_fixture_repickled_with_other_protocols(fixture_data, tmp_path, protocol):
    with nvlabs_names() as names:
        data = pickle.dumps(to_nvlabs_objects(fixture_data, names), protocol=protocol)
    found = globals_in(data)
    assert found <= ALLOWED_GLOBALS, found - ALLOWED_GLOBALS
    again = load_nvlabs_pickle(write(tmp_path / f"p{protocol}.pkl", data))
    assert again["G"] is again["G_ema"]
    assert again["training_set_kwargs"] == fixture_data["training_set_kwargs"]
    G0, G1 = fixture_data["G_ema"], again["G_ema"]
    assert G1.attr("_init_kwargs") == G0.attr("_init_kwargs")
    assert isinstance(G1.attr("_init_kwargs")["synthesis_kwargs"], EasyDict)
    assert [p for p, _ in G1.walk()] == [p for p, _ in G0.walk()]
    sd0, sd1 = G0.state_dict(), G1.state_dict()
    assert list(sd1) == list(sd0)
    for key in sd0:
        assert sd1[key].dtype == sd0[key].dtype and torch.equal(sd1[key], sd0[key]), key
    w0, w1 = G0.child("mapping.fc0").attr("weight_gain"), G1.child("mapping.fc0").attr("weight_gain")
    assert type(w1) is type(w0) and w1 == w0


# ------------------------------------------------------------------------------------------------
# Hostile pickles


def _payloads(sentinel: Path):
    return {
        "os.system": (os.system, (f"touch {sentinel}",)),
        "builtins.exec": (builtins.exec, (f"open({str(sentinel)!r}, 'w').close()",)),
        "builtins.eval": (builtins.eval, (f"open({str(sentinel)!r}, 'w').close()",)),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(sentinel)],)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen"])
def test_hostile_reduce_is_refused_and_nothing_runs(tmp_path, kind):
    sentinel = tmp_path / "pwned"
    fn, args = _payloads(sentinel)[kind]
    data = pickle.dumps({"G": _Call(fn, args), "G_ema": None})

    # control: a plain pickle.loads of the same bytes really does create the sentinel
    control = tmp_path / "control"
    result = pickle.loads(pickle.dumps({"G": _Call(*_payloads(control)[kind])}))
    if kind == "subprocess.Popen":
        result["G"].wait()
    assert control.exists()

    path = write(tmp_path / "evil.pkl", data)
    with pytest.raises(UnsafePickleError) as info:
        load_nvlabs_pickle(path)
    message = str(info.value)
    refused = f"{fn.__module__}.{fn.__qualname__}"  # e.g. posix.system: what pickle actually wrote
    assert refused in message
    assert str(path) in message
    assert "only NVlabs StyleGAN2 network pickles" in message and "Nothing from the file was executed" in message
    assert isinstance(info.value, pickle.UnpicklingError) and isinstance(info.value, CheckpointError)
    assert not sentinel.exists()


def test_hostile_global_inside_a_record_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    with nvlabs_names() as names:
        evil_state = module_state(conv_clamp=_Call(os.system, (f"touch {sentinel}",)))
        data = pickle.dumps({"G_ema": record_call(names, "Generator", evil_state)})
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        load_nvlabs_pickle(write(tmp_path / "evil.pkl", data))
    assert not sentinel.exists()


def test_hostile_storage_blob_is_refused(tmp_path):
    # A blob handed to torch.storage._load_from_bytes that is itself a hostile pickle.
    sentinel = tmp_path / "pwned"
    blob = pickle.dumps(_Call(os.system, (f"touch {sentinel}",)), protocol=2)
    data = pickle.dumps({"G": _Call(torch.storage._load_from_bytes, (blob,))})
    with pytest.raises(UnsafePickleError, match="weights-only"):
        load_nvlabs_pickle(write(tmp_path / "evil.pkl", data))
    assert not sentinel.exists()


def test_module_src_is_never_run_or_kept(tmp_path):
    sentinel = tmp_path / "pwned"
    src = f"open({str(sentinel)!r}, 'w').write('module_src was executed')\n"
    weight = torch.nn.Parameter(torch.randn(4, 3))
    with nvlabs_names() as names:
        child = record_call(names, "FullyConnectedLayer", module_state(_parameters={"weight": weight}), module_src=src)
        top = record_call(names, "MappingNetwork", module_state(_modules={"fc0": child}), module_src=src)
        data = pickle.dumps({"G_ema": top, "G": None})
    assert src.encode() in data

    loaded = load_nvlabs_pickle(write(tmp_path / "src.pkl", data))
    assert not sentinel.exists()
    rec = loaded["G_ema"]
    assert rec.class_name == "MappingNetwork" and rec.child("fc0").class_name == "FullyConnectedLayer"
    assert torch.equal(rec.state_dict()["fc0.weight"], weight.detach())
    for _, r in rec.walk():
        assert not hasattr(r, "module_src") and not hasattr(r, "__dict__")
        assert "module_src" not in r.state
    assert not any(src in s for s in deep_strings(loaded))


def test_build_on_other_objects_is_refused(tmp_path):
    # BUILD would call __setstate__ / fill __dict__; only our own numpy objects may receive it.
    data = pickle.dumps({"G": _Call(OrderedDict, (), {"x": 1})})
    with pytest.raises(UnsafePickleError, match="refused to set the state of a OrderedDict"):
        load_nvlabs_pickle(write(tmp_path / "build.pkl", data))


@pytest.mark.parametrize("call, match", [
    ((np.dtype, ("O", False, True)), "only plain numeric numpy dtypes"),
    ((np.dtype, ("f8,i4", False, True)), "only plain numeric numpy dtypes"),
    # an otherwise plain float dtype whose state claims different flags (e.g. "holds objects")
    ((np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 1)), "numpy dtype state"),
])
def test_numpy_tricks_are_refused(tmp_path, call, match):
    data = pickle.dumps({"x": _Call(*call)}, protocol=2)
    with pytest.raises(UnsafePickleError, match=match):
        load_nvlabs_pickle(write(tmp_path / "np.pkl", data))


@pytest.mark.parametrize("overrides, match", [
    (dict(type="function"), "expected 'class'"),
    (dict(class_name=7), "class_name is a int"),
    (dict(state=[1, 2]), "state of 'Generator' is a list"),
])
def test_malformed_persistent_meta(tmp_path, overrides, match):
    with nvlabs_names() as names:
        data = pickle.dumps({"G_ema": record_call(names, "Generator", module_state(), overrides=overrides)})
    with pytest.raises(UnsafePickleError, match=match):
        load_nvlabs_pickle(write(tmp_path / "bad.pkl", data))


def test_malformed_module_tables(tmp_path):
    with nvlabs_names() as names:
        data = pickle.dumps({"G_ema": record_call(names, "Generator", module_state(_modules={"fc": 3}))})
    with pytest.raises(UnsafePickleError, match=r"_modules.*'fc'.*int"):
        load_nvlabs_pickle(write(tmp_path / "bad.pkl", data))


def test_persistent_ids_are_refused(tmp_path):
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf)
    pickler.persistent_id = lambda obj: "pid" if obj == "x" else None
    pickler.dump({"G": "x"})
    with pytest.raises(UnsafePickleError, match="persistent ids"):
        load_nvlabs_pickle(write(tmp_path / "pid.pkl", buf.getvalue()))


# ------------------------------------------------------------------------------------------------
# numpy values (stylegan3 stores numpy arrays as plain attributes)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_numpy_arrays_and_scalars(tmp_path, protocol):
    values = dict(
        in_size=np.broadcast_to(np.asarray(16), [2]),
        grid=np.arange(12, dtype=np.float32).reshape(3, 4),
        fortran=np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        flags=np.array([True, False]),
        big_endian=np.arange(3, dtype=">f8"),
        gain=np.float64(0.125),
        half=np.float16(1.5),
    )
    with nvlabs_names() as names:
        data = pickle.dumps({"G_ema": record_call(names, "SynthesisLayer", module_state(**values))}, protocol=protocol)
    rec = load_nvlabs_pickle(write(tmp_path / "np.pkl", data))["G_ema"]
    for name, want in values.items():
        got = rec.attr(name)
        reference = pickle.loads(pickle.dumps(want, protocol=protocol))  # numpy's own unpickling
        assert type(got) is type(reference), name
        # (numpy itself hands back big-endian arrays in native byte order; so do we)
        assert got.dtype == reference.dtype and np.array_equal(got, want), name
        if isinstance(got, np.ndarray):
            assert got.shape == want.shape and got.flags.writeable, name


# ------------------------------------------------------------------------------------------------
# Record API on hand-built records


def _tensor(*shape):
    return torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)


def test_record_api_walk_state_dict_child():
    leaf = PersistentRecord("Leaf", module_state(
        _parameters={"weight": torch.nn.Parameter(_tensor(2, 2)), "bias": None},
        _buffers={"kept": _tensor(3), "scratch": _tensor(5), "absent": None},
        _non_persistent_buffers_set={"scratch"},
        gain=0.5,
    ))
    mid = PersistentRecord("Mid", module_state(_modules={"leaf": leaf, "gone": None}))
    root = PersistentRecord("Root", module_state(_parameters={"const": _tensor(1)}, _modules={"mid": mid}))

    assert [p for p, _ in root.walk()] == ["", "mid", "mid.leaf"]
    assert [p for p, _ in root.walk("G")] == ["G", "G.mid", "G.mid.leaf"]
    sd = root.state_dict()
    assert list(sd) == ["const", "mid.leaf.weight", "mid.leaf.kept"]  # no None, no non-persistent buffer
    assert all(type(v) is torch.Tensor and not v.requires_grad for v in sd.values())
    assert list(root.state_dict("G.")) == ["G.const", "G.mid.leaf.weight", "G.mid.leaf.kept"]
    assert root.child("mid.leaf") is leaf and root.child("mid").child("leaf") is leaf
    assert leaf.attr("gain") == 0.5 and leaf.attr("missing") is None
    with pytest.raises(MissingChildError, match=r"no submodule 'gone'.*\['leaf'\]") as info:
        root.child("mid.gone")
    assert isinstance(info.value, KeyError)
    assert "Root" in repr(root) and "mid" in repr(root)


def test_record_cycle_is_detected():
    a = PersistentRecord("A", module_state())
    a.state["_modules"]["self"] = a
    with pytest.raises(UnsafePickleError, match="cycle"):
        a.state_dict()


def _dag(levels: int) -> PersistentRecord:
    node = PersistentRecord("Leaf", module_state(_parameters={"w": torch.zeros(1)}))
    for _ in range(levels):
        node = PersistentRecord("Node", module_state(_modules={"a": node, "b": node}))
    return node


def test_record_graphs_are_walked_within_a_budget():
    """A record shared by two parents 40 levels down is 2^40 paths, and a chain can be 50,000 records deep:
    both are refused at once instead of hanging; a small shared graph still walks like torch's state_dict."""
    small = _dag(3)
    assert len(small.state_dict()) == 8                     # every path, as torch.nn.Module.state_dict lists them
    t0 = time.perf_counter()
    with pytest.raises(UnsafePickleError, match="more than 20,000 module paths"):
        _dag(20).state_dict()                                # 2^20 paths, 20 levels
    with pytest.raises(UnsafePickleError, match="nest deeper than 32 levels"):
        _dag(40).state_dict()
    chain = PersistentRecord("Leaf", module_state())
    for _ in range(50_000):
        chain = PersistentRecord("Node", module_state(_modules={"next": chain}))
    with pytest.raises(UnsafePickleError, match="nest deeper than 32 levels"):
        chain.state_dict()
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("levels, match", [(20, "more than 20,000 module paths"), (40, "nest deeper than 32")])
def test_a_shared_record_graph_file_is_refused_at_once(tmp_path, levels, match):
    """A 2-3 KB pickle whose generator record is such a graph: load_generator answers in a second, naming the file."""
    with nvlabs_names() as names:
        dag = _dag(levels)
        data = pickle.dumps(to_nvlabs_objects({"G_ema": dag, "G": dag, "D": None}, names), protocol=4)
    assert len(data) < 4000
    path = write(tmp_path / "dag.pkl", data)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as info:
        ls.load_generator(path)
    assert str(path) in str(info.value) and time.perf_counter() - t0 < 5


def test_record_constructor_validates():
    with pytest.raises(UnsafePickleError):
        PersistentRecord("X", module_state(_parameters={"w": "not a tensor"}))
    with pytest.raises(UnsafePickleError):
        PersistentRecord(3, {})


# ------------------------------------------------------------------------------------------------
# Truncated, corrupt and foreign files


@pytest.mark.parametrize("fraction", [0.5, 0.01, 0.999])
def test_truncated_fixture(tmp_path, fraction):
    data = FIXTURE.read_bytes()
    path = write(tmp_path / "cut.pkl", data[: int(len(data) * fraction)])
    with pytest.raises(CorruptPickleError, match="truncated") as info:
        load_nvlabs_pickle(path)
    assert isinstance(info.value, ValueError)
    assert "expected a complete NVlabs network pickle" in str(info.value)
    assert str(path) in str(info.value)


def test_fixture_missing_last_byte(tmp_path):
    data = FIXTURE.read_bytes()
    with pytest.raises(CorruptPickleError, match="truncated"):
        load_nvlabs_pickle(write(tmp_path / "cut.pkl", data[:-1]))


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).bytes(4096)
    with pytest.raises(CorruptPickleError) as info:
        load_nvlabs_pickle(write(tmp_path / "random.pkl", data))
    assert "does not start like a pickle stream" in str(info.value) or "corrupt" in str(info.value) \
        or "truncated" in str(info.value)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_after_a_pickle_header(tmp_path, seed):
    data = b"\x80\x04" + np.random.default_rng(seed).bytes(4096)
    with pytest.raises((CorruptPickleError, UnsafePickleError)):
        load_nvlabs_pickle(write(tmp_path / "random.pkl", data))


def test_torch_save_zip(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"g_ema": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CorruptPickleError, match="starts with PK: looks like a torch.save zip archive"):
        load_nvlabs_pickle(path)


def test_plain_zip_and_legacy_torch_save_and_empty(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("x.txt", "hello")
    with pytest.raises(CorruptPickleError, match="zip"):
        load_nvlabs_pickle(tmp_path / "a.zip")

    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CorruptPickleError, match="legacy torch.save"):
        load_nvlabs_pickle(tmp_path / "legacy.pt")

    with pytest.raises(CorruptPickleError, match="empty"):
        load_nvlabs_pickle(write(tmp_path / "empty.pkl", b""))


def test_huge_length_field_does_not_allocate(tmp_path):
    # BINBYTES8 claiming 2**40 bytes: refused as truncated instead of attempting the read.
    data = b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc"
    with pytest.raises(CorruptPickleError, match="truncated"):
        load_nvlabs_pickle(write(tmp_path / "huge.pkl", data))


def test_top_level_must_be_a_dict(tmp_path):
    with pytest.raises(UnsafePickleError, match="holds a list"):
        load_nvlabs_pickle(write(tmp_path / "list.pkl", pickle.dumps([1, 2])))


def _u(text: str) -> bytes:  # BINUNICODE opcode
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


@pytest.mark.parametrize("late_value, match", [(b"h\x05", "cycle"), (b"K\x03", r"\['late'\] is a int")])
def test_record_edited_after_it_was_built(tmp_path, late_value, match):
    # Hand-written opcodes: build record A, then reach back into its (memoized) _modules dict and add
    # an entry; pickle.Pickler never writes this, but a crafted file can.
    data = b"".join([
        b"\x80\x02}q\x00", _u("G"),
        b"ctorch_utils.persistence\n_reconstruct_persistent_obj\nq\x01",
        b"}q\x02(", _u("type"), _u("class"), _u("class_name"), _u("A"), _u("state"),
        b"}q\x03(", _u("_modules"), b"}q\x04", b"u", b"u",
        b"\x85Rq\x05",                               # record A = reconstruct((meta,)), memo 5
        b"h\x04", _u("late"), late_value, b"s0",     # memo[4]['late'] = ...; drop the dict again
        b"s.",                                       # top['G'] = A
    ])
    with pytest.raises(UnsafePickleError, match=match):
        load_nvlabs_pickle(write(tmp_path / "edited.pkl", data))


def test_tensor_view_past_its_storage_is_refused(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notice
        storage = torch.zeros(4).storage()
        call = _Call(torch._utils._rebuild_tensor_v2, (storage, 2, (3,), (1,), False, OrderedDict()))
        data = pickle.dumps({"G": call})
    with pytest.raises(UnsafePickleError, match="reaches element 4 of a storage holding 4"):
        load_nvlabs_pickle(write(tmp_path / "view.pkl", data))


# ------------------------------------------------------------------------------------------------
# PTI's torch.save(G): the same records in a torch zip archive, tensors as persistent storages


def _pti_save(record, path: Path, protocol: int = 2) -> Path:
    """torch.save of the Generator module itself, as PTI's coaches save their tuned G (pickle protocol 2)."""
    with nvlabs_names() as names:
        torch.save(to_nvlabs_objects(record, names), path, pickle_protocol=protocol)
    return path


def test_pti_tuned_generator_archive_reads_as_the_pickle(fixture_data, tmp_path):
    path = _pti_save(fixture_data["G_ema"], tmp_path / "model_ABCDEFGHIJKL_face.pt")
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"torch_utils.persistence" in pickled[:256] and b"FloatStorage" in pickled
    assert is_nvlabs_module_archive(path) and not is_nvlabs_module_archive(FIXTURE)
    record = load_nvlabs_module_archive(path)["G_ema"]
    assert record.class_name == "Generator"
    ours, theirs = ls.load_generator(path), ls.load_generator(FIXTURE)
    ws = theirs.broadcast(theirs.mapping(torch.randn(1, theirs.z_dim, generator=torch.Generator().manual_seed(0))))
    with torch.no_grad():
        torch.testing.assert_close(ours.synthesis(ws), theirs.synthesis(ws), rtol=0, atol=0)


def test_pti_archive_damage_and_foreign_globals_are_refused(fixture_data, tmp_path):
    path = _pti_save(fixture_data["G_ema"], tmp_path / "model.pt")
    with zipfile.ZipFile(path) as archive:   # a record of the wrong size: rewritten archive, CRCs valid
        infos = [(i, archive.read(i.filename)) for i in archive.infolist()]
    victim = next(i.filename for i, data in infos if "/data/" in i.filename and len(data) > 8)
    damaged = tmp_path / "short.pt"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_STORED) as out:
        for info, data in infos:
            out.writestr(info.filename, data[:-4] if info.filename == victim else data)
    with pytest.raises(CheckpointError, match=r"holds \d+ bytes; its tensor declares"):
        ls.load_generator(damaged)
    evil = tmp_path / "evil.pt"
    with nvlabs_names() as names:   # a Generator record whose state calls something outside the allow-list
        torch.save(record_call(names, "Generator", _Call(os.system, ("true",))), evil, pickle_protocol=2)
    with pytest.raises(UnsafePickleError, match="refused to load global 'posix.system'|refused to load global 'nt.system'"):
        ls.load_generator(evil)


@pytest.mark.slow
def test_pti_tuned_generator_archive_at_1024(tmp_path):
    """At the users' scale: a random config-f 1024 px generator written as an NVlabs pickle (the fuzzer's writer),
    its records saved as PTI saves its tuned G, read back by `load_generator`: the same 1024 px image (batch 1)."""
    from conftest import randomize_
    from experiments.tools.fuzzing.documents import make_doc, write_doc

    G = randomize_(ls.Generator(resolution=1024), seed=3).eval().requires_grad_(False)
    write_doc(make_doc(G, "nvlabs"), tmp_path / "G.pkl")
    path = _pti_save(load_nvlabs_pickle(tmp_path / "G.pkl")["G_ema"], tmp_path / "model_ABCDEFGHIJKL_face.pt")
    (tmp_path / "G.pkl").unlink()
    ours = ls.load_generator(path)
    assert ours.resolution == 1024 and ours.num_ws == 18
    ws = G.broadcast(G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(0))))
    with torch.no_grad():
        torch.testing.assert_close(ours.synthesis(ws), G.synthesis(ws), rtol=0, atol=1e-5)
