"""Sharded experiments under torchrun: the same files as one process, one header, one table."""

from __future__ import annotations

import csv
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from optimizers import QUICK
from experiments.argtypes import UsageError
from experiments.cli import main
from experiments.distributed import World
from experiments.runs import append_rows
from experiments.training.common import rank_batch
from conftest import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_world_shards_round_robin_and_is_single_without_torchrun():
    jobs = list(range(7))
    shares = [World(rank=r, size=3).shard(jobs) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == jobs
    world = World.current()
    assert (world.rank, world.size, world.main) == (0, 1, True)
    assert world.gather("x") == ["x"] and world.main_first(lambda: 5) == 5


def _append_many(path, writer, n):
    for i in range(n):
        append_rows(path, [{"space": f"S{writer}", "target": i}], ["space", "target"])


def test_append_rows_from_concurrent_processes_keeps_one_header(tmp_path):
    path = tmp_path / "rows.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(path, w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert lines.count("space,target") == 1 and lines[0] == "space,target"
    rows = _rows(path)
    assert len(rows) == 240
    assert sorted((r["space"], int(r["target"])) for r in rows) == sorted((f"S{w}", i) for w in range(4)
                                                                       for i in range(60))


def _torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "experiments.cli", *args]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _keyed(rows, key):
    return {tuple(r[k] for k in key): r for r in rows}


def _assert_same_codes(a, b, names, starts):
    for name in names:
        for start in starts:
            x, y = (load_file(str(d / "codes" / f"{name}_{start}.safetensors")) for d in (a, b))
            assert x.keys() == y.keys()
            for k in x:
                torch.testing.assert_close(x[k], y[k], rtol=1e-4, atol=1e-5)


class _OneThread:
    """torchrun's ranks run with one thread each; the single-process reference does too (same arithmetic)."""

    def __enter__(self):
        self.threads, self.env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"   # what `main` chooses its threads from (latentspaces.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        if self.env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = self.env


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_torchrun_compare_on_two_ranks_matches_one_process(tmp_path):
    """The user's command line: torchrun ... -m experiments.cli compare (gloo, 2 CPU processes)."""
    flags = ["--n-targets", "3", "--steps", "2", "--chunk", "1", "--spaces", "W,FZPlus", "--perceptual", "none",
             "--identity", "none", "--device", "cpu", "--quick"]
    sharded, single = tmp_path / "sharded", tmp_path / "single"
    printed = _torchrun("compare", "--out", str(sharded), *flags)
    assert printed.count("| space |") == 1  # rank 0 prints the table, the other rank nothing
    with _OneThread():
        main(["compare", "--out", str(single), *flags])
    text = (sharded / "space_comparison_per_image.csv").read_text()
    assert text.count("space,target") == 1 and len(_rows(sharded / "space_comparison_per_image.csv")) == 6
    a, b = (_keyed(_rows(d / "space_comparison_per_image.csv"), ("space", "target")) for d in (sharded, single))
    assert a.keys() == b.keys()
    for k in a:
        for m in ("mse", "ssim", "ms_ssim"):
            assert float(a[k][m]) == pytest.approx(float(b[k][m]), rel=1e-4, abs=1e-6), (k, m)
    _assert_same_codes(sharded, single, ("W", "FZPlus"), range(3))
    assert [r["space"] for r in _rows(sharded / "space_comparison.csv")] == ["W", "FZPlus"]
    assert (sharded / "reconstructions.png").is_file()


def _cosine_identity(images, targets):
    """A cheap stand-in for dlib (the sharding, not the metric, is under test)."""
    return torch.nn.functional.cosine_similarity(images.flatten(1), targets.flatten(1))


def _curves_config():
    from experiments.studies.identity_curves import IdentityCurvesConfig
    return IdentityCurvesConfig(spaces=("W", "FZPlus"), directions=2, direction_samples=2000,
                                recipe=QUICK.replace(steps=2, perceptual="none"), chunk=1)


def _curves_worker(rank, size, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    import latentspaces as ls
    from experiments.distributed import close_world, init_world
    from experiments.studies.identity_curves import run_identity_curves
    from latentspaces import assets

    torch.set_num_threads(1)
    world, device = init_world("cpu")
    assert (world.rank, world.size, device) == (rank, size, "cpu")
    rows = run_identity_curves(out, ls.load_generator("default"), assets.heldout_targets(3), _cosine_identity,
                               _curves_config())
    assert bool(rows) == world.main  # rank 0 returns the summary, the others nothing
    close_world()


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_identity_curves_on_two_ranks_match_one_process(tmp_path):
    import latentspaces as ls
    from experiments.studies.identity_curves import run_identity_curves
    from latentspaces import assets

    sharded, single = tmp_path / "sharded", tmp_path / "single"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_curves_worker, args=(2, port, sharded), nprocs=2, join=True)
    with _OneThread():
        run_identity_curves(single, ls.load_generator("default"), assets.heldout_targets(3), _cosine_identity,
                            _curves_config())
    _assert_same_codes(sharded, single, ("W", "FZPlus"), range(3))
    key = ("space", "target", "direction", "alpha")
    rows = _rows(sharded / "identity_curves.csv")
    assert len(rows) == 2 * 2 * 11 * 3  # spaces x directions x alphas x targets, each once
    a, b = (_keyed(_rows(d / "identity_curves.csv"), key) for d in (sharded, single))
    assert a.keys() == b.keys()
    assert max(abs(float(a[k]["identity"]) - float(b[k]["identity"])) for k in a) < 1e-5
    assert [r["space"] for r in _rows(sharded / "identity_summary.csv")] == ["W", "FZPlus"]
    for name in ("identity_curves.png", "random_directions.png"):
        assert (sharded / name).is_file(), name


def test_unsharded_command_under_torchrun_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="`directions` runs as one process"):
        main(["directions", "--out", str(tmp_path), "--count", "2", "--samples", "100", "--debug"])


def _collectives_worker(rank, size, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    import copy

    from experiments.distributed import close_world, init_world

    torch.set_num_threads(1)
    world, _ = init_world("cpu")
    torch.manual_seed(100 + rank)  # a different start on every rank, until the broadcast
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    unused = torch.nn.Linear(2, 2)
    world.broadcast_(model, unused)
    torch.manual_seed(100)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).parameters()))  # rank 0's start
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(7))
    reference = copy.deepcopy(model)
    reference(x).square().mean().backward()  # the whole batch in one process
    model(x[4 * rank : 4 * rank + 4]).square().mean().backward()  # this rank's half
    world.average_gradients_([*model.parameters(), *unused.parameters()])
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in unused.parameters())
    assert world.any(rank == 1) and not world.any(False)
    assert world.mean({"a": float(rank), "b": 2.0 * rank}) == {"a": 0.5, "b": 1.0}
    assert world.gather(rank) == [0, 1] and world.shard(list(range(5))) == [[0, 2, 4], [1, 3]][rank]
    close_world()


def _leaving_worker(rank, size, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    from experiments.distributed import close_world, init_world

    init_world("cpu")
    if rank == 0:
        close_world(wait=False)   # as a rank that stopped on an error leaves
        return
    try:
        close_world()             # finished: waits for the others, and rank 0 never comes
    except RuntimeError as e:
        (out / "said.txt").write_text(str(e))
    assert not torch.distributed.is_initialized()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_a_finished_rank_whose_peer_left_on_an_error_says_so_instead_of_hanging(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_leaving_worker, args=(2, port, tmp_path), nprocs=2, join=True)
    said = (tmp_path / "said.txt").read_text()
    assert said.startswith("rank 1 finished its share, but another rank stopped on an error before the end")
    assert "\n" not in said


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_collectives_average_gradients_like_one_big_batch():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_collectives_worker, args=(2, port), nprocs=2, join=True)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_trainer_on_two_ranks_checkpoints_every_stream_and_resumes(tmp_path):
    from conftest import require_dcgan
    require_dcgan()   # its ranks train on the default domain
    from encoders import load_encoder

    out = tmp_path / "f"
    flags = ["--out", str(out), "--batch", "4", "--snap", "1", "--device", "cpu", "--widths", "[8, 8, 8]",
             "--perceptual", "none", "--identity", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "experiments.cli", "train", "f-encoder"]
    for steps, extra in (("2", []), ("3", ["--resume"])):
        done = subprocess.run([*run, *flags, "--steps", steps, *extra], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("resumed from") == 1 and done.stdout.count("wrote ") == 1  # rank 0 speaks
    assert [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["gen"].shape[0] == 2 and not torch.equal(state["gen"][0], state["gen"][1])  # one stream per rank
    enc = load_encoder(out / "encoder.safetensors")
    assert enc.meta["steps"] == 3 and enc.meta["processes"] == 2 and enc.meta["batch"] == 4
    with pytest.raises(SystemExit, match="written by 2 process"):
        train("f-encoder", [*flags, "--steps", "4", "--resume"])
    with pytest.raises(SystemExit, match="--batch 3 does not split over 2"):
        rank_batch(World(rank=0, size=2), 3)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch has no torch.distributed")
def test_workers_flag_starts_local_ranks_that_match_one_process(tmp_path, monkeypatch):
    """`compare --workers 2` is torchrun without typing it: same rows and codes as one process."""
    monkeypatch.setenv("PYTHONPATH", REPO)
    flags = ["--n-targets", "2", "--steps", "2", "--chunk", "1", "--spaces", "W", "--perceptual", "none",
             "--identity", "none", "--device", "cpu", "--quick"]
    main(["compare", "--out", str(tmp_path / "workers"), "--workers", "2", *flags])
    with _OneThread():
        main(["compare", "--out", str(tmp_path / "single"), *flags])
    a, b = (_keyed(_rows(tmp_path / d / "space_comparison_per_image.csv"), ("space", "target"))
            for d in ("workers", "single"))
    assert a.keys() == b.keys() == {("W", "0"), ("W", "1")}
    _assert_same_codes(tmp_path / "workers", tmp_path / "single", ("W",), range(2))


def test_workers_flag_under_torchrun_is_refused(monkeypatch, tmp_path):
    from experiments.cli.workers import LAUNCHED, check_workers

    monkeypatch.delenv(LAUNCHED, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="under torchrun leave it out"):
        main(["compare", "--out", str(tmp_path), "--workers", "2", "--debug"])
    monkeypatch.setenv(LAUNCHED, "1")          # a rank that --workers started: it just runs
    assert check_workers(2) is False
    monkeypatch.delenv("WORLD_SIZE")
    assert check_workers(2) is True and check_workers(1) is False


def test_workers_and_compile_flags_are_checked_before_any_work(monkeypatch, tmp_path):
    from experiments.cli import workers

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="needs one GPU per rank; this machine has 1"):
        workers.check_workers(2, "cuda")
    monkeypatch.setattr(workers.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="--compile on a CPU needs a C\\+\\+ compiler"):
        main(["compare", "--out", str(tmp_path / "c"), "--compile", "--device", "cpu", "--quick", "--debug"])
    assert not (tmp_path / "c").exists()   # refused before the folder was made
    workers.check_compile(False, "cpu")     # no --compile: nothing to check
