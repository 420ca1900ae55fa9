"""Sharding the experiments over processes started by `torchrun` (DESIGN.md, "Scale").

    torchrun --nproc_per_node=4 -m experiments.cli compare --out runs/full            # 4 CPU processes (gloo)
    torchrun --nproc_per_node=8 -m experiments.cli compare --out runs/full --device cuda  # one GPU each (NCCL)

Every rank works on its own share of the jobs (an inversion chunk of one space, one edit direction of
one space, one compensation method) and writes into the same OUT: per-chunk code files, and rows
appended to the per-image CSV under an exclusive file lock. Rank 0 locks OUT for the whole run (so a
second run into it is refused, on every rank: `World.from_main`), claims it and plans the missing jobs
before the others start, and writes the tables and plots after all have finished, so a sharded run
leaves the same files as a single process does, and either one resumes the other's folder. Across
machines (torchrun --nnodes) OUT must be one folder that every node writes to, on a filesystem with
working POSIX locks.

The trainers of the encoders and compensation heads use the same world for data-parallel training
(`World.average_gradients_`): every rank draws its own share of each batch, rank 0 logs, plots and
checkpoints (experiments/training.py). BatchNorm layers normalise over each rank's share of the
batch and keep their own running statistics, as under DistributedDataParallel without
SyncBatchNorm (which has no CPU kernel); rank 0's statistics are the ones exported.

Without `torchrun` (no WORLD_SIZE in the environment) the world is this one process and every call
here is a no-op.
"""

from __future__ import annotations

import itertools
import os
import pickle
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Dict, Iterable, List, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# A rank that finishes its share early waits at the next barrier for the slowest rank; on a CPU one
# full-settings chunk takes minutes, so the default 30-minute collective timeout is too short.
COLLECTIVE_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one sharded run."""

    rank: int = 0        # global rank in [0, size)
    size: int = 1        # number of processes
    local_rank: int = 0  # rank on this machine (picks the GPU)

    @property
    def main(self) -> bool:
        """Whether this process writes the shared summaries (rank 0)."""
        return self.rank == 0

    @staticmethod
    def current() -> "World":
        """The world of the initialized default process group, or a world of one process."""
        if not (dist.is_available() and dist.is_initialized()):
            return World()
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def shard(self, jobs: Sequence[T]) -> List[T]:
        """This rank's share of `jobs`: every size-th one, starting at its rank (round robin)."""
        return list(jobs[self.rank :: self.size])

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, obj: T) -> List[T]:
        """`obj` of every rank, in rank order, on every rank (picklable objects made by this code only)."""
        if self.size == 1:
            return [obj]
        got: List[T] = [None] * self.size  # type: ignore[list-item]
        dist.all_gather_object(got, obj)
        return got

    def _device(self) -> torch.device:
        """Where collectives' tensors live: NCCL wants this rank's GPU, gloo the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank (e.g. a time limit one rank reached first: all stop together)."""
        if self.size == 1:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], device=self._device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: Dict[str, float]) -> Dict[str, float]:
        """Each value averaged over the ranks (float64), e.g. the losses a trainer logs."""
        if self.size == 1:
            return dict(values)
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(values, t.tolist())}

    def broadcast_(self, *modules: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into the same modules on every rank: one starting point."""
        if self.size == 1:
            return
        for m in modules:
            for t in itertools.chain(m.parameters(), m.buffers()):
                dist.broadcast(t.data, src=0)

    def average_gradients_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks (call between backward and the optimizer step).

        Data-parallel training the way NVlabs' stylegan3 training loop does it: one all-reduce of the
        flattened gradients, instead of the DistributedDataParallel wrapper, which needs every use
        of a module to go through its forward and does not support double backward (the R1 penalty
        of the W+ encoder's latent discriminator). Each rank's loss is a mean over its share of the
        batch, so the mean gradient is the gradient of the mean loss over the whole batch. A parameter
        without a gradient (unused this step, the same on every rank) keeps none.
        """
        if self.size == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def from_main(self, make: Callable[[], T]) -> T:
        """`make()` on rank 0 only; every rank returns its value, or raises its error, so all ranks stop together.

        For steps that only rank 0 may take (locking a folder, planning and repairing its rows): the
        others wait in one collective instead of at a barrier that a failed rank 0 never reaches.
        Rank 0 raises its own exception; the others raise a copy of it (a RuntimeError with its
        message when it does not pickle). The value must pickle (rows, lists of jobs, None).
        """
        if self.size == 1:
            return make()
        value, error, sent = None, None, None
        if self.main:
            try:
                value = make()
            except Exception as e:
                error = sent = e
                try:
                    pickle.dumps(e)
                except Exception:
                    sent = RuntimeError(f"rank 0 failed: {type(e).__name__}: {e}")
        value, sent = self.gather((value, sent))[0]
        if error is not None:
            raise error
        if sent is not None:
            raise sent
        return value

    def main_first(self, make: Callable[[], T]) -> T:
        """`make()` on rank 0, then on the others: for steps that fill a cache (P_N statistics,
        GANSpace directions) or claim a folder, so that the others read what rank 0 wrote."""
        if self.main:
            value = make()
        self.barrier()
        if not self.main:
            value = make()
        return value


def init_world(device: str) -> Tuple[World, str]:
    """Join the process group `torchrun` describes in the environment; returns (world, this rank's device).

    gloo on CPU, NCCL on CUDA with one GPU per local rank (`--device cuda` becomes cuda:LOCAL_RANK).
    Without WORLD_SIZE (a plain run), or with WORLD_SIZE=1, returns a world of one and `device` as given.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE is set but this PyTorch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                               "start at most that many processes per node (torchrun --nproc_per_node)")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return World.current(), device


def close_world(wait: bool = True) -> None:
    """Leave the process group (after the last collective), if one was joined.

    wait: first meet every other rank at a barrier, so that all of them tear down together. A rank
    that finished early (rank 0 alone writes the tables and plots) and destroyed its gloo group while
    rank 0 was still working was, rarely, aborted by gloo on the way out ("terminate called without
    an active exception"; 2 of about 40 runs of the two-rank identity-curves test, all its work
    done). A rank leaving on an error passes wait=False: the others may never reach the barrier, and
    a gloo peer waiting at it fails as soon as this rank's connections close (RuntimeError below).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    rank = dist.get_rank()
    try:
        if wait:
            dist.barrier()
    except Exception as e:   # a peer left on an error: its own message says why
        raise RuntimeError(f"rank {rank} finished its share, but another rank stopped on an error before the end "
                           f"(see that rank's message; this rank's results are written): "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    finally:
        dist.destroy_process_group()
