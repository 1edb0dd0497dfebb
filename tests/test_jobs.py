"""JobManager: owners, queueing, stopping, failures, eviction and caps (fake runs, no model needed)."""

from __future__ import annotations

import threading
import time

import pytest

from ui.jobs import JobManager


def counting_run(n_steps: int, step_s: float = 0.0, gate: threading.Event | None = None):
    """A fake run that yields 0..n_steps-1, optionally waiting for ``gate`` first, and honours the stop flag."""

    def run(stop: threading.Event):
        if gate is not None:
            gate.wait(5)
        for step in range(n_steps):
            if stop.is_set():
                return
            time.sleep(step_s)
            yield step

    return run


def test_two_owners_jobs_stay_separate():
    manager = JobManager(max_running=2)
    job_a = manager.start("alice", counting_run(3), "a")
    job_b = manager.start("bob", counting_run(5), "b")
    assert manager.wait(job_a, "alice", timeout=5).events == [0, 1, 2]
    assert manager.wait(job_b, "bob", timeout=5).events == [0, 1, 2, 3, 4]
    assert [view.job_id for view in manager.jobs_of("alice")] == [job_a]
    assert [view.job_id for view in manager.jobs_of("bob")] == [job_b]


def test_other_owner_gets_a_clear_message():
    manager = JobManager()
    job_id = manager.start("alice", counting_run(1))
    with pytest.raises(PermissionError, match="belongs to another session"):
        manager.poll(job_id, "mallory")
    with pytest.raises(PermissionError, match="belongs to another session"):
        manager.stop(job_id, "mallory")
    with pytest.raises(ValueError, match="There is no run 'job-999'"):
        manager.poll("job-999", "alice")


def test_third_job_queues_at_position_one_and_runs_after_one_finishes():
    manager = JobManager(max_running=2)
    gate_1, gate_2 = threading.Event(), threading.Event()
    first = manager.start("a", counting_run(2, gate=gate_1))
    manager.start("b", counting_run(2, gate=gate_2))
    third = manager.start("c", counting_run(2))
    fourth = manager.start("d", counting_run(2))
    view = manager.poll(third, "c")
    assert (view.status, view.position) == ("queued", 1)
    assert manager.poll(fourth, "d").position == 2
    gate_1.set()  # the first job finishes, which frees a slot for the third
    assert manager.wait(first, "a", timeout=5).status == "done"
    final = manager.wait(third, "c", timeout=5)
    assert (final.status, final.events, final.position) == ("done", [0, 1], None)
    assert manager.poll(fourth, "d").position is None  # moved up and started once the third left the queue
    gate_2.set()
    assert manager.wait(fourth, "d", timeout=5).events == [0, 1]


def test_poll_since_returns_only_new_events():
    manager = JobManager()
    job_id = manager.start("a", counting_run(6))
    manager.wait(job_id, "a", timeout=5)
    view = manager.poll(job_id, "a", since=4)
    assert (view.events, view.next_since, view.done) == ([4, 5], 6, True)


def test_stop_ends_a_running_job_within_one_step():
    manager = JobManager()
    job_id = manager.start("a", counting_run(10_000, step_s=0.01))
    while not manager.poll(job_id, "a").events:
        time.sleep(0.005)
    manager.stop(job_id, "a")
    n_at_stop = manager.poll(job_id, "a").next_since
    final = manager.wait(job_id, "a", timeout=5)
    assert final.status == "stopped"
    assert final.next_since - n_at_stop <= 1


def test_stop_cancels_a_queued_job():
    manager = JobManager(max_running=1)
    gate = threading.Event()
    first = manager.start("a", counting_run(1, gate=gate))
    queued = manager.start("a", counting_run(1))
    assert manager.stop(queued, "a").status == "stopped"
    gate.set()
    assert manager.wait(first, "a", timeout=5).status == "done"
    assert manager.poll(queued, "a").events == []


def test_an_exception_marks_the_job_failed_and_the_manager_goes_on():
    def broken(stop):
        yield "first"
        raise RuntimeError("the GPU caught fire")

    manager = JobManager(max_running=1)
    bad = manager.start("a", broken)
    good = manager.start("a", counting_run(2))
    failed = manager.wait(bad, "a", timeout=5)
    assert (failed.status, failed.events, failed.error) == ("failed", ["first"], "RuntimeError: the GPU caught fire")
    assert manager.wait(good, "a", timeout=5).status == "done"


def test_finished_jobs_are_evicted():
    manager = JobManager(evict_after_s=0.05)
    job_id = manager.start("a", counting_run(1))
    manager.wait(job_id, "a", timeout=5)
    assert len(manager.jobs_of("a")) == 1
    time.sleep(0.1)
    assert manager.jobs_of("a") == []
    with pytest.raises(ValueError, match="cleared 0.000833333 minutes after they end"):
        manager.poll(job_id, "a")


def test_job_ids_cannot_be_guessed_from_the_previous_one():
    manager = JobManager()
    first, second = (manager.start("a", counting_run(1)) for _ in range(2))
    assert first.startswith("job-1-") and second.startswith("job-2-")
    assert len(first.split("-")[-1]) == 8 and first.split("-")[-1] != second.split("-")[-1]


def test_24_runs_are_all_kept_while_queued_and_only_finished_ones_are_dropped():
    gate = threading.Event()
    manager = JobManager(max_running=2, max_finished=3)
    job_ids = [manager.start(f"student-{n}", counting_run(2, gate=gate)) for n in range(24)]
    views = [manager.poll(job_id, f"student-{n}") for n, job_id in enumerate(job_ids)]
    assert [view.status for view in views].count("running") == 2
    assert [view.position for view in views[2:]] == list(range(1, 23))
    gate.set()
    for n, job_id in enumerate(job_ids):
        manager.wait(job_id, f"student-{n}", timeout=5)
    kept = sum(len(manager.jobs_of(f"student-{n}")) for n in range(24))
    assert kept == 3  # the 3 most recently finished jobs stay; no queued or running job was ever dropped


def test_caps_from_environment_and_clamping(monkeypatch):
    monkeypatch.setenv("LLM_LAB_MAX_RUNS", "3")
    monkeypatch.setenv("LLM_LAB_MAX_STEPS", "500")
    monkeypatch.setenv("LLM_LAB_MAX_MINUTES", "4")
    manager = JobManager()
    assert (manager.max_running, manager.max_steps_cap, manager.max_minutes_cap) == (3, 500, 4)
    assert manager.clamp_steps(200) == (200, None)
    assert manager.clamp_steps(501) == (500, "This server allows at most 500 steps per run; using 500 instead of 501.")
    assert manager.clamp_minutes(10) == (4.0, "This server allows at most 4 minutes per run; using 4 instead of 10.")
    with pytest.raises(ValueError, match="at least 1"):
        manager.clamp_steps(0)
    monkeypatch.setenv("LLM_LAB_MAX_RUNS", "two")
    with pytest.raises(ValueError, match="LLM_LAB_MAX_RUNS must be a whole number"):
        JobManager()


def test_time_cap_asks_the_run_to_stop():
    manager = JobManager(max_minutes_cap=0.001)  # 0.06 s
    job_id = manager.start("a", counting_run(10_000, step_s=0.01))
    final = manager.wait(job_id, "a", timeout=5)
    assert final.status == "done"
    assert final.note == "Stopped at the server's limit of 0.001 minutes per run."
    assert final.next_since < 100


def test_a_value_error_keeps_its_plain_message():
    def bad_settings(stop):
        raise ValueError("The batch size must be a whole number of at least 1, got 0.")
        yield  # pragma: no cover  (makes this a generator)

    manager = JobManager()
    job_id = manager.start("a", bad_settings)
    failed = manager.wait(job_id, "a", timeout=5)
    assert (failed.status, failed.error) == ("failed", "The batch size must be a whole number of at least 1, got 0.")
