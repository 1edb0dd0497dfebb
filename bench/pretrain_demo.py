"""The Pretrain tab's default run, through the tab's own code: does the classroom demo land in a minute?

It presses Start as the page does (``ui.pretrain_tab.start_run`` with the tab's defaults), then polls once a
second as the page's timer does (``poll_run``) until the run is done, and prints one JSON line per run:

    {"bench": "pretrain_demo", "mode": "warm", "seed": 123, "click_to_done_s": 41.2, "val_loss": 4.41,
     "steps": 1200, "tokens_per_s": 30123, "eta_max_jump": 0.12, "sample": "ROMEO:\\nWhat ...", "goal": ...}

- ``click_to_done_s``: from the click to the poll that shows the run finished (the goal: at most 60 s), and
  ``click_to_started_s``: to the end of the click's handler (the text prepared, the run queued);
- ``val_loss``: the last validation loss the tab shows (the goal: at most 4.5), and ``val_loss_all``: the final
  checkpoint on every window of the validation text, measured after the clock stopped;
- ``cpu_s``: the process's CPU time from click to done. On a machine busy with other work the wall time
  grows but this does not much: with one torch thread per run it is close to the wall time on an idle machine;
- ``eta_max_jump``: the largest change of the shown time left between two polls, beyond the time that passed
  between them, as a share of the earlier estimate (the goal: at most 0.3).

Modes: ``warm`` is a class's server (the tab prepared its default text when it was built, as ``build_tab``
does); ``cold`` empties every cache first (the text, its BPE and its ids), so the click pays for them.

    python bench/pretrain_demo.py                          # warm, the tab's seed
    python bench/pretrain_demo.py --modes cold,warm --seeds 123,1,2
    python bench/pretrain_demo.py --steps 1500 --lr 4e-3   # try other settings through the same path
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt_core.batches import as_dataset, fixed_batches  # noqa: E402
from gpt_core.checkpoints import load_checkpoint  # noqa: E402
from gpt_core.train import evaluate  # noqa: E402
from ui import pretrain_tab, runs  # noqa: E402

GOALS = {"click_to_done_s": 60.0, "val_loss": 4.5, "eta_max_jump": 0.3}


def empty_caches(folder: str) -> None:
    """Forget the prepared texts: the tab's memory cache, its disk cache (moved to an empty folder) and the
    cleaned Shakespeare text."""
    from gpt_core import data

    os.environ["LLM_LAB_CACHE"] = folder
    pretrain_tab._corpora.clear()
    data._shakespeare_full_text.cache_clear()


def eta_jumps(etas: list[tuple[float, float]]) -> tuple[float, list[float]]:
    """The largest |eta_next - (eta_before - seconds between the polls)| / eta_before over successive polls,
    and where it was: [seconds after the first poll, eta before, eta after]."""
    jumps = [(abs(b - (a - (tb - ta))) / a, [round(ta - etas[0][0], 1), round(a, 1), round(b, 1)])
             for (ta, a), (tb, b) in zip(etas, etas[1:]) if a > 0]
    return max(jumps, default=(0.0, []))


def val_loss_all(checkpoint: str, val_ids: list[int], context: int) -> float:
    """The checkpoint's mean loss over every window of the validation text (not only the tab's first batches)."""
    model = load_checkpoint(checkpoint)
    windows = as_dataset(val_ids, context, "validation")
    batches = fixed_batches(windows, 64, len(windows) // 64 + 1)
    return evaluate(model, batches, torch.device("cpu"))


def one_run(mode: str, seed: int, settings: dict, poll_s: float) -> dict:
    pretrain_tab.SEED = seed
    if mode == "cold":
        empty_caches(tempfile.mkdtemp(prefix="pretrain_demo_cache_"))
    else:  # what the server does when it starts: app.main's threads, then build_tab's measurements and plan
        runs.serve_settings()
        pretrain_tab.measure_cpu_peaks()
        pretrain_tab.default_plan()
    browser = runs.new_browser_id()
    cpu0, load = time.process_time(), os.getloadavg()[0]
    clicked = time.perf_counter()
    outputs = pretrain_tab.start_run(settings["preset"], pretrain_tab.SHAKESPEARE, None, pretrain_tab.BPE_4096,
                                     settings["steps"], settings["batch"], settings["context"], settings["lr"],
                                     settings["warmup"], "ROMEO:", None, browser)
    started = time.perf_counter() - clicked  # the text read, tokenized and split (cold), the job queued
    history, etas = outputs[-2], []
    while True:
        time.sleep(poll_s)
        status, stats, *_, history, timer = pretrain_tab.poll_run(False, history, browser)
        if history.eta_s is not None and not history.done:
            etas.append((time.perf_counter(), history.eta_s))
        if not history.running:
            break
    done = time.perf_counter() - clicked
    cpu = time.process_time() - cpu0
    corpus = pretrain_tab.prepare_corpus(pretrain_tab.SHAKESPEARE, None, pretrain_tab.BPE_4096)
    val_losses = [val for _, _, val in history.evals if val is not None]
    return {
        "bench": "pretrain_demo", "mode": mode, "seed": seed, **settings, "threads": runs.run_threads(),
        "click_to_done_s": round(done, 1), "click_to_started_s": round(started, 1), "cpu_s": round(cpu, 1), "load_avg_at_click": round(load, 1),
        "status": history.status, "steps_done": history.step, "val_loss": round(val_losses[-1], 3),
        "val_loss_all": round(val_loss_all(history.checkpoint, corpus.val_ids, settings["context"]), 3),
        "tokens_per_s": round(history.tokens_per_s or 0), "eta_polls": len(etas),
        "eta_max_jump": round(eta_jumps(etas)[0], 3), "eta_max_jump_at": eta_jumps(etas)[1],
        "first_eta_s": round(etas[0][1], 1) if etas else None,
        "sample": history.samples[-1][1] if history.samples else None,
        "stats": stats if isinstance(stats, str) else None,
        "ok": done <= GOALS["click_to_done_s"] and val_losses[-1] <= GOALS["val_loss"]
        and eta_jumps(etas)[0] <= GOALS["eta_max_jump"], "goal": GOALS,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="warm", help="warm, cold or both (comma-separated)")
    parser.add_argument("--seeds", default=str(pretrain_tab.SEED))
    parser.add_argument("--preset", default=pretrain_tab.CLASSROOM_PRESET)
    parser.add_argument("--steps", type=int, default=pretrain_tab.CLASSROOM_STEPS)
    parser.add_argument("--batch", type=int, default=pretrain_tab.CLASSROOM_BATCH)
    parser.add_argument("--context", type=int, default=pretrain_tab.CLASSROOM_CONTEXT)
    parser.add_argument("--lr", type=float, default=pretrain_tab.CLASSROOM_LR)
    parser.add_argument("--warmup", type=int, default=pretrain_tab.CLASSROOM_WARMUP)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls (the page's timer: 1)")
    args = parser.parse_args(argv)
    settings = {"preset": args.preset, "steps": args.steps, "batch": args.batch, "context": args.context,
                "lr": args.lr, "warmup": args.warmup}
    for seed in (int(seed) for seed in args.seeds.split(",")):
        for mode in args.modes.split(","):
            print(json.dumps(one_run(mode, seed, settings, args.poll)), flush=True)


if __name__ == "__main__":
    main()
