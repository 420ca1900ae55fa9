"""Compute threads chosen for the machine as it is (latentspaces.threads): the flag, OMP_NUM_THREADS,
the CPUs this process may use, torchrun's local ranks, and a busy machine."""

from __future__ import annotations

import pytest
import torch

import latentspaces.threads as threads
from latentspaces.threads import choose_threads, use_threads


@pytest.fixture
def machine(monkeypatch):
    """A 4-CPU machine with no OMP_NUM_THREADS and no torchrun; `set(load=)` sets the others' runnable threads."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)

    def set(load: float = 0.0) -> None:
        monkeypatch.setattr(threads, "machine_load", lambda: load)
    set()
    return set


def test_an_idle_machine_gets_every_usable_cpu(machine):
    assert choose_threads() == threads.ThreadChoice(4, "")


def test_a_busy_machine_leaves_the_others_their_cpus_and_says_so(machine):
    machine(load=2.0)
    choice = choose_threads()
    assert choice.threads == 2 and "the machine is busy (2 runnable threads of other processes on 4 CPUs)" in choice.note
    machine(load=9.0)
    assert choose_threads().threads == 1                      # never below one
    machine(load=1.0)
    choice = choose_threads()
    assert choice.threads == 3 and "1 runnable threads of other processes" in choice.note


def test_the_flag_and_omp_num_threads_win_and_torchrun_ranks_split(machine, monkeypatch):
    machine(load=3.5)
    assert choose_threads(3).threads == 3 and choose_threads(8).note.startswith("8 threads on 4 usable CPUs")
    with pytest.raises(ValueError, match="whole number >= 1"):
        choose_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == threads.ThreadChoice(3, "")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many'"):
        choose_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert choose_threads().threads == 1                      # 4 CPUs over 3 ranks; their load is their own


def test_use_threads_sets_torch_and_the_real_machine_is_read():
    before = torch.get_num_threads()
    try:
        assert use_threads(1).threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert threads.usable_cpus() >= 1 and threads.machine_load() >= 0 and threads.own_load() >= 0
