"""The Instruct tab's default run, through the tab's own code: does the classroom demo teach in 150 seconds?

It presses Start as the page does (``ui.instruct_tab.start_run`` with the tab's defaults: the bundled model, the
*spot a feature* generated tasks, the "classroom" preset, the server's step cap), then polls once a second as the
page's timer does (``poll_run``) until the run is done, and prints one JSON line per run:

    {"bench": "instruct_demo", "data_seed": 123, "seed": 123, "click_to_done_s": 96.3, "cpu_s": 88.1,
     "before": "0/20", "after": "19/20", "exact_match_after": 0.95, "steps_done": 204, "ok": true, ...}

- ``click_to_done_s``: from the click to the poll that shows the run finished (the goal: at most 150 s);
- ``exact_match_before`` / ``exact_match_after``: the held-out test records answered exactly, before and after
  tuning, as the tab shows them (the goal after: at least 0.5);
- ``cpu_s``: the process's CPU time from click to done. A run trains on one torch thread at a lowered priority,
  so on a machine busy with other work its wall time grows while this does not much: on an idle 2-core server
  the wall time is close to it. ``load_avg_at_click`` says how busy the machine was.

Seeds: ``--data-seeds`` draws other records (the tab's DATA_SEED), ``--seeds`` another batch order (the
preset's seed); the bundled model's weights are the same for every run. Runs go one after another.

    python bench/instruct_demo.py                                    # the tab's seeds: one run
    python bench/instruct_demo.py --data-seeds 123,1,2,3,4 --seeds 123,1,2,3,4
    python bench/instruct_demo.py --source generated-copy --epochs 4 # the other task sets, other settings
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt_core.instruct import INSTRUCT_PRESETS  # noqa: E402
from ui import instruct_tab, models, runs  # noqa: E402

GOALS = {"click_to_done_s": 150.0, "exact_match_after": 0.5}


def one_run(data_seed: int, seed: int, settings: dict, poll_s: float) -> dict:
    instruct_tab.DATA_SEED = data_seed  # the records the tab generates
    preset = settings["preset"]
    saved = INSTRUCT_PRESETS[preset]
    INSTRUCT_PRESETS[preset] = replace(saved, seed=seed, batch_size=settings["batch_size"])  # seed: the batch order
    browser = runs.new_browser_id()
    marker = {"source": settings["source"], "count": settings["records"]}
    cpu0, load = time.process_time(), os.getloadavg()[0]
    clicked = time.perf_counter()
    try:
        status, history, _ = instruct_tab.start_run(settings["model"], preset, settings["epochs"], settings["lr"],
                                                    settings["mask"], marker, None, browser)
        while True:
            time.sleep(poll_s)
            status, _, score, compare, history, _ = instruct_tab.poll_run(history, browser)
            if not history.running:
                break
    finally:
        INSTRUCT_PRESETS[preset] = saved
    done = time.perf_counter() - clicked
    cpu = time.process_time() - cpu0
    before, after = history.before, history.after
    after_score = after.score if after else None
    return {
        "bench": "instruct_demo", "data_seed": data_seed, "seed": seed, **settings, "threads": runs.run_threads(),
        "click_to_done_s": round(done, 1), "cpu_s": round(cpu, 1), "load_avg_at_click": round(load, 1),
        "status": history.status, "steps_done": history.step,
        "s_per_step": round(history.step_losses and done / history.step or 0, 3),
        "before": f"{before.correct}/{before.total}" if before else None,
        "after": f"{after.correct}/{after.total}" if after else None,
        "exact_match_before": round(before.score, 3) if before else None,
        "exact_match_after": round(after_score, 3) if after else None,
        "wrong_after": [(row["instruction"], row["input"], row["expected"], row["answer"])
                        for row in (after.rows if after else []) if not row["correct"]][:5],
        "sample": history.samples[-1][1] if history.samples else None,
        "ok": done <= GOALS["click_to_done_s"] and after_score is not None
        and after_score >= GOALS["exact_match_after"], "goal": GOALS,
    }


def main(argv=None) -> None:
    classroom = INSTRUCT_PRESETS["classroom"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-seeds", default=str(instruct_tab.DATA_SEED), help="comma-separated record seeds")
    parser.add_argument("--seeds", default=str(classroom.seed), help="comma-separated batch-order seeds, paired "
                                                                     "with --data-seeds (the shorter list repeats)")
    parser.add_argument("--model", default=models.DEFAULT_CHOICE)
    parser.add_argument("--source", default=instruct_tab.GENERATED, choices=list(instruct_tab.GENERATED_SETS))
    parser.add_argument("--records", type=int, default=instruct_tab.DEFAULT_RECORDS)
    parser.add_argument("--preset", default="classroom", choices=list(INSTRUCT_PRESETS))
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--lr", type=float, default=None, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--no-mask", action="store_true", help="learn the instruction too (default: the preset's)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls (the page's timer: 1)")
    args = parser.parse_args(argv)
    runs.serve_settings()  # the process settings of a server (threads, interpreter-lock switching)
    preset = INSTRUCT_PRESETS[args.preset]
    settings = {"model": args.model, "source": args.source, "records": args.records, "preset": args.preset,
                "epochs": args.epochs or preset.epochs, "lr": args.lr or preset.lr,
                "batch_size": args.batch_size or preset.batch_size,
                "mask": preset.mask_instruction and not args.no_mask}
    data_seeds = [int(seed) for seed in args.data_seeds.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    for index in range(max(len(data_seeds), len(seeds))):
        result = one_run(data_seeds[index % len(data_seeds)], seeds[index % len(seeds)], settings, args.poll)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
