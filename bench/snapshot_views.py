"""How fast the Pretrain tab's snapshot slider redraws, on the snapshots of the tab's default run.

It presses Start with the tab's defaults (``ui.pretrain_tab.start_run``), polls until the run is done, then moves
the slider to every snapshot as the page does (``ui.snapshots_view.snapshot_views``, figures turned into the
JSON the browser gets) and prints one JSON line per snapshot: the fastest of ``--repeats`` redraws against the
goal of 1 s on 2 cores (``ratio_to_goal`` < 1 meets it), the bytes sent, and what the snapshot shows: the
strongest previous-token and induction heads and the sample.

    python bench/snapshot_views.py              # the default run: 1,000 steps, 6 snapshots (~1 min, then ~1 s)
    python bench/snapshot_views.py --steps 300  # a shorter run: 5 snapshots
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ui import pretrain_tab, runs  # noqa: E402
from ui.snapshots_view import DEFAULT_LABELS, snapshot_views  # noqa: E402

GOAL_S = 1.0


def as_sent(value) -> int:
    """The bytes of one output as the browser gets it (a figure's JSON, an HTML or Markdown string)."""
    if hasattr(value, "to_json"):
        return len(value.to_json())
    if hasattr(value, "plot"):
        return len(value.plot)
    return len(str(value))


def strongest(scores: list[list[float]]) -> tuple[str, float]:
    layer, head, value = max(((layer, head, value) for layer, row in enumerate(scores)
                              for head, value in enumerate(row)), key=lambda item: item[2])
    return f"layer {layer} head {head}", round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=pretrain_tab.CLASSROOM_STEPS)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs.serve_settings()
    browser = runs.new_browser_id()
    history = pretrain_tab.start_run(pretrain_tab.CLASSROOM_PRESET, pretrain_tab.SHAKESPEARE, None,
                                     pretrain_tab.BPE_4096, args.steps, pretrain_tab.CLASSROOM_BATCH,
                                     pretrain_tab.CLASSROOM_CONTEXT, pretrain_tab.CLASSROOM_LR,
                                     min(pretrain_tab.CLASSROOM_WARMUP, args.steps), "ROMEO:", None, browser)[-2]
    while history.running:
        time.sleep(1.0)
        history = pretrain_tab.poll_run(False, history, browser)[-2]
    for index, snapshot in enumerate(history.snapshots):
        times, sent = [], 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            views = snapshot_views(index, DEFAULT_LABELS, history)
            sent = sum(as_sent(view) for view in views)
            times.append(time.perf_counter() - start)
        previous, induction = strongest(snapshot.previous_token), strongest(snapshot.induction)
        print(json.dumps({
            "bench": "snapshot_views", "snapshot": index, "step": snapshot.step, "redraw_s": round(min(times), 4),
            "redraw_max_s": round(max(times), 4), "goal_s": GOAL_S, "ratio_to_goal": round(min(times) / GOAL_S, 3),
            "bytes_sent": sent, "previous_token_head": previous, "induction_head": induction,
            "map_variance": [round(share, 3) for share in snapshot.map_variance],
            "top_next_token": [snapshot.next_tokens[0], round(snapshot.next_probs[0], 3)],
            "sample": snapshot.sample[:80]}), flush=True)


if __name__ == "__main__":
    main()
