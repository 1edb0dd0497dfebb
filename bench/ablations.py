"""The Pretrain tab's default run with each switch of gpt_core.ablations, beside the same run without one.

Each run goes through the tab as a student's does (``ui.pretrain_tab.start_run`` with the default settings and one
switch, then ``poll_run`` once a second) and prints one JSON line: the val loss the tab shows (its 4 fixed batches)
and over the whole validation text, the change against the unchanged run, which prediction came true
(``ui.experiments.measured_effect``) beside the registry's ``expected``, the last sample and the time
(``already_so``: the default already has that setting, as the untied head, so the run is the unchanged one). For the run
without a causal mask it also measures the val loss with the mask put back at evaluation: what the model is worth
when it writes text, where the next token is not there to read.

    python bench/ablations.py                                # the unchanged run, then all 15 switches (~16 min)
    python bench/ablations.py no-causal-mask no-pos-embedding --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pretrain_demo import val_loss_all  # noqa: E402
from gpt_core.ablations import ABLATIONS  # noqa: E402
from gpt_core.batches import as_dataset, fixed_batches  # noqa: E402
from gpt_core.checkpoints import load_checkpoint  # noqa: E402
from gpt_core.train import evaluate  # noqa: E402
from ui import pretrain_tab, runs  # noqa: E402
from ui.experiments import measured_effect  # noqa: E402


def val_loss_with_mask(checkpoint: str, val_ids, context: int) -> float:
    """A model trained without the causal mask, judged with the mask back on (as when it generates)."""
    model = load_checkpoint(checkpoint)
    for block in model.trf_blocks:
        block.att.causal = True
    windows = as_dataset(val_ids, context, "validation")
    return evaluate(model, fixed_batches(windows, 64, len(windows) // 64 + 1), torch.device("cpu"))


def one_run(ablations: list[str], steps: int) -> dict:
    browser = runs.new_browser_id()
    clicked = time.perf_counter()
    outputs = pretrain_tab.start_run(pretrain_tab.CLASSROOM_PRESET, pretrain_tab.SHAKESPEARE, None,
                                     pretrain_tab.BPE_4096, steps, pretrain_tab.CLASSROOM_BATCH,
                                     pretrain_tab.CLASSROOM_CONTEXT, pretrain_tab.CLASSROOM_LR,
                                     min(pretrain_tab.CLASSROOM_WARMUP, steps), "ROMEO:", None, browser, ablations)
    history = outputs[-2]
    while history.running:
        time.sleep(1.0)
        history = pretrain_tab.poll_run(False, history, browser)[-2]
    corpus = pretrain_tab.prepare_corpus(pretrain_tab.SHAKESPEARE, None, pretrain_tab.BPE_4096)
    vals = [val for _, _, val in history.evals if val is not None]
    row = {"owner": runs.verified_browser(browser), "job_id": history.job_id,
           "bench": "ablations", "ablation": ",".join(ablations) or "none", "steps": history.step,
           "status": history.reason, "seconds": round(time.perf_counter() - clicked, 1),
           "first_batch_loss": round(history.step_losses[0][1], 3) if history.step_losses else None,
           "val_loss": round(vals[-1], 3) if vals and history.reason != "nan" else None,
           "sample": history.samples[-1][1][:120] if history.samples else None}
    if history.checkpoint and history.reason != "nan":
        row["val_loss_all"] = round(val_loss_all(history.checkpoint, corpus.val_ids,
                                                 pretrain_tab.CLASSROOM_CONTEXT), 3)
        if "no-causal-mask" in ablations:
            row["val_loss_all_with_mask"] = round(val_loss_with_mask(history.checkpoint, corpus.val_ids,
                                                                     pretrain_tab.CLASSROOM_CONTEXT), 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ablations", nargs="*", help=f"switches to run, one run each (default: all): "
                                                     f"{', '.join(ABLATIONS)}")
    parser.add_argument("--steps", type=int, default=pretrain_tab.CLASSROOM_STEPS)
    args = parser.parse_args()
    unknown = sorted(set(args.ablations) - set(ABLATIONS))
    if unknown:
        parser.error(f"unknown switch {unknown[0]!r}; the switches are: {', '.join(ABLATIONS)}")
    runs.serve_settings()
    pretrain_tab.measure_cpu_peaks()
    baseline = one_run([], args.steps)
    del baseline["owner"], baseline["job_id"]
    print(json.dumps(baseline), flush=True)
    for name in args.ablations or list(ABLATIONS):
        row = one_run([name], args.steps)
        base = baseline["val_loss"]
        if row["val_loss"] is not None and base is not None:
            row["change"] = round(row["val_loss"] - base, 3)
        row["measured"] = measured_effect(row["val_loss"], base, row["first_batch_loss"])
        row["expected"] = ABLATIONS[name].expected
        row["already_so"] = bool(pretrain_tab.run_of(row.pop("owner"), row.pop("job_id")).record.ablations == ())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
