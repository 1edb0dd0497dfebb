"""How runs share the cores (ui.runs): a lone run on a quiet server takes every core at normal priority; students
exploring or a second run make every run share, niced, from its next step on."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from ui import runs
from ui.jobs import JobManager


@pytest.fixture
def quiet_server(monkeypatch):
    """8 cores, no explore view asked for yet, no run going, no LLM_LAB_TORCH_THREADS; torch's threads restored."""
    monkeypatch.delenv("LLM_LAB_TORCH_THREADS", raising=False)
    monkeypatch.setattr(runs.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(runs, "_last_view_at", -runs.VIEWS_QUIET_S)
    manager = JobManager(max_running=2)
    monkeypatch.setattr(runs, "job_manager", lambda: manager)
    niced = []
    monkeypatch.setattr(runs, "lower_thread_priority", lambda nice: niced.append(nice) or True)
    threads = torch.get_num_threads()
    yield manager, niced
    torch.set_num_threads(threads)


def test_a_lone_run_on_a_quiet_server_takes_every_core(quiet_server):
    _, niced = quiet_server
    assert (runs.shared_threads(), runs.lone_run_threads(), runs.run_threads()) == (4, 8, 8)
    runs.pin_torch_threads()
    assert torch.get_num_threads() == 8 and niced == []


def test_an_explore_view_makes_runs_share_and_gives_the_cores_back_at_once(quiet_server):
    _, niced = quiet_server
    runs.pin_torch_threads()
    assert torch.get_num_threads() == 8
    view = runs.explore_view(lambda text: text.upper())
    assert view("hello") == "HELLO"
    assert torch.get_num_threads() == 4  # given back by the view itself, before the run's next step
    assert runs.server_is_busy() and runs.run_threads() == 4
    runs.pin_torch_threads()
    assert niced == [runs.run_priority()]


def test_a_streamed_view_counts_at_every_update(quiet_server, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(runs.time, "monotonic", lambda: clock[0])

    def stream():
        for step in range(3):
            clock[0] += runs.VIEWS_QUIET_S  # each update comes a quiet period after the one before
            yield step

    assert list(runs.explore_view(stream)()) == [0, 1, 2]
    assert runs._last_view_at == 1000.0 + 3 * runs.VIEWS_QUIET_S and runs.server_is_busy()
    clock[0] += runs.VIEWS_QUIET_S + 0.1
    assert not runs.server_is_busy() and runs.run_threads() == 8


def test_a_second_run_makes_both_share(quiet_server):
    manager, niced = quiet_server
    release = threading.Event()

    def job(stop):
        yield from runs.sharing_cores(iter([1, 2]))
        release.wait(10)

    manager.start("a", job, label="first")
    manager.start("b", job, label="second")
    deadline = time.monotonic() + 10
    while manager.running_count() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert manager.running_count() == 2 and runs.run_threads() == 4
    release.set()


def test_the_threads_setting_overrides_everything(quiet_server, monkeypatch):
    monkeypatch.setenv("LLM_LAB_TORCH_THREADS", "3")
    assert (runs.shared_threads(), runs.run_threads()) == (3, 3)
