"""The shared training loop (experiments/training/loop.py) with a toy trainer: resume, time budget, log."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from experiments.distributed import World
from experiments.training.loop import Trainer, TrainingLoop


class ToyTrainer(Trainer):
    """Fits a 4 -> 1 linear map to noisy targets drawn from its own data stream."""

    name = "train toy"
    columns = ("step", "seconds", "loss", "r1", "weight_norm")
    plot_columns = ("loss",)

    def __init__(self, out: Path, seed: int = 0):
        torch.manual_seed(seed)
        self.out = out
        self.net = torch.nn.Linear(4, 1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.05)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=3, gamma=0.5)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.exported: List[int] = []

    def checkpointed(self) -> Dict[str, object]:
        return {"net": self.net, "opt": self.opt, "sched": self.sched}

    def generators(self) -> Dict[str, torch.Generator]:
        return {"gen": self.gen}

    def step(self, step: int) -> Dict[str, torch.Tensor]:
        x = torch.randn(8, 4, generator=self.gen)
        y = x.sum(1, keepdim=True) + 0.1 * torch.randn(8, 1, generator=self.gen)
        loss = (self.net(x) - y).square().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        losses = {"loss": loss.detach()}
        if step % 2 == 0:  # a lazy term: averaged over the steps that report it
            losses["r1"] = torch.tensor(float(step))
        return losses

    def snapshot(self, step: int, values) -> Dict[str, float]:
        return {"weight_norm": self.net.weight.norm().item()}

    def export(self, step: int) -> None:
        self.exported.append(step)


def run(out: Path, total: int, resume: bool = False, max_seconds=None, snap: int = 2) -> ToyTrainer:
    trainer = ToyTrainer(out)
    out.mkdir(exist_ok=True)
    TrainingLoop(trainer, out, World(), total=total, snap=snap, resume=resume, max_seconds=max_seconds,
                 config={"total": total}, device=torch.device("cpu")).run()
    return trainer


def log_rows(out: Path) -> List[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    full = run(tmp_path / "full", total=7)
    run(tmp_path / "part", total=4)
    part = run(tmp_path / "part", total=7, resume=True)
    for a, b in zip(full.net.state_dict().values(), part.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert full.exported == part.exported == [7]
    # one log row per snapshot (every 2 steps, and the last step), the same rows either way
    rows_full, rows_part = log_rows(tmp_path / "full"), log_rows(tmp_path / "part")
    assert [r["step"] for r in rows_full] == [r["step"] for r in rows_part] == ["2", "4", "6", "7"]
    assert [r["loss"] for r in rows_full] == [r["loss"] for r in rows_part]
    assert [float(r["r1"]) for r in rows_full] == [0.0, 2.0, 4.0, 6.0]  # mean over the steps that reported it
    assert (tmp_path / "full" / "loss.png").is_file()
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert int(state["step"]) == 7 and state["gen"].shape[0] == 1


def test_time_budget_stops_with_a_checkpoint_and_exports(tmp_path):
    out = tmp_path / "budget"
    trainer = run(out, total=1000, max_seconds=1e-9, snap=500)
    assert trainer.exported == [1]
    assert int(torch.load(out / "checkpoint.pt", weights_only=True)["step"]) == 1
    assert [r["step"] for r in log_rows(out)] == ["1"]
    resumed = run(out, total=3, resume=True, snap=500)   # continues from the checkpoint
    assert resumed.exported == [3] and [r["step"] for r in log_rows(out)] == ["1", "3"]


def test_resume_refuses_a_checkpoint_of_another_trainer(tmp_path):
    out = tmp_path / "other"
    run(out, total=2)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["opt"]
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(SystemExit, match="has no 'opt'"):
        run(out, total=4, resume=True)


def test_resume_rewrites_a_log_of_older_columns_and_appends_whole_rows(tmp_path):
    """A log.csv written with other columns (an older trainer) is rewritten under today's on resume; rows are
    appended by the run folders' row writer and read back with the csv module (the plot is drawn from them)."""
    out = tmp_path / "run"
    run(out, total=4)
    rows = log_rows(out)
    with open(out / "log.csv", "w", newline="") as f:      # as an older trainer wrote it: no weight_norm, an extra column
        w = csv.DictWriter(f, fieldnames=["step", "seconds", "loss", "r1", "retired"], lineterminator="\n")
        w.writeheader()
        w.writerows([{**{k: r[k] for k in ("step", "seconds", "loss", "r1")}, "retired": "1"} for r in rows])
    run(out, total=6, resume=True)
    again = log_rows(out)
    assert list(again[0]) == list(ToyTrainer.columns)
    assert [r["step"] for r in again] == ["2", "4", "6"]
    assert [r["weight_norm"] for r in again[:2]] == ["nan", "nan"] and float(again[2]["weight_norm"]) > 0
    assert (out / "loss.png").stat().st_size > 0
