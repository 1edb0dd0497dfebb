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

Prints JSON lines, one per phase and endpoint, then one per phase:
    {"bench": "classroom", "phase": "alone", "endpoint": "/inside", "students": 30, "seconds": 60, "requests": 212,
     "errors": 0, "p50_s": 0.41, "p95_s": 1.2, "max_s": 2.3, "goal_p95_s": 2.0, "ok": true, "first_error": null}
    {"bench": "classroom", "phase": "alone", "endpoint": "all", ..., "server_rss_mb": 610.2,
     "server_peak_rss_mb": 702.5, "children_rss_mb": 0.0, "ok": true}
The goal is p95 <= 2 s alone and <= 4 s beside the runs, with 0 errors. RSS is the server process's VmRSS at the
end of the phase and its peak (VmHWM) since it started; children_rss_mb adds up its child processes (null with --url).
The load generator is one asyncio loop speaking Gradio's HTTP API, so it stays light beside the server.

    python bench/classroom.py                                  # 30 students, 60 s per phase, 3-5 minutes
    python bench/classroom.py --students 3 --seconds 10 --phases alone --endpoints /tokenize,/inside
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXPLORE = ["/tokenize", "/attention", "/inside", "/generate"]
GOALS = {"alone": 2.0, "beside_runs": 4.0}
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


async def call(client: httpx.AsyncClient, endpoint: str, data: list, session: str) -> tuple[float, str | None]:
    """One request through /gradio_api/call: (seconds until its final event, error message or None)."""
    start = time.perf_counter()
    outcome: str | None = "the stream ended without a complete event"
    elapsed = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            posted = await client.post(f"/gradio_api/call{endpoint}", json={"data": data, "session_hash": session})
            if posted.status_code != 200:
                return time.perf_counter() - start, f"HTTP {posted.status_code}: {posted.text[:300]}"
            event_id = posted.json()["event_id"]
            async with client.stream("GET", f"/gradio_api/call{endpoint}/{event_id}") as stream:
                if stream.status_code != 200:
                    return time.perf_counter() - start, f"HTTP {stream.status_code} on the event stream"
                event = None
                async for line in stream.aiter_lines():  # read to the end so the server closes the session cleanly
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event in ("complete", "error") and elapsed is None:
                        elapsed = time.perf_counter() - start
                        outcome = None if event == "complete" else error_text(line[5:].strip())
    except TimeoutError:
        outcome = f"no final event after {REQUEST_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return (elapsed if elapsed is not None else time.perf_counter() - start), outcome


async def student(client, info, endpoints, sentences, number, phase, args, results) -> None:
    """One student: its own session, the endpoints in a cycle, think time between requests, until the deadline."""
    rng = random.Random(f"{args.seed}-{phase}-{number}")
    session = f"classroom-{phase}-{number}-{rng.getrandbits(32):08x}"
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
        results[endpoint].append(await call(client, endpoint, data, session))
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


async def run_phase(client, info, endpoints, sentences, phase, args, pid) -> None:
    runs = await start_runs(client, info, phase) if phase == "beside_runs" else []
    results: dict[str, list[tuple[float, str | None]]] = {e: [] for e in endpoints}
    log(f"classroom: phase {phase}: {args.students} students for {args.seconds} s on {', '.join(endpoints)}")
    await asyncio.gather(*(student(client, info, endpoints, sentences, n, phase, args, results)
                           for n in range(args.students)))
    memory = memory_mb(pid)  # before the runs stop, while they still hold their memory
    for session in runs if "/pretrain_stop" in info["named_endpoints"] else []:
        _, error = await call(client, "/pretrain_stop", defaults(info, "/pretrain_stop"), session)
        if error:
            log(f"classroom: /pretrain_stop for {session}: {error}")
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    common = {"bench": "classroom", "phase": phase, "students": args.students, "seconds": seconds}
    total_requests = total_errors = 0
    all_ok = True
    for endpoint in endpoints:
        latencies = [s for s, error in results[endpoint] if error is None]
        errors = [error for _, error in results[endpoint] if error is not None]
        for error in errors[:3]:
            log(f"classroom: {phase} {endpoint} error: {error}")
        p95 = percentile(latencies, 95)
        ok = p95 is not None and p95 <= GOALS[phase] and not errors
        emit({**common, "endpoint": endpoint, "requests": len(results[endpoint]), "errors": len(errors),
              "p50_s": percentile(latencies, 50), "p95_s": p95, "max_s": percentile(latencies, 100),
              "goal_p95_s": GOALS[phase], "ok": ok, "first_error": errors[0] if errors else None})
        total_requests += len(results[endpoint])
        total_errors += len(errors)
        all_ok = all_ok and ok
    extra = {"runs_started": len(runs)} if phase == "beside_runs" else {}
    emit({**common, "endpoint": "all", "requests": total_requests, "errors": total_errors, **memory, **extra,
          "ok": all_ok})


def start_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
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
            answer = await client.get("/gradio_api/info")
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1.0)
    return None


async def main_async(args) -> int:
    proc = None
    url = args.url
    if url is None:
        log_path = Path(args.log or Path(tempfile.gettempdir()) / f"llm_lab_classroom_{os.getpid()}.log")
        proc, url = start_server(log_path)
        log(f"classroom: started python app.py (pid {proc.pid}) at {url}, log in {log_path}")
    limits = httpx.Limits(max_connections=4 * args.students + 20, max_keepalive_connections=2 * args.students + 10)
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
            for phase in args.phases:
                await run_phase(client, info, endpoints, sentences, phase, args, proc.pid if proc else None)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
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
    add("--phases", type=comma_list(list(GOALS)), default="alone,beside_runs",
        help="phases to run, comma-separated; beside_runs has 2 Pretrain runs going (default: %(default)s)")
    add("--endpoints", type=comma_list(), default=",".join(EXPLORE),
        help="endpoints each student cycles through, in this order (default: %(default)s)")
    add("--url", help="use this running server (e.g. http://127.0.0.1:7860) instead of starting app.py; "
                      "server RSS is then null (default: start one on a free port)")
    add("--log", help="file for the started server's output (default: llm_lab_classroom_<pid>.log in the temp folder)")
    add("--start-timeout", type=float, default=180,
        help="seconds to wait for the server to answer /gradio_api/info (default: %(default)s)")
    args = parser.parse_args()
    args.endpoints = [e if e.startswith("/") else "/" + e for e in args.endpoints]
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
