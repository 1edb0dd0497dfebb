"""A class of students on one server: latency of the explore views under load, alone and beside 2 training runs.

Starts `python app.py` on a free local port (or uses `--url` of a running server) and runs N simulated students
for S seconds. Each student has its own Gradio session and cycles /tokenize -> /attention -> /inside -> /generate
with a random 0.5-2 s think time between requests. Half the texts are one of a dozen sentences a class would type
(each tab's default included, read from the server), half are made unique for that request (a sentence plus a
random word and number), so a cache cannot carry everything. Every parameter takes the default the server
reports in /gradio_api/info; only the text (and /generate's seed) is replaced. One warm-up call per endpoint
comes first and is not counted.

Latency is from sending the request to its final `complete` event (all of /generate's stream included). An
`error` event, an HTTP error or a time-out counts as an error; p50/p95/max are over the requests that succeeded.

Phases: "alone" (only the students), then "beside_runs" (2 Pretrain runs started with their defaults through
/pretrain_start, each from its own session, then the same students; the runs are stopped afterwards).

Phase "class" (only with --phases class): the same students explore as in "alone", and beside them a class
runs (ui/classroom.py). A teacher session starts a class (/class_start, browser id null: the server then names
the owner by the Gradio session, ui/runs.py owner_of), pushes its page once (/class_push: the teacher
state it got, every followed input at its API default), refreshes its list of students every 5 s (/class_roster, the page's timer) and types a new sentence into the Tokenizer tab's text
every --text-every seconds (30: a teacher talks through a view before changing it; 10 is a stress test), pushed
within 0.3 s, as the page script does when it sees a change. The first --class-size students (default: all)
join (/class_join, nickname student-i) at random moments over the first --join-over seconds (10) and, like the
page's script beside its explore tab, wait for the class's next version (GET /class_version/CODE?after=V, a
plain route the server answers when the class changes or after 25 s); when it moved they pause at random up to
1 s, as the page does, update the status line when its version moved (/class_poll; the join brings it) and
take the teacher's tab as the page does: GET /class_view/CODE/TAB, the tab's inputs and views drawn once for the
class and set in the page without a Gradio event (or the tab's Gradio update /class_poll_TAB where the server
has no view). A Tokenizer text that came with its views drawn is not drawn again; one that came with the
Gradio update is, by the text's change event on the page: one /tokenize ("/tokenize (follow)"). Each student's class page has a Gradio session of its own beside its explore session (see
class_member). Lines: the explore views (goal p95 <= 2 s), "GET /class_version (wait)" (the waits: errors and
count; each ends at a change or after 25 s), "GET /class_view", /class_push (goal p95 <= its 1 s interval),
/class_poll, /class_join, and "follow_delay": for each teacher change and each student, the seconds from the
teacher typing it to that student's first view or update that brought it (goal p95 <= 2 s, none missed). With
"class" in --phases, every sentence is sent once to each explore view
without a seed before the phases (warm-up, not counted), so the view caches are as warm in every phase and round.

--repeat N runs the phases N times, every other round in mirrored order (alone, class, class, alone, ... with
--phases alone,class --repeat 2), so a server that slows down as a lesson goes on (this VM drifts, and explore
p50 grew 0.1 -> 0.2 s from the first alone round to the second in one run) does not favour the phase that runs
first; later rounds have their own seeds and sessions, lines carry "round". With alone and class both run, a last line
compares them, on the same server in the same invocation: for each explore view, the median over the rounds of
each phase's p95 (and p50), ratio = class / alone, goal ratio <= 1.10. This VM's p95 moves by 10-30% from one
minute to the next, so one round of each can pass or fail by noise alone: take --repeat 2 or more, and read
ratio_p50 (steadier) beside ratio, pooled_ratio (the p95 of every request of the phase's rounds together) and
alone_vs_alone (the same pooled p95 of the alone rounds' two ABBA halves against each other: how far the very same
load lands apart here; with --repeat 4 it came out 0.77-1.77). The same figures are also given for two parts of
a phase, cut at the same second in both phases: "joining_" (requests sent in the first --join-over + 2 s, while
the class's 30 students join: each join costs the server about what an explore request does) and "following_"
(the rest: the class follows the teacher). A view is ok when its following_ratio is within the goal (a class of
30 following adds at most 10%); the join window's cost is shown beside it.
    {"bench": "classroom", "phase": "class", ..., "endpoint": "follow_delay", "class_size": 30, "changes": 6,
     "samples": 180, "missed": 0, "p50_s": 0.9, "p95_s": 1.5, "max_s": 1.9, "goal_p95_s": 2.0, "ok": true, ...}
    {"bench": "classroom", "phase": "class_vs_alone", ..., "rounds": 2, "method": "...", "endpoints":
     {"/tokenize": {"alone_p95_s": [0.5, 0.6], "class_p95_s": [0.6, 0.6], ..., "ratio_p50": 1.02, "ratio": 1.09,
     "ok": true}, ...}, "goal_ratio": 1.1, "ok": true}

Phase "mixed" (only with --phases mixed) is a whole lesson on a server of its own, started with
LLM_LAB_IDLE_MINUTES=--idle-minutes: the students explore as above, and over the first 40% of the phase 12 of
them start a run one after another: 6 Pretrain runs (--run-steps steps, other settings at their defaults),
3 /classify_start and 3 /instruct_start fine-tunes (defaults). Each follows its run with /*_poll every 2 s;
a Pretrain student whose run finished presses "use this model in the explorer" (/pretrain_use) and from then
on explores with that model. Runs still going at the end are stopped. The server's RSS is sampled every 5 s.
Then no request at all for --idle-wait seconds, so the server's idle sweep (every 60 s) evicts what was made,
and finally one request per made thing (its poll, /inside with the model, /classify_text) tells what is gone.
Two JSON lines: the lesson (peak RSS against --memory-budget-mb, runs started/finished, models used, errors,
explore p95), and after the idle wait (RSS, its drop, what was evicted, the RSS timeline every 30 s):
    {"bench": "classroom", "students": 30, "seconds": 600, "phase": "mixed", "start_rss_mb": 576.1,
     "peak_rss_mb": 1616.3, "end_rss_mb": 1568.2, "memory_budget_mb": 4000, "runs_started": 6, ..., "ok": true}
    {"bench": "classroom", ..., "phase": "mixed_idle", "end_rss_mb": 1568.2, "after_idle_rss_mb": 1080.0,
     "drop_mb": 488.2, "returned_share": 0.52, "evicted": {"pretrain_runs": {"gone": 6, "of": 6}, ...}, ...}
The lesson is ok when the peak stays within the budget. The idle wait is ok when everything made is gone and the
RSS gave back at least half of what the lesson added at its peak (returned_share = (peak - after) / (peak - start);
drop_mb = end - after is what went back during the idle wait alone: with --idle-minutes 1, things idle for a
minute are already swept during the lesson).

Prints JSON lines, one per phase and endpoint, then one per phase:
    {"bench": "classroom", "phase": "alone", "endpoint": "/inside", "students": 30, "seconds": 60, "requests": 212,
     "errors": 0, "p50_s": 0.41, "p95_s": 1.2, "max_s": 2.3, "goal_p95_s": 2.0, "ok": true, "first_error": null}
    {"bench": "classroom", "phase": "alone", "endpoint": "all", ..., "server_rss_mb": 610.2,
     "server_peak_rss_mb": 702.5, "children_rss_mb": 0.0, "ok": true}
The goal is p95 <= 2 s alone and <= 4 s beside the runs, with 0 errors. RSS is the server process's VmRSS at the
end of the phase and its peak (VmHWM) since it started; children_rss_mb adds up its child processes (null with --url).
server_cpu_s, worker_cpu_s and bench_cpu_s are the CPU seconds the server, its children (the generation worker)
and this load generator used during the phase, and server_cpu_share the server's and children's share of all the
machine's cores: near 1.0 the server is saturated, where any added work stretches the slowest requests most.
The load generator is one asyncio loop speaking Gradio's HTTP API, so it stays light beside the server.

    python bench/classroom.py                                  # 30 students, 60 s per phase, 3-5 minutes
    python bench/classroom.py --students 3 --seconds 10 --phases alone --endpoints /tokenize,/inside
    python bench/classroom.py --phases mixed --seconds 600         # the 10-minute lesson, about 13 minutes
    python bench/classroom.py --phases alone,class --repeat 2      # a class following a teacher, 5 minutes
    python bench/classroom.py --phases class --class-size 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXPLORE = ["/tokenize", "/attention", "/inside", "/generate"]
GOALS = {"alone": 2.0, "beside_runs": 4.0, "class": 2.0}
RUNS_BESIDE = 2
REQUEST_TIMEOUT_S = 300.0
SENTENCES = [  # the tabs' own defaults are added from /gradio_api/info
    "The cat sat on the mat.",
    "Once upon a time there was a little robot who wanted to learn.",
    "To be, or not to be, that is the question.",
    "Attention is all you need.",
    "My favourite food is pizza with extra cheese!",
    "Why is the sky blue?",
    "Machine learning models learn patterns from data.",
    "ROMEO: But soft, what light through yonder window breaks?",
]
# The load generator drops a connection idle this long, before the server's own keep-alive limit (uvicorn: 5 s)
# closes it: with both at 5 s a request sent on a connection the server was closing failed with a ReadError (1 in
# 11,000 requests), where a browser would have sent it again on a new connection.
KEEPALIVE_S = 3.0
TRACE: list[dict] | None = None  # --trace: every request's endpoint, session, start and seconds, written at the end
WORDS = ["banana", "quantum", "teacher", "volcano", "pixel", "homework", "dragon", "lunch", "Tuesday", "guitar"]


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int | None) -> dict:
    """The server's VmRSS and VmHWM, and the VmRSS of its child processes, in MB (null when unknown)."""
    def status(p: int) -> dict[str, float]:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            return {}
        fields = (line.split(":", 1) for line in text.splitlines() if line.startswith(("VmRSS", "VmHWM")))
        return {key: int(value.split()[0]) / 1024 for key, value in fields}

    def children(p: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in task.read_text().split()]
        return found + [g for c in found for g in children(c)]

    if pid is None or not status(pid):
        return {"server_rss_mb": None, "server_peak_rss_mb": None, "children_rss_mb": None}
    own = status(pid)
    kids = sum(status(c).get("VmRSS", 0.0) for c in children(pid))
    return {"server_rss_mb": round(own.get("VmRSS", 0.0), 1), "server_peak_rss_mb": round(own.get("VmHWM", 0.0), 1),
            "children_rss_mb": round(kids, 1)}


def cpu_seconds(pid: int | None) -> dict[str, float] | None:
    """CPU seconds (user + system) used so far by the server, by its children (the generation worker) and by
    this load generator, which shares the machine: their difference over a phase is what the phase cost."""
    def used(p: int) -> float | None:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    if pid is None or used(pid) is None:
        return None
    kids = [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children")
            for c in (task.read_text().split() if task.exists() else [])]
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"server": used(pid), "children": sum(used(c) or 0.0 for c in kids),
            "bench": own.ru_utime + own.ru_stime}


def cpu_line(before: dict | None, after: dict | None, seconds: float) -> dict:
    """The phase's CPU: seconds each used, and the server's share of the machine's cores over the phase."""
    if before is None or after is None:
        return {"server_cpu_s": None}
    spent = {key: round(after[key] - before[key], 1) for key in before}
    return {"server_cpu_s": spent["server"], "worker_cpu_s": spent["children"], "bench_cpu_s": spent["bench"],
            "server_cpu_share": round((spent["server"] + spent["children"]) / (seconds * (os.cpu_count() or 1)), 3)}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)


def defaults(info: dict, endpoint: str) -> list:
    """Every parameter's default from /gradio_api/info, in the server's order (None where it has none)."""
    params = info["named_endpoints"][endpoint]["parameters"]
    return [p.get("parameter_default") if p.get("parameter_has_default") else None for p in params]


def param_index(info: dict, endpoint: str, *, name: str | None = None, component: str | None = None) -> int | None:
    """Position of the first parameter with this name (or, failing that, this component); None if there is none."""
    params = info["named_endpoints"][endpoint]["parameters"]
    for key, wanted in (("parameter_name", name), ("component", component)):
        for i, p in enumerate(params):
            if wanted is not None and p.get(key) == wanted:
                return i
    return None


def error_text(data: str) -> str:
    try:
        value = json.loads(data)
    except ValueError:
        return data[:300]
    if isinstance(value, dict):
        value = value.get("error") or value.get("message") or value
    return str(value)[:300]


async def request(client: httpx.AsyncClient, endpoint: str, data: list,
                  session: str) -> tuple[float, str | None, list | None]:
    """One request through /gradio_api/call: (seconds until its final event, error message or None, its outputs)."""
    start = time.perf_counter()
    outcome: str | None = "the stream ended without a complete event"
    elapsed = outputs = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            posted = await client.post(f"/gradio_api/call{endpoint}", json={"data": data, "session_hash": session})
            if posted.status_code != 200:
                return time.perf_counter() - start, f"HTTP {posted.status_code}: {posted.text[:300]}", None
            event_id = posted.json()["event_id"]
            async with client.stream("GET", f"/gradio_api/call{endpoint}/{event_id}") as stream:
                if stream.status_code != 200:
                    return time.perf_counter() - start, f"HTTP {stream.status_code} on the event stream", None
                event = None
                async for line in stream.aiter_lines():  # read to the end so the server closes the session cleanly
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event in ("complete", "error") and elapsed is None:
                        elapsed = time.perf_counter() - start
                        outcome = None if event == "complete" else error_text(line[5:].strip())
                        if outcome is None:
                            with contextlib.suppress(ValueError):
                                outputs = json.loads(line[5:])
    except TimeoutError:
        outcome = f"no final event after {REQUEST_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = elapsed if elapsed is not None else time.perf_counter() - start
    if TRACE is not None:
        TRACE.append({"endpoint": endpoint, "session": session, "start": round(start, 3), "seconds": round(seconds, 4),
                      "error": outcome})
    return seconds, outcome, outputs


async def call(client: httpx.AsyncClient, endpoint: str, data: list, session: str) -> tuple[float, str | None]:
    """One request through /gradio_api/call: (seconds until its final event, error message or None)."""
    seconds, error, _ = await request(client, endpoint, data, session)
    return seconds, error


def session_name(args, phase: str, number: int) -> str:
    """Student ``number``'s Gradio session in a phase (the same for every request the student sends)."""
    return f"classroom-{phase}-{number}-{random.Random(f'{args.seed}-{phase}-{number}').getrandbits(32):08x}"


def model_param(info: dict, endpoint: str) -> int | None:
    """Position of the model menu's parameter (a Dropdown named choice), or None."""
    at = param_index(info, endpoint, name="choice")
    return at if at is not None and info["named_endpoints"][endpoint]["parameters"][at]["component"] == "Dropdown" \
        else None


async def student(client, info, endpoints, sentences, number, phase, args, results, own_models=None,
                  lock=None, windows: PhaseWindows | None = None) -> None:
    """One student: its own session, the endpoints in a cycle, think time between requests, until the deadline.

    Once ``own_models`` has a model for this student (mixed phase: its pretrain run, used in the explorer), the
    views with a model menu use that model, and those requests are counted under "<endpoint> (own model)".
    ``lock`` (an asyncio.Lock) is held during each request when the session's training task shares it.
    ``windows`` also files each request's latency by when it was sent: during the class's joins or after them.
    """
    rng = random.Random(f"{args.seed}-{phase}-{number}")
    session = session_name(args, phase, number)
    deadline = time.perf_counter() + args.seconds
    step = 0
    await asyncio.sleep(rng.uniform(0.0, 2.0))  # students do not all click in the same instant
    while time.perf_counter() < deadline:
        endpoint = endpoints[step % len(endpoints)]
        step += 1
        text = rng.choice(sentences)
        if rng.random() < 0.5:
            text = f"{text} {rng.choice(WORDS)} {rng.randrange(10_000)}"
        data = defaults(info, endpoint)
        where = param_index(info, endpoint, component="Textbox")
        if where is not None:
            data[where] = text
        seed_at = param_index(info, endpoint, name="seed")
        if seed_at is not None:
            data[seed_at] = rng.randrange(1, 1_000_000)
        bucket = endpoint
        own_model, choice_at = (own_models or {}).get(number), model_param(info, endpoint)
        if own_model and choice_at is not None:
            data[choice_at] = own_model
            bucket = f"{endpoint} (own model)"
        async with lock or contextlib.nullcontext():
            sent = time.perf_counter()
            results.setdefault(bucket, []).append(outcome := await call(client, endpoint, data, session))
        if windows is not None and outcome[1] is None:
            windows.add(bucket, sent, outcome[0])
        await asyncio.sleep(rng.uniform(0.5, 2.0))


async def start_runs(client, info, phase) -> list[str]:
    """Start the Pretrain runs with their defaults, each from its own session; the sessions that started one."""
    if "/pretrain_start" not in info["named_endpoints"]:
        log("classroom: the server has no /pretrain_start; the students run without training beside them")
        return []
    sessions = [f"classroom-{phase}-run-{i}-{os.getpid()}" for i in range(RUNS_BESIDE)]
    outcomes = await asyncio.gather(*(call(client, "/pretrain_start", defaults(info, "/pretrain_start"), s)
                                      for s in sessions))
    started = []
    for session, (seconds, error) in zip(sessions, outcomes):
        log(f"classroom: /pretrain_start for {session} took {seconds:.1f} s" + (f", error: {error}" if error else ""))
        if error is None:
            started.append(session)
    return started


@dataclass
class PhaseWindows:
    """The explore views' latencies by when the request was sent: in the first ``joins_end`` seconds of the phase
    (a class phase's students join then, --join-over plus JOIN_SETTLE_S) or after (the class follows). Alone phases
    are cut at the same second, so both sides of a ratio cover the same part of a phase."""

    start: float
    joins_end: float
    joining: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    following: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, endpoint: str, sent: float, seconds: float) -> None:
        (self.joining if sent - self.start < self.joins_end else self.following)[endpoint].append(seconds)


async def run_phase(client, info, endpoints, sentences, phase, args, pid, round_number: int = 0) -> dict:
    """One phase (alone, beside_runs or class): prints its lines; returns {endpoint: {"p50_s", "p95_s"}} of the
    explore views. Round 0 keeps the phase's own seeds and sessions; a later round (--repeat) gets new ones."""
    tag = phase if round_number == 0 else f"{phase}-{round_number + 1}"
    runs = await start_runs(client, info, phase) if phase == "beside_runs" else []
    results: dict[str, list[tuple[float, str | None]]] = {e: [] for e in endpoints}
    log(f"classroom: phase {tag}: {args.students} students for {args.seconds} s on {', '.join(endpoints)}"
        + (f", {args.class_size} of them in a class that follows a teacher" if phase == "class" else ""))
    windows = PhaseWindows(time.perf_counter(), args.join_over + JOIN_SETTLE_S)
    explorers = [student(client, info, endpoints, sentences, n, tag, args, results, windows=windows)
                 for n in range(args.students)]
    lesson = ClassLesson() if phase == "class" else None
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    if lesson is not None:
        await asyncio.gather(*explorers, run_class(client, info, sentences, tag, args, lesson))
    else:
        await asyncio.gather(*explorers)
    memory = memory_mb(pid)  # before the runs stop, while they still hold their memory
    cpu = cpu_line(cpu_before, cpu_seconds(pid), time.perf_counter() - started)
    for session in runs if "/pretrain_stop" in info["named_endpoints"] else []:
        _, error = await call(client, "/pretrain_stop", defaults(info, "/pretrain_stop"), session)
        if error:
            log(f"classroom: /pretrain_stop for {session}: {error}")
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    common = {"bench": "classroom", "phase": phase, "students": args.students, "seconds": seconds}
    if args.repeat > 1:
        common["round"] = round_number + 1
    total_requests = total_errors = 0
    all_ok = True
    explore = {}
    goals = {e: GOALS[phase] for e in endpoints} | ({**CLASS_GOALS} if lesson is not None else {})
    for endpoint, goal in goals.items():
        bucket = results[endpoint] if endpoint in results else lesson.results.get(endpoint, [])
        if endpoint not in results and not bucket:
            continue
        latencies = [s for s, error in bucket if error is None]
        errors = [error for _, error in bucket if error is not None]
        for error in errors[:3]:
            log(f"classroom: {tag} {endpoint} error: {error}")
        p95 = percentile(latencies, 95)
        ok = p95 is not None and p95 <= goal and not errors
        emit({**common, "endpoint": endpoint, "requests": len(bucket), "errors": len(errors),
              "p50_s": percentile(latencies, 50), "p95_s": p95, "max_s": percentile(latencies, 100),
              "goal_p95_s": goal, "ok": ok, "first_error": errors[0] if errors else None})
        if endpoint in results:
            explore[endpoint] = {"p50_s": percentile(latencies, 50), "p95_s": p95, "latencies": latencies,
                                 "joining": windows.joining[endpoint], "following": windows.following[endpoint]}
        total_requests += len(bucket)
        total_errors += len(errors)
        all_ok = all_ok and ok
    extra = {"runs_started": len(runs)} if phase == "beside_runs" else {}
    if lesson is not None:
        follow = follow_line(lesson)
        emit({**common, "endpoint": "follow_delay", "class_size": args.class_size, **follow})
        extra = {"class_size": args.class_size, "joined": len(lesson.joined)}
        total_errors += len(lesson.errors)
        all_ok = all_ok and follow["ok"] and not lesson.errors
    emit({**common, "endpoint": "all", "requests": total_requests, "errors": total_errors, **memory, **cpu,
          **extra, "ok": all_ok})
    return explore


# ---------------------------------------------------------------------------------------------------------------
# The class phase: a teacher leads, the class follows (ui/classroom.py), beside the same explore load
# ---------------------------------------------------------------------------------------------------------------

CLASS_WAIT_S = 25.0  # ui.classroom.WAIT_S: a following page's ask for the next version is answered within this
CLASS_SPREAD_S = 1.0  # ui.classroom.SPREAD_S: after a change the page fetches it after a random pause up to this
TEACHER_PUSH_S = 5.0  # ui.classroom.TEACHER_PUSH_S: the teacher's page sends its state on a timer this often,
NOTICE_S = 0.3  # and a change once the page script notices it (it looks every 0.3 s; ui.common PAGE_JS)
SETTLE_S = 3.0  # no new text in the phase's last seconds: every student has time to see the last one
JOIN_SETTLE_S = 2.0  # the join window ends this long after the last join (its first view taken)
FOLLOW_GOAL_S = 2.0  # a following student sees the teacher's change within 2 s (p95)
RATIO_GOAL = 1.10  # the class may make the explore views' p95 at most 10% slower than alone
# Goals of the class's own requests: a poll or push slower than its interval makes the page's timer lag.
CLASS_GOALS = {"GET /class_version (wait)": CLASS_WAIT_S + 2.0, "GET /class_view": 2.0, "/class_poll": 2.0,
               "/class_poll_TAB": 2.0, "/class_push": 1.0, "/class_roster": 1.0, "/class_join": 2.0,
               "/tokenize (follow)": 2.0}
# A poll's outputs, as ui/classroom.py wire() lists them: the tab, the model menu, then every followed input in
# the order /class_push takes them (the API info leaves the tab and the gr.State outputs out; the data keeps
# them, the states as null).
POLL_FOLLOWED_AT = 2


@dataclass
class ClassLesson:
    """What the class phase's teacher and students did."""

    code: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once the class started (or failed to)
    changes: list[tuple[str, float]] = field(default_factory=list)  # (text, when the teacher typed it)
    pushed: str | None = None  # the Tokenizer text of the teacher's last push the server answered
    seen: dict[int, dict[str, float]] = field(default_factory=dict)  # student -> text -> its first poll with it
    joined: set[int] = field(default_factory=set)
    results: dict[str, list[tuple[float, str | None]]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)  # what went wrong outside the requests counted in results


def tokenizer_text_at(info: dict) -> tuple[int | None, int | None]:
    """Where the Tokenizer tab's text is: (its /class_push parameter, its /class_poll output); None if unknown.

    The text is the followed input whose default is /tokenize's text default; followed inputs come after lock.
    """
    push = info["named_endpoints"].get("/class_push")
    text_at = param_index(info, "/tokenize", component="Textbox") if "/tokenize" in info["named_endpoints"] else None
    lock_at = param_index(info, "/class_push", name="lock") if push else None
    if push is None or text_at is None or lock_at is None:
        return None, None
    wanted = defaults(info, "/tokenize")[text_at]
    for i, default in enumerate(defaults(info, "/class_push")[lock_at + 1:], start=lock_at + 1):
        if default == wanted:
            return i, POLL_FOLLOWED_AT + i - (lock_at + 1)
    return None, None


def teacher_texts(sentences: list[str], rng: random.Random):
    """The teacher's sentences in a shuffled order, each one new (a number is added once the list runs out)."""
    order = rng.sample(sentences, len(sentences))
    number = 0
    while True:
        yield f"{order[number % len(order)]}" + (f" ({number // len(order) + 1})" if number >= len(order) else "")
        number += 1


async def teacher(client, info, sentences, tag, args, lesson: ClassLesson, deadline: float) -> None:
    """Start the class and push the page once; then, as the teacher's page does, refresh the list of students
    every TEACHER_PUSH_S seconds (/class_roster; a server without it gets a push) and push when the page changed:
    a new Tokenizer text every --text-every seconds, pushed once the page script notices it (up to NOTICE_S s,
    part of the follow delay)."""
    session = session_name(args, f"{tag}-teacher", 0)
    rng = random.Random(f"{args.seed}-{tag}-teacher")
    data = defaults(info, "/class_start")
    data[param_index(info, "/class_start", name="teacher_key")] = ""
    data[param_index(info, "/class_start", name="browser")] = None  # the server names the owner by the session
    _, error, outputs = await request(client, "/class_start", data, session)
    state = outputs[0] if outputs and isinstance(outputs[0], dict) else None
    if error or state is None:
        lesson.errors.append(f"/class_start: {error or f'no teacher state in {str(outputs)[:200]}'}")
        lesson.ready.set()
        return
    lesson.code = state.get("code")
    lesson.ready.set()
    push = defaults(info, "/class_push")
    push[param_index(info, "/class_push", name="teacher_state")] = state
    push[param_index(info, "/class_push", name="browser")] = None
    text_at, _ = tokenizer_text_at(info)
    texts = teacher_texts(sentences, rng)
    start = time.perf_counter()
    next_change = start + args.text_every / 2 + rng.uniform(0.0, 1.0)
    next_tick = start
    roster = defaults(info, "/class_roster") if "/class_roster" in info["named_endpoints"] else None
    if roster is not None:
        roster[param_index(info, "/class_roster", name="teacher_state")] = state
        roster[param_index(info, "/class_roster", name="browser")] = None
    while time.perf_counter() < deadline:
        changing = text_at is not None and next_change < min(next_tick, deadline - SETTLE_S)
        await asyncio.sleep(max(0.0, (next_change if changing else next_tick) - time.perf_counter()))
        if changing:
            push[text_at] = next(texts)
            lesson.changes.append((push[text_at], time.perf_counter()))
            next_change += args.text_every
            await asyncio.sleep(rng.uniform(0.0, NOTICE_S) + 0.1)  # the page script notices, then pushes
        else:
            next_tick += TEACHER_PUSH_S
            if roster is not None and lesson.pushed is not None:  # the timer: the roster, not the page
                lesson.results["/class_roster"].append(await call(client, "/class_roster", roster, session))
                continue
        lesson.results["/class_push"].append(await call(client, "/class_push", push, session))
        lesson.pushed = push[text_at] if text_at is not None else ""
    end = defaults(info, "/class_end")
    end[param_index(info, "/class_end", name="teacher_state")] = state
    end[param_index(info, "/class_end", name="browser")] = None
    _, error = await call(client, "/class_end", end, session)
    if error:
        lesson.errors.append(f"/class_end: {error}")


async def class_member(client, info, number, tag, args, lesson: ClassLesson, deadline: float,
                       waits: httpx.AsyncClient) -> None:
    """Student ``number``'s class page: join, then wait for the class's next version (GET
    /class_version/CODE?after=V, as the page's script does). When it moved: after a random pause up to
    CLASS_SPREAD_S s, the status line's update (/class_poll) when the status version moved (the join brought the
    first), and the teacher's tab as the page takes it: GET /class_view/CODE/TAB (its inputs and views,
    drawn once for the class; the page sets them without a Gradio event), or that tab's Gradio update
    (/class_poll_TAB) when the server has no view for it. A change is seen when the view (or the update) brought
    that Tokenizer text of the teacher's; after an update (not a view) the page's text change event then redraws
    it (one /tokenize).

    This runs in a session of its own, beside the student's explore session: /gradio_api/call's event stream
    carries the whole session's messages (see ``asker``), so a script cannot send two requests at once in one
    session the way a browser does over its single stream. The poll's ``known`` state is the session's.
    """
    session = session_name(args, f"{tag}-member", number)
    await lesson.ready.wait()
    if lesson.code is None:
        return
    await asyncio.sleep(random.Random(f"{args.seed}-{tag}-member-{number}").uniform(0.0, args.join_over))
    data = defaults(info, "/class_join")
    data[param_index(info, "/class_join", name="code")] = lesson.code
    data[param_index(info, "/class_join", name="nickname")] = f"student-{number}"
    data[param_index(info, "/class_join", name="browser")] = None
    seconds, error, outputs = await request(client, "/class_join", data, session)
    lesson.results["/class_join"].append((seconds, error))
    state = outputs[0] if outputs and isinstance(outputs[0], dict) else None
    if error or state is None:  # an error is counted in /class_join's line
        if not error:
            lesson.errors.append(f"/class_join: no student state in {str(outputs)[:200]}")
        return
    lesson.joined.add(number)
    seen = lesson.seen.setdefault(number, {})
    # the page's hidden "live" box: "K7QXM <seat> 3", the seat its asks name and the status line it shows already
    live = next((item.split() for item in outputs if isinstance(item, str) and item.startswith(f"{lesson.code} ")),
                [])
    seat = live[1] if len(live) > 1 else None

    def poll_data(endpoint: str) -> list:
        poll = defaults(info, endpoint)
        poll[param_index(info, endpoint, name="student_state")] = state
        poll[param_index(info, endpoint, name="browser")] = None
        poll[param_index(info, endpoint, name="following")] = True
        return poll

    version, status = None, live[2] if len(live) > 2 else None
    tokenize = defaults(info, "/tokenize") if "/tokenize" in info["named_endpoints"] else None
    while time.perf_counter() < deadline:
        seconds, error, latest = await ask_version(waits, lesson.code, version, deadline - time.perf_counter(), seat)
        if latest is None and error is None:
            break  # the phase ended while the page was waiting
        lesson.results["GET /class_version (wait)"].append((seconds, error))
        if error is not None:
            await asyncio.sleep(2.0)  # the page script's pause after a failed ask
            continue
        latest_version, tab, latest_status, *_ = (latest.split() + ["", "", ""])[:4]  # "18 tokenizer 3 follow"
        if latest_version == "-1":
            await asyncio.sleep(2.0)  # no such class (it ended): the page script asks again now and then
        if latest_version == version:
            continue
        if version is not None:  # the page script's spread before it takes the change
            await asyncio.sleep(random.uniform(0.0, CLASS_SPREAD_S))
        version, status_moved, status = latest_version, latest_status != status, latest_status
        if status_moved and "/class_poll" in info["named_endpoints"]:
            lesson.results["/class_poll"].append(await call(client, "/class_poll", poll_data("/class_poll"), session))
        start = time.perf_counter()
        try:
            answer = await waits.get(f"/class_view/{lesson.code}/{tab}", timeout=REQUEST_TIMEOUT_S)
            view = answer.json() if answer.status_code == 200 else {"event": True}
            lesson.results["GET /class_view"].append((time.perf_counter() - start, None))
        except (httpx.HTTPError, ValueError) as failure:
            lesson.results["GET /class_view"].append((time.perf_counter() - start, f"{type(failure).__name__}"))
            view = {"event": True}
        brought, redraws = [] if view.get("event") else view.get("data", []), False
        update = f"/class_poll_{tab}"
        if view.get("event") and update in info["named_endpoints"]:
            seconds, error, outputs = await request(client, update, poll_data(update), session)
            lesson.results["/class_poll_TAB"].append((seconds, error))
            brought, redraws = outputs or [], True
        # The teacher's texts this answer brought (read from the answer: the version can move before the teacher's
        # own call has returned, so "the latest text" is not known to this page yet when it asks).
        values = {item.get("value") for item in brought if isinstance(item, dict) and isinstance(item.get("value"), str)}
        for text, _ in list(lesson.changes):
            if text in values and text not in seen:
                seen[text] = time.perf_counter()
                if tokenize is not None and tab == "tokenizer" and redraws:  # a text that came without its views
                    tokenize[param_index(info, "/tokenize", component="Textbox")] = text
                    lesson.results["/tokenize (follow)"].append(await call(client, "/tokenize", tokenize, session))


async def ask_version(client: httpx.AsyncClient, code: str, after: str | None, time_left: float,
                      seat: str | None = None) -> tuple[float, str | None, str | None]:
    """What a following page's script asks: GET /class_version/CODE?after=V, answered when the class moves on
    past V (or after the server's wait). Returns (seconds, error, version); (.., None, None) when the phase ended
    first."""
    start = time.perf_counter()
    query = {key: value for key, value in (("after", after), ("seat", seat)) if value is not None} or None
    try:
        answer = await asyncio.wait_for(client.get(f"/class_version/{code}", params=query,
                                                   timeout=CLASS_WAIT_S + 10), max(0.1, time_left))
        answer.raise_for_status()
        return time.perf_counter() - start, None, answer.text
    except TimeoutError:
        return time.perf_counter() - start, None, None
    except httpx.HTTPError as error:
        return time.perf_counter() - start, f"{type(error).__name__}: {error}"[:200], None


async def run_class(client, info, sentences, tag, args, lesson: ClassLesson) -> None:
    """The teacher and the first --class-size students' class pages, for --seconds."""
    missing = [e for e in ("/class_start", "/class_join", "/class_push", "/class_poll", "/class_end")
               if e not in info["named_endpoints"]]
    if missing:
        lesson.errors.append(f"the server has no {', '.join(missing)}")
        return
    if tokenizer_text_at(info)[0] is None:
        lesson.errors.append("/class_push has no parameter with the Tokenizer tab's text")
    deadline = time.perf_counter() + args.seconds
    # The pages' waiting requests get a connection pool of their own, as each browser has its own connections:
    # thirty requests held open in the explore students' pool slowed every explore request in this process
    # (httpx looks through its pool for each request), which is the load generator's cost, not the server's.
    limits = httpx.Limits(max_connections=args.class_size + 5, max_keepalive_connections=args.class_size + 5,
                          keepalive_expiry=KEEPALIVE_S)
    async with httpx.AsyncClient(base_url=client.base_url, limits=limits, timeout=client.timeout) as waits:
        await asyncio.gather(teacher(client, info, sentences, tag, args, lesson, deadline),
                             *(class_member(client, info, n, tag, args, lesson, deadline, waits)
                               for n in range(args.class_size)))


def follow_line(lesson: ClassLesson) -> dict:
    """The follow delay: for each teacher change and each student who joined, the seconds from the teacher typing
    it to that student's first poll that returned it; a change a student never saw counts as missed."""
    delays, missed = [], 0
    for text, typed in lesson.changes:
        for number in sorted(lesson.joined):
            when = lesson.seen.get(number, {}).get(text)
            if when is None:
                missed += 1
            else:
                delays.append(when - typed)
    p95 = percentile(delays, 95)
    for error in lesson.errors[:3]:
        log(f"classroom: class error: {error}")
    return {"changes": len(lesson.changes), "samples": len(delays), "missed": missed,
            "p50_s": percentile(delays, 50), "p95_s": p95, "max_s": percentile(delays, 100),
            "goal_p95_s": FOLLOW_GOAL_S, "ok": p95 is not None and p95 <= FOLLOW_GOAL_S and missed == 0,
            "errors": len(lesson.errors), "first_error": lesson.errors[0] if lesson.errors else None}


def class_vs_alone(measured: dict[str, list[dict]], endpoints: list[str]) -> dict:
    """Each explore view's p95 in the class phase against alone, both from this invocation: the median over the
    rounds of each phase's p95 (p50 likewise, for a steadier second look); ok when every ratio <= RATIO_GOAL."""
    def median(values):
        values = [v for v in values if v is not None]
        return percentile(values, 50)

    per_endpoint, all_ok = {}, True
    for endpoint in endpoints:
        line = {}
        for stat in ("p95_s", "p50_s"):
            alone = [r.get(endpoint, {}).get(stat) for r in measured["alone"]]
            klass = [r.get(endpoint, {}).get(stat) for r in measured["class"]]
            a, c = median(alone), median(klass)
            line |= {f"alone_{stat}": alone, f"class_{stat}": klass,
                     f"ratio_{stat[:3]}": round(c / a, 3) if a and c is not None else None}
        line["ratio"] = line.pop("ratio_p95")
        # Every request of every round of a phase together (steadier than the median of a few p95s), and the same
        # for the alone rounds against each other (rounds 1, 4, 5, 8, ... against 2, 3, 6, 7, ...: the ABBA
        # halves): how far two runs of the very same load land apart on this machine, the floor under any ratio.
        pooled = {phase: [s for r in measured[phase] for s in r.get(endpoint, {}).get("latencies", [])]
                  for phase in ("alone", "class")}
        if pooled["alone"] and pooled["class"]:
            line["pooled_ratio"] = round(percentile(pooled["class"], 95) / percentile(pooled["alone"], 95), 3)
        halves = [[s for i, r in enumerate(measured["alone"]) if (i % 4 in (0, 3)) == first
                   for s in r.get(endpoint, {}).get("latencies", [])] for first in (True, False)]
        if all(halves):
            line["alone_vs_alone"] = round(percentile(halves[0], 95) / percentile(halves[1], 95), 3)
        # The same, split at the end of the class's join window: while 30 students join (a join costs the server
        # about what one explore request does) and while the class follows the teacher (the measure).
        for window in ("following", "joining"):
            rounds = {phase: [percentile(r.get(endpoint, {}).get(window, []), 95) for r in measured[phase]]
                      for phase in ("alone", "class")}
            a, c = median(rounds["alone"]), median(rounds["class"])
            pooled = {phase: [s for r in measured[phase] for s in r.get(endpoint, {}).get(window, [])]
                      for phase in ("alone", "class")}
            line[f"{window}_alone_p95_s"], line[f"{window}_class_p95_s"] = rounds["alone"], rounds["class"]
            line[f"{window}_ratio"] = round(c / a, 3) if a and c is not None else None
            if pooled["alone"] and pooled["class"]:
                line[f"{window}_pooled_ratio"] = round(percentile(pooled["class"], 95) /
                                                       percentile(pooled["alone"], 95), 3)
        line["ok"] = line["following_ratio"] is not None and line["following_ratio"] <= RATIO_GOAL
        all_ok = all_ok and line["ok"]
        per_endpoint[endpoint] = line
    return {"rounds": len(measured["class"]), "method": "median over rounds of each phase's p95, class / alone; "
                                                        "pooled_ratio: the p95 of all rounds' requests together; "
                                                        "alone_vs_alone: the alone rounds' ABBA halves; "
                                                        "joining_/following_: requests sent before / after the "
                                                        f"class's join window (--join-over + {JOIN_SETTLE_S:g} s); "
                                                        "ok: following_ratio <= goal_ratio",
            "endpoints": per_endpoint, "goal_ratio": RATIO_GOAL, "ok": all_ok}


# ---------------------------------------------------------------------------------------------------------------
# The mixed phase: a whole lesson (explore, Pretrain runs, fine-tunes, "use in explorer"), then the idle sweep
# ---------------------------------------------------------------------------------------------------------------

# Students 0-11 also train: 6 Pretrain runs and 6 fine-tunes (3 classify, 3 instruct), interleaved.
MIXED_TRAINERS = [kind for pair in zip(["pretrain"] * 6, ["classify", "instruct"] * 3) for kind in pair]
START_SHARE = 0.4  # the runs start one after another over the first 40% of the phase
POLL_S = 2.0  # a run is polled like the tab's timer does (the page polls every second)
STOP_WAIT_S = 120.0  # after the phase, how long a stopped run may take to end
RSS_EVERY_S = 5.0
TIMELINE_EVERY_S = 30.0  # the RSS timeline in the JSON line keeps one sample per 30 s


@dataclass
class Lesson:
    """What the mixed phase's training students did; kinds are pretrain, classify and instruct."""

    started: Counter = field(default_factory=Counter)
    ended: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # kind -> how runs ended
    stopped_at_end: Counter = field(default_factory=Counter)  # still queued or running when the phase ended
    own_models: dict[int, str] = field(default_factory=dict)  # student number -> its model's label in the menu
    finished: set[int] = field(default_factory=set)  # students whose run ended with ✅
    errors: list[str] = field(default_factory=list)


def run_outcome(status: str) -> str:
    """How a finished run ended, from the mark its status line starts with (ui.run_tab.RunHistory.status_line)."""
    return "finished" if status.startswith("✅") else "failed" if status.startswith("❌") else "stopped"


def asker(client, session: str, lock: asyncio.Lock):
    """request() in one session, one at a time.

    Gradio's /gradio_api/call/<api>/<event_id> stream reads the messages of the whole session, not of that
    event, so two requests of one session at the same time can take each other's results (or hang until
    REQUEST_TIMEOUT_S). A browser has one stream per session and no such problem; a script must take turns.
    """
    async def ask(endpoint: str, data: list) -> tuple[float, str | None, list | None]:
        async with lock:
            return await request(client, endpoint, data, session)

    return ask


async def follow(ask, info, kind: str, until: float, lesson: Lesson) -> str | None:
    """Poll a run every POLL_S s until the poll switches the timer off; how it ended ("finished", "stopped",
    "failed", or "lost" after 3 failed polls in a row), or None if it is still going at ``until``."""
    endpoint = f"/{kind}_poll"
    failures = 0
    while time.perf_counter() < until:
        await asyncio.sleep(POLL_S)
        _, error, outputs = await ask(endpoint, defaults(info, endpoint))
        if error or not outputs:
            lesson.errors.append(f"{endpoint}: {error or 'no outputs'}")
            failures += 1
            if failures == 3:
                return "lost"
            continue
        failures = 0
        status, timer = outputs[0], outputs[-1]
        if isinstance(timer, dict) and timer.get("active") is False:
            return run_outcome(status if isinstance(status, str) else "")
    return None


async def trainer(ask, info, kind: str, number: int, start_in: float, deadline: float, args,
                  lesson: Lesson) -> None:
    """Student ``number`` starts one run of ``kind`` (every setting at its default, Pretrain with
    --run-steps) and follows it; a Pretrain student whose run finished uses its model in the explorer.
    A run still queued or running at the deadline is stopped, as when the class ends.

    Start, poll and use share the student's one Gradio session, and its browser id is null: the server then
    makes that session the run's owner (ui/runs.py owner_of), as for a browser whose page-load gave it an id.
    """
    await asyncio.sleep(start_in)
    start = f"/{kind}_start"
    data = defaults(info, start)
    if kind == "pretrain":
        data[param_index(info, start, name="steps")] = args.run_steps
    seconds, error, _ = await ask(start, data)
    log(f"classroom: mixed student {number} {start} took {seconds:.1f} s" + (f", error: {error}" if error else ""))
    if error:
        lesson.errors.append(f"{start}: {error}")
        return
    lesson.started[kind] += 1
    ended = await follow(ask, info, kind, deadline, lesson)
    if ended is None:
        lesson.stopped_at_end[kind] += 1
        _, error, _ = await ask(f"/{kind}_stop", defaults(info, f"/{kind}_stop"))
        if error:
            lesson.errors.append(f"/{kind}_stop: {error}")
        ended = await follow(ask, info, kind, time.perf_counter() + STOP_WAIT_S, lesson) or "running"
    lesson.ended[kind][ended] += 1
    if ended == "finished":
        lesson.finished.add(number)
    log(f"classroom: mixed student {number}: {kind} run {ended}")
    if kind == "pretrain" and ended == "finished" and time.perf_counter() < deadline:
        _, error, outputs = await ask("/pretrain_use", defaults(info, "/pretrain_use"))
        label = outputs[0].get("value") if outputs and isinstance(outputs[0], dict) else None
        if error or not label:
            lesson.errors.append(f"/pretrain_use: {error or f'no model label in the answer {str(outputs)[:200]}'}")
        else:
            lesson.own_models[number] = label  # from now on this student explores with its own model
            log(f"classroom: mixed student {number} uses {label} in the explorer")


async def sample_rss(pid: int | None, start: float, samples: list[tuple[float, float | None]]) -> None:
    """Append (seconds since ``start``, server VmRSS in MB) every RSS_EVERY_S s; logs one line per 30 s."""
    while True:
        samples.append((round(time.perf_counter() - start, 1), memory_mb(pid)["server_rss_mb"]))
        if len(samples) % round(TIMELINE_EVERY_S / RSS_EVERY_S) == 1:
            log(f"classroom: mixed t={samples[-1][0]:.0f} s, server RSS {samples[-1][1]} MB")
        await asyncio.sleep(RSS_EVERY_S)


async def evictions(client, info, args, lesson: Lesson) -> dict:
    """After the idle wait, ask the server as each training student whether its things are still there.

    {"pretrain_runs": {"gone": g, "of": n}, ...}: a Pretrain run (its poll), a model used in the explorer (one
    /inside with it) and a finished classifier (one /classify_text) are gone when the answer is an error.
    Instruct runs keep nothing on the server (generated records, a tuned copy dropped after scoring).
    """
    async def check(number: int, kind: str) -> list[tuple[str, str | None]]:
        ask = asker(client, session_name(args, "mixed", number), asyncio.Lock())
        found = []
        if kind == "pretrain":
            found.append(("pretrain_runs", (await ask("/pretrain_poll", defaults(info, "/pretrain_poll")))[1]))
        if number in lesson.own_models and "/inside" in info["named_endpoints"]:
            data = defaults(info, "/inside")
            data[model_param(info, "/inside")] = lesson.own_models[number]
            found.append(("explorer_models", (await ask("/inside", data))[1]))
        if kind == "classify" and number in lesson.finished:
            found.append(("classifiers", (await ask("/classify_text", defaults(info, "/classify_text")))[1]))
        return found

    answers = [a for found in await asyncio.gather(*(check(n, kind) for n, kind in enumerate(MIXED_TRAINERS)))
               for a in found]
    gone = {}
    for what in ("pretrain_runs", "explorer_models", "classifiers"):
        errors = [error for name, error in answers if name == what and error]
        for error in errors[:1]:
            log(f"classroom: after the idle wait, {what}: {error}")
        gone[what] = {"gone": len(errors), "of": sum(name == what for name, _ in answers)}
    return gone


def server_log_errors(log_path: Path | None) -> list[str]:
    """The lines of the server's log that start a traceback or an error report, with the line before each."""
    if log_path is None or not log_path.exists():
        return []
    lines = log_path.read_text(errors="replace").splitlines()
    return [f"line {i + 1}: {lines[i - 1][:200] if i else ''} | {line[:200]}" for i, line in enumerate(lines)
            if line.startswith("Traceback") or " ERROR " in line or line.startswith("ERROR")]


def explore_summary(results: dict[str, list[tuple[float, str | None]]], endpoints: list[str]) -> dict:
    """Requests, errors, p50 and p95 of the explore views, and the same counts for requests with a student's
    own model (errors are named "<endpoint>: <message>")."""
    def errors_of(keys):
        return [f"{key}: {error}" for key in keys for _, error in results.get(key, []) if error is not None]

    def latencies(endpoint):
        return [s for s, error in results.get(endpoint, []) if error is None]

    own = [key for key in results if key.endswith("(own model)")]
    for error in errors_of(endpoints)[:3] + errors_of(own)[:3]:
        log(f"classroom: mixed error: {error}")
    return {"requests": sum(len(results.get(e, [])) for e in endpoints), "explore_errors": len(errors_of(endpoints)),
            "p50_s": {e: percentile(latencies(e), 50) for e in endpoints},
            "p95_s": {e: percentile(latencies(e), 95) for e in endpoints},
            "own_model_requests": sum(len(results[key]) for key in own), "own_model_errors": len(errors_of(own)),
            "first_error": (errors_of(endpoints) + errors_of(own) or [None])[0]}


async def run_mixed(client, info, endpoints, sentences, args, pid, log_path) -> None:
    """The mixed phase: see the module docstring. Prints the phase's line, then the line after the idle wait."""
    missing = [e for kind in set(MIXED_TRAINERS) for e in (f"/{kind}_start", f"/{kind}_poll", f"/{kind}_stop")
               if e not in info["named_endpoints"]]
    if missing:
        log(f"classroom: the server has no {', '.join(sorted(missing))}; the mixed phase is skipped")
        return
    log(f"classroom: phase mixed: {args.students} students for {args.seconds} s, {len(MIXED_TRAINERS)} of them "
        f"also train ({', '.join(f'{n} {k}' for k, n in Counter(MIXED_TRAINERS).items())})")
    start = time.perf_counter()
    deadline = start + args.seconds
    start_rss = memory_mb(pid)["server_rss_mb"]
    samples: list[tuple[float, float | None]] = []
    sampler = asyncio.create_task(sample_rss(pid, start, samples))
    lesson = Lesson()
    results: dict[str, list[tuple[float, str | None]]] = {e: [] for e in endpoints}
    gap = args.seconds * START_SHARE / len(MIXED_TRAINERS)
    locks = [asyncio.Lock() for _ in range(max(args.students, len(MIXED_TRAINERS)))]  # one per session
    await asyncio.gather(
        *(student(client, info, endpoints, sentences, n, "mixed", args, results, lesson.own_models, locks[n])
          for n in range(args.students)),
        *(trainer(asker(client, session_name(args, "mixed", n), locks[n]), info, kind, n, n * gap, deadline, args,
                  lesson) for n, kind in enumerate(MIXED_TRAINERS)))
    end = memory_mb(pid)
    rss = [value for _, value in samples if value is not None]
    peak = max([*rss, end["server_peak_rss_mb"] or 0.0]) if rss else None  # VmHWM: the true peak since start
    explore = explore_summary(results, endpoints)
    for error in lesson.errors[:5]:
        log(f"classroom: mixed training error: {error}")
    tuned = ("classify", "instruct")
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    common = {"bench": "classroom", "students": args.students, "seconds": seconds}
    emit({**common, "phase": "mixed", "start_rss_mb": start_rss, "peak_rss_mb": peak,
          "end_rss_mb": end["server_rss_mb"], "memory_budget_mb": args.memory_budget_mb,
          "runs_started": lesson.started["pretrain"], "runs_finished": lesson.ended["pretrain"]["finished"],
          "runs_stopped_at_end": lesson.stopped_at_end["pretrain"],
          "finetunes_started": sum(lesson.started[k] for k in tuned),
          "finetunes_finished": sum(lesson.ended[k]["finished"] for k in tuned),
          "finetunes_stopped_at_end": sum(lesson.stopped_at_end[k] for k in tuned),
          "models_used_in_explorer": len(lesson.own_models),
          "errors": explore["explore_errors"] + explore["own_model_errors"] + len(lesson.errors),
          **explore, "training_errors": len(lesson.errors),
          "first_training_error": lesson.errors[0] if lesson.errors else None,
          "ok": peak is not None and peak <= args.memory_budget_mb})

    log(f"classroom: no requests for {args.idle_wait:g} s: the server sweeps items idle for "
        f"{args.idle_minutes:g} min every 60 s")
    await asyncio.sleep(args.idle_wait)
    after = memory_mb(pid)["server_rss_mb"]
    sampler.cancel()
    gone = await evictions(client, info, args, lesson)
    log_errors = server_log_errors(log_path)
    for line in log_errors[:5]:
        log(f"classroom: server log {line}")
    known = None not in (after, start_rss, end["server_rss_mb"], peak)
    drop = round(end["server_rss_mb"] - after, 1) if known else None
    returned = round((peak - after) / (peak - start_rss), 2) if known and peak > start_rss else None
    all_gone = all(counts["gone"] == counts["of"] for counts in gone.values())
    timeline = [[t, value] for i, (t, value) in enumerate(samples) if i % round(TIMELINE_EVERY_S / RSS_EVERY_S) == 0]
    emit({**common, "phase": "mixed_idle", "idle_minutes": args.idle_minutes, "idle_wait_s": args.idle_wait,
          "start_rss_mb": start_rss, "peak_rss_mb": peak, "end_rss_mb": end["server_rss_mb"],
          "after_idle_rss_mb": after, "drop_mb": drop, "returned_share": returned, "evicted": gone,
          "server_log_errors": len(log_errors), "rss_timeline_mb": timeline,
          "ok": returned is not None and returned >= 0.5 and all_gone})


def start_server(log_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


async def wait_for_info(client: httpx.AsyncClient, proc: subprocess.Popen | None, timeout: float) -> dict | None:
    """The server's /gradio_api/info once it answers; None if it exits or does not answer in time."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            return None
        try:
            answer = await client.get("/gradio_api/info", params={"all_endpoints": "true"})  # class mode's too
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1.0)
    return None


async def serve(args, phases: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start app.py with ``env`` (or use --url), warm each endpoint up once, run the phases, stop the server."""
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(log_path, env)
        log(f"classroom: started python app.py (pid {proc.pid}) at {url}, log in {log_path}"
            + "".join(f", {key}={value}" for key, value in env.items()))
    elif env:
        log(f"classroom: --url: the running server keeps its own settings ({', '.join(env)} not set)")
    limits = httpx.Limits(max_connections=4 * args.students + 20, max_keepalive_connections=2 * args.students + 10,
                          keepalive_expiry=KEEPALIVE_S)
    timeout = httpx.Timeout(30.0, read=REQUEST_TIMEOUT_S)
    try:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), limits=limits, timeout=timeout) as client:
            info = await wait_for_info(client, proc, args.start_timeout)
            if info is None:
                log(f"classroom: the server at {url} did not answer /gradio_api/info")
                return 1
            endpoints = [e for e in args.endpoints if e in info["named_endpoints"]]
            for missing in sorted(set(args.endpoints) - set(endpoints)):
                log(f"classroom: the server has no {missing}; skipped")
            tab_defaults = [defaults(info, e)[i] for e in EXPLORE if e in info["named_endpoints"]
                            and (i := param_index(info, e, component="Textbox")) is not None]
            sentences = list(dict.fromkeys([*SENTENCES, *(t for t in tab_defaults if isinstance(t, str) and t)]))
            for endpoint in endpoints:  # warm-up, not counted: the first call loads the model and its caches
                _, error = await call(client, endpoint, defaults(info, endpoint), "classroom-warm-up")
                if error:
                    log(f"classroom: warm-up {endpoint}: {error}")
            if "class" in phases:  # warm the class's sentences too, so no phase or round meets them cold
                for endpoint in [e for e in endpoints if param_index(info, e, name="seed") is None]:
                    at = param_index(info, endpoint, component="Textbox")
                    for text in sentences if at is not None else []:
                        data = defaults(info, endpoint)
                        data[at] = text
                        await call(client, endpoint, data, "classroom-warm-up")
            pid = proc.pid if proc else None
            measured: dict[str, list[dict]] = defaultdict(list)
            for round_number in range(1 if "mixed" in phases else args.repeat):
                for phase in phases if round_number % 2 == 0 else phases[::-1]:  # ABBA: drift hits both alike
                    if phase == "mixed":
                        await run_mixed(client, info, endpoints, sentences, args, pid, log_path if proc else None)
                    else:
                        measured[phase].append(await run_phase(client, info, endpoints, sentences, phase, args,
                                                               pid, round_number))
            if measured.get("alone") and measured.get("class"):
                seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
                emit({"bench": "classroom", "phase": "class_vs_alone", "students": args.students,
                      "class_size": args.class_size, "seconds": seconds, **class_vs_alone(measured, endpoints)})
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


async def main_async(args) -> int:
    """The mixed phase gets a server of its own (fresh memory, LLM_LAB_IDLE_MINUTES from --idle-minutes)."""
    log_path = Path(args.log or Path(tempfile.gettempdir()) / f"llm_lab_classroom_{os.getpid()}.log")
    layer = {"LLM_LAB_PLAIN": "1"} if args.plain else {}  # --plain: the server runs the book layer alone
    explore = [phase for phase in args.phases if phase != "mixed"]
    if explore and (code := await serve(args, explore, layer, log_path)):
        return code
    if "mixed" in args.phases:
        mixed_log = log_path.with_stem(f"{log_path.stem}-mixed") if explore else log_path
        return await serve(args, ["mixed"], {**layer, "LLM_LAB_IDLE_MINUTES": f"{args.idle_minutes:g}"}, mixed_log)
    return 0


def comma_list(allowed: list[str] | None = None):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if allowed is not None and (bad := [t for t in items if t not in allowed]):
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
        return items
    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--students", type=int, default=30, help="simulated students, each in its own session (default: %(default)s)")
    add("--seconds", type=float, default=60, help="seconds each phase sends new requests (default: %(default)s)")
    add("--seed", type=int, default=0, help="seed of think times, texts and generate seeds (default: %(default)s)")
    add("--phases", type=comma_list([*GOALS, "mixed"]), default="alone,beside_runs",
        help="phases to run, comma-separated; beside_runs has 2 Pretrain runs going; class has a teacher leading "
             "a class that follows; mixed is a whole lesson with runs, fine-tunes and the idle sweep, on a server "
             "of its own (default: %(default)s)")
    add("--class-size", type=int, default=None,
        help="students of the class phase who join the class and follow (default: all of --students)")
    add("--text-every", type=float, default=30.0,
        help="seconds between the class phase teacher's new Tokenizer texts: a teacher talks through a view for "
             "a while before changing it (10: a stress test) (default: %(default)s)")
    add("--join-over", type=float, default=10.0,
        help="the class phase's students join at random moments over this many seconds, as a class does when "
             "the code goes up (default: %(default)s)")
    add("--repeat", type=int, default=1,
        help="run the phases this many times, every other round in mirrored order, e.g. alone,class,class,alone "
             "with --repeat 2; the class_vs_alone line compares the medians over the rounds (default: %(default)s)")
    add("--endpoints", type=comma_list(), default=",".join(EXPLORE),
        help="endpoints each student cycles through, in this order (default: %(default)s)")
    add("--url", help="use this running server (e.g. http://127.0.0.1:7860) instead of starting app.py; "
                      "server RSS is then null (default: start one on a free port)")
    add("--log", help="file for the started server's output (default: llm_lab_classroom_<pid>.log in the temp folder)")
    add("--start-timeout", type=float, default=180,
        help="seconds to wait for the server to answer /gradio_api/info (default: %(default)s)")
    add("--run-steps", type=int, default=300, help="steps of each Pretrain run in the mixed phase (default: %(default)s)")
    add("--idle-minutes", type=float, default=1,
        help="LLM_LAB_IDLE_MINUTES of the mixed phase's server (default: %(default)s)")
    add("--idle-wait", type=float, default=150,
        help="seconds without requests after the mixed phase, for the idle sweep (default: %(default)s)")
    add("--trace", help="write every request (endpoint, session, start, seconds, error) as JSON lines to this file")
    add("--plain", action="store_true",
        help="start the server with LLM_LAB_PLAIN=1 (the book layer alone), to see what the fast layer buys")
    add("--memory-budget-mb", type=float, default=4000,
        help="the mixed phase is ok when the server's peak RSS stays at or under this (default: %(default)s)")
    args = parser.parse_args()
    if args.trace:
        global TRACE
        TRACE = []
    args.endpoints = [e if e.startswith("/") else "/" + e for e in args.endpoints]
    args.class_size = args.students if args.class_size is None else args.class_size
    if not 0 <= args.class_size <= args.students or args.repeat < 1:
        parser.error("--class-size is 0 to --students, --repeat at least 1")
    try:
        return asyncio.run(main_async(args))
    finally:
        if args.trace:
            Path(args.trace).write_text("".join(json.dumps(line) + "\n" for line in TRACE or []))


if __name__ == "__main__":
    sys.exit(main())
