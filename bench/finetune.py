"""Fine-tuning reference results: spam classification speed and accuracy on the packaged SMS data.

Prints JSON lines:
    {"bench": "classify_step", ...}    one training step with per-batch trimmed padding (ours) against the book's
                                       padding of every message to the longest one in the dataset: "ratio" is
                                       book time / our time (above 1: ours is faster); and the book layer alone
                                       (our batches, no fast layer): "fast_vs_book_layer". Interleaved, order
                                       reversed every other round, minimum of the rounds.
    {"bench": "classify_run", ...}     the "classroom" preset on a randomly initialised nano model (offline: no
                                       pretrained weights here), capped at --steps steps: accuracy before/after.

    python bench/finetune.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt_core.classify import CLASSIFY_PRESETS, classification_loss, finetune_classifier, prepare_classifier
from gpt_core.events import AccuracyEvent
from gpt_core.fast import speed_up_for_training
from gpt_core.finetune_loop import FinetuneRun
from gpt_core.model import GPTConfig, GPTModel  # noqa: E402
from gpt_core.spam_data import classification_collate, classification_datasets
from gpt_core.tokenizer import BPETokenizer  # noqa: E402


def book_collate(batch):
    """The book's batches: every message padded to the dataset's longest (no columns dropped)."""
    return tuple(torch.stack([item[i] for item in batch]) for i in range(3))


def nano_classifier(tokenizer, seed=0, fast: bool = True) -> GPTModel:
    """The nano model with a 2-way head; ``fast``: with the fast layer applied, as the app trains it."""
    torch.manual_seed(seed)
    model = GPTModel(GPTConfig.preset("nano", vocab_size=tokenizer.vocab_size, drop_rate=0.0))
    prepare_classifier(model, "all")
    return speed_up_for_training(model, torch.device("cpu")) if fast else model


def bench_step(tokenizer, rounds: int, steps: int) -> dict:
    datasets = classification_datasets(tokenizer, max_length=128)
    config = replace(CLASSIFY_PRESETS["classroom"], device="cpu", autocast="off", eval_batches=1)
    sides = {"ours": (classification_collate, True), "book": (book_collate, True),
             "book_layer": (classification_collate, False)}  # book_layer: our batches, the plain model
    runs = {name: FinetuneRun(nano_classifier(tokenizer, fast=fast), datasets["train"], None, collate,
                              classification_loss, config)
            for name, (collate, fast) in sides.items()}
    batches = {name: [b for _, b in zip(range(steps), run.train_loader)] for name, run in runs.items()}
    best = dict.fromkeys(sides, float("inf"))
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]
        for name in order:
            start = time.perf_counter()
            for batch in batches[name]:
                runs[name].train_step(batch)
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return {"bench": "classify_step", "model": "nano", "batch_size": config.batch_size,
            "ours_ms": round(best["ours"] * 1e3, 2), "book_ms": round(best["book"] * 1e3, 2),
            "book_layer_ms": round(best["book_layer"] * 1e3, 2),
            "fast_vs_book_layer": round(best["book_layer"] / best["ours"], 3),
            "padded_length_book": datasets["train"].max_length, "ratio": round(best["book"] / best["ours"], 3)}


def bench_run(tokenizer, steps: int) -> dict:
    model = nano_classifier(tokenizer)
    config = replace(CLASSIFY_PRESETS["classroom"], device="cpu", max_steps=steps)
    start = time.perf_counter()
    accuracies = [e for e in finetune_classifier(model, tokenizer, config) if isinstance(e, AccuracyEvent)]
    final = accuracies[-1]
    return {"bench": "classify_run", "preset": "classroom", "model": "nano (random init)", "steps": steps,
            "val_accuracy_before": round(accuracies[0].val_accuracy, 4),
            "train_accuracy": round(final.train_accuracy, 4), "val_accuracy": round(final.val_accuracy, 4),
            "test_accuracy": round(final.test_accuracy, 4), "seconds": round(time.perf_counter() - start, 1),
            "ratio": None}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="training steps of the accuracy run")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = BPETokenizer.gpt2()
    print(json.dumps(bench_step(tokenizer, args.rounds, steps=10)), flush=True)
    print(json.dumps(bench_run(tokenizer, args.steps)), flush=True)


if __name__ == "__main__":
    main()
