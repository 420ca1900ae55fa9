"""The one training loop every trainer runs: steps, resume, snapshots, the time budget and the export.

A trainer (a `Trainer` subclass) says what one step does and what it owns; `TrainingLoop` does the rest:

- resume: OUT/checkpoint.pt (written by `latentspaces.storage.atomic_torch_save`, read back with
  `torch.load(weights_only=True)`) holds the state dicts of the trainer's `checkpointed()` objects
  under their names, the position of its data streams (`streams()`: a folder's epoch and batch),
  every rank's state of each of its data generators (`generators()`), "step",
  "seconds" (training time over all sessions) and "config" (the settings as JSON);
- log.csv: one row per snapshot, written with the run folders' row writer (`experiments.rows.append_rows`:
  the csv module, whole lines, locked and fsync'd) and read back with `read_rows`;
- losses: the scalars `step()` returns are summed over each snapshot window, averaged over the steps
  that reported them and then over the ranks (`World.mean`): the whole batch's losses;
- every `snap` units of progress (steps, or images for the GAN): the checkpoint, a row of log.csv with
  the trainer's `columns`, the plot of its `plot_columns`, and its `snapshot` hook (held-out metrics,
  image grids) on rank 0;
- `max_seconds`: the ranks agree (`World.any`) after every step, so all stop together, and the last
  step gets a snapshot; `--resume` continues from it;
- at the end the trainer's `export` on rank 0, then every rank leaves the process group.
A run resumed with the same settings makes the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from experiments.distributed import World
from experiments.training.common import finish_run, plot_log
from experiments.rows import append_rows, read_columns, read_rows, write_rows
from latentspaces.progress import progress_bar
from latentspaces.storage import atomic_torch_save

Scalar = Union[float, int, torch.Tensor]


def generator_states(world: World, gen: torch.Generator) -> torch.Tensor:
    """Every rank's state of its data generator, [world size, state bytes] (a collective: all ranks call it)."""
    return torch.stack([s.cpu() for s in world.gather(gen.get_state())])


def restore_generator(world: World, gen: torch.Generator, saved: torch.Tensor, path: Path) -> None:
    """Set `gen` to this rank's row of `generator_states` from a checkpoint (1-D: one process wrote it)."""
    saved = saved.cpu()
    rows = saved.unsqueeze(0) if saved.dim() == 1 else saved
    if rows.shape[0] != world.size:
        raise SystemExit(f"{path} was written by {rows.shape[0]} process(es); resume it with as many "
                         f"(torchrun --nproc_per_node={rows.shape[0]}), not {world.size}")
    gen.set_state(rows[world.rank].clone())  # a copy: set_state of a row view (storage offset > 0) segfaults


class Trainer:
    """What a trainer gives the loop. Subclasses set the attributes and override `step` and `export`."""

    name: str = "train"                   # progress-bar title
    unit: str = "step"                    # unit of progress: 'step', or 'img' for a trainer counted in images
    per_step: int = 1                     # units of progress per step (the batch, for a trainer counted in images)
    columns: Tuple[str, ...] = ("step", "seconds", "loss")   # log.csv header: keys of the row (see `TrainingLoop`)
    plot_columns: Tuple[str, ...] = ("loss",)                # columns drawn in loss.png
    fresh_ok: Tuple[str, ...] = ()        # checkpointed names that may start fresh when a checkpoint lacks them

    def checkpointed(self) -> Dict[str, object]:
        """The modules, optimizers and schedulers to checkpoint, by checkpoint key (state_dict / load_state_dict)."""
        raise NotImplementedError

    def generators(self) -> Dict[str, torch.Generator]:
        """The random generators of this rank's data streams, by checkpoint key."""
        return {}

    def streams(self) -> Dict[str, object]:
        """Data streams whose position is checkpointed (state_dict / load_state_dict of plain ints), by key:
        the same on every rank (a folder's epoch and batch), so rank 0's is saved."""
        return {}

    def stateful(self) -> Dict[str, object]:
        """Everything checkpointed through state_dict: `checkpointed()` and `streams()`."""
        return {**self.checkpointed(), **self.streams()}

    def step(self, step: int) -> Dict[str, Scalar]:
        """One optimization step (`step`: the number of steps before it); its scalar losses by log column.

        A loss left out of a step (a lazy regularizer) is averaged over the steps that reported it."""
        raise NotImplementedError

    def snapshot(self, step: int, values: Mapping[str, float]) -> Dict[str, float]:
        """Rank 0, after each checkpoint: extra log values (held-out metrics) and files (image grids).

        `values` holds the window's mean losses, 'step', 'seconds' and 'steps_per_s'."""
        return {}

    def checkpoint_extras(self, step: int) -> Dict[str, torch.Tensor]:
        """Extra tensors stored in the checkpoint for readers of it (never read back by the loop)."""
        return {}

    def export(self, step: int) -> None:
        """Rank 0, at the end (also after a stop on the time budget): write the trained network's file."""
        raise NotImplementedError

    def close(self) -> None:
        """Every rank, when the run ends (also on an error): release what the trainer started (loader processes)."""


class TrainingLoop:
    """Runs a `Trainer` to `total` units of progress, with snapshots, resume and a time budget."""

    def __init__(self, trainer: Trainer, out: Path, world: World, total: int, snap: int, resume: bool,
                 max_seconds: Optional[float], config: Mapping[str, object], device: torch.device):
        self.trainer = trainer            # what one step does, what is checkpointed and exported
        self.out = Path(out)              # run directory: checkpoint.pt, log.csv, loss.png, the trainer's files
        self.world = world                # this process among the ranks (a world of one without torchrun)
        self.total = int(total)           # units of progress to reach (steps, or images), >= 1
        self.snap = int(snap)             # units of progress between snapshots, >= 1
        self.resume = resume              # continue from OUT/checkpoint.pt when it exists
        self.max_seconds = max_seconds    # stop after this many seconds of this session (None: no limit)
        self.config = dict(config)        # the settings, stored as JSON in the checkpoint
        self.device = device              # where the checkpointed tensors are loaded to
        if self.total < 1 or self.snap < 1:
            raise ValueError(f"total and snap must be >= 1 units of {trainer.unit}, got {total} and {snap}")
        self.step = 0                     # optimization steps done (over all sessions)
        self.seconds = 0.0                # training seconds of earlier sessions (from the checkpoint)

    @property
    def ckpt(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.out / "log.csv"

    # ------------------------------------------------------------------------------ checkpoint
    def load(self) -> None:
        """Restore the trainer, its data streams and the counters from OUT/checkpoint.pt."""
        st = torch.load(self.ckpt, map_location=self.device, weights_only=True)
        missing = [k for k in (*self.trainer.stateful(), *self.trainer.generators(), "step")
                   if k not in st and k not in self.trainer.fresh_ok]
        if missing:
            raise SystemExit(f"{self.ckpt} has no {', '.join(map(repr, missing))}: it was written by another trainer "
                             "or with other settings; pass another --out or leave out --resume")
        for key, obj in self.trainer.stateful().items():
            if key in st:
                obj.load_state_dict(st[key])
        for key, gen in self.trainer.generators().items():
            restore_generator(self.world, gen, st[key], self.ckpt)
        self.step = int(st["step"])
        self.seconds = float(st["seconds"]) if "seconds" in st else 0.0
        if self.world.main:
            print(f"resumed from {self.ckpt} at step {self.step}")

    def save(self, seconds: float) -> None:
        """Write OUT/checkpoint.pt atomically (rank 0); every rank must call it (it gathers the streams)."""
        gens = {k: generator_states(self.world, g) for k, g in self.trainer.generators().items()}
        if not self.world.main:
            return
        state: Dict[str, object] = {k: obj.state_dict() for k, obj in self.trainer.stateful().items()}
        state.update(gens)
        state.update(self.trainer.checkpoint_extras(self.step))
        state.update(step=torch.tensor(self.step), seconds=torch.tensor(seconds), config=json.dumps(self.config))
        atomic_torch_save(state, self.ckpt)

    # ------------------------------------------------------------------------------ log
    def write_row(self, values: Mapping[str, float]) -> None:
        """Append one row of the trainer's columns to log.csv (rank 0): whole lines, fsync'd (`append_rows`)."""
        missing = [c for c in self.trainer.columns if c not in values]
        if missing:
            raise KeyError(f"log columns {missing} are neither losses of step() nor values of snapshot(); "
                           f"have {sorted(values)}")
        append_rows(self.log, [{c: format_value(values[c]) for c in self.trainer.columns}], self.trainer.columns)

    def open_log(self) -> None:
        """Start log.csv (rank 0): a header alone for a fresh run; on resume the rows so far, rewritten under
        this trainer's columns when an older version of it wrote others (a missing value reads 'nan')."""
        columns = list(self.trainer.columns)
        if self.step == 0 or not self.log.exists():
            write_rows(self.log, [], columns)
            return
        if read_columns(self.log) != columns:
            rows = [{c: row.get(c) or "nan" for c in columns} for row in read_rows(self.log)]
            write_rows(self.log, rows, columns)

    # ------------------------------------------------------------------------------ run
    def run(self) -> int:
        """Train to `total` (or the time budget), export, leave the process group; returns the steps done.
        The trainer's `close` runs at the end, also after an error."""
        try:
            return self._run()
        finally:
            self.trainer.close()

    def _run(self) -> int:
        trainer, world = self.trainer, self.world
        if self.resume and self.ckpt.is_file():
            self.load()
        if world.main:
            self.open_log()
        t0 = t_window = time.time()
        sums: Dict[str, float] = {}
        counts: Dict[str, int] = {}
        window_start = self.step
        bar = progress_bar(total=self.total, initial=self.progress, desc=trainer.name, unit=trainer.unit,
                   unit_scale=trainer.per_step > 1, disable=not world.main)
        while self.progress < self.total:
            losses = {k: float(v) for k, v in trainer.step(self.step).items()}
            bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
            if bad:
                raise RuntimeError(f"{trainer.name}: {bad} at step {self.step}; lower --lr")
            before = self.progress
            self.step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            bar.update(trainer.per_step)
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            out_of_time = world.any(self.max_seconds is not None and time.time() - t0 > self.max_seconds)
            crossed = self.progress // self.snap > before // self.snap
            if not (crossed or self.progress >= self.total or out_of_time):
                continue
            means = world.mean({k: sums[k] / counts[k] for k in sums})  # the whole batch's losses
            now = time.time()
            seconds = self.seconds + now - t0
            values = {**means, "step": self.step, "seconds": seconds,
                      "steps_per_s": (self.step - window_start) / max(now - t_window, 1e-6)}
            sums, counts, window_start, t_window = {}, {}, self.step, now
            self.save(seconds)
            if world.main:
                values.update(trainer.snapshot(self.step, values))
                self.write_row(values)
                plot_log(self.log, self.out / "loss.png", trainer.plot_columns)
            if out_of_time:
                if world.main:
                    print(f"stopping after {self.max_seconds:.0f} s at step {self.step} (continue with --resume)")
                break
        bar.close()
        if world.main:
            trainer.export(self.step)
        finish_run(world)
        return self.step

    @property
    def progress(self) -> int:
        """Units of progress done: steps, or images for a trainer counted in images."""
        return self.step * self.trainer.per_step


def format_value(v: Union[float, int]) -> str:
    """A log.csv cell: integers as they are, other numbers with 6 significant digits ('nan' when missing)."""
    return str(v) if isinstance(v, int) else f"{v:.6g}"
