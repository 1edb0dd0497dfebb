"""Speed of gpt_core's model against transformers' GPT2LMHeadModel: same config, same weights, same ids.

Prints one JSON line per measurement:
    {"bench": "train_step_fp32", "config": "gpt2-small", "ours_tok_s": ..., "hf_tok_s": ..., "ratio": ..., "goal": 1.0,
     "book_tok_s": ..., "book_ratio": ..., "fast_vs_book": ...}

"ours" is the model with gpt_core.fast applied (what the app and the CLI run); "book" is the same model and
weights with the book layer alone (LLM_LAB_PLAIN=1), so "fast_vs_book" is what the fast layer gains. The goals
("ratio" against transformers) are for "ours". The sides run interleaved (the order turned every round) and
each keeps its best (minimum) time.
    python bench/model.py            # about 3 minutes on 2 CPU cores
    python bench/model.py --quick    # fewer rounds and configs
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt_core.checkpoints import export_hf  # noqa: E402
from gpt_core.fast import speed_up, speed_up_for_training  # noqa: E402
from gpt_core.fast.settings import use_plain  # noqa: E402
from gpt_core.generate import generate  # noqa: E402
from gpt_core.model import GPTConfig, GPTModel  # noqa: E402


def hf_copy(model: GPTModel):
    """The same weights in transformers' GPT2LMHeadModel (through export_hf)."""
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(model, tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp)
    return hf


def race(sides: dict, rounds: int) -> dict[str, float]:
    """Best wall time of each callable ({name: fn}), run in turn, the order turned every round."""
    best = dict.fromkeys(sides, float("inf"))
    names = list(sides)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            sides[name]()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(bench: str, config: str, tokens: int, times: dict[str, float], goal: float, **more):
    """One JSON line: tokens/s of each side, ours against transformers (the goal) and against the book layer."""
    tok_s = {name: tokens / t for name, t in times.items()}
    line = {"bench": bench, "config": config, "ours_tok_s": round(tok_s["ours"], 2),
            "hf_tok_s": round(tok_s["hf"], 2), "ratio": round(tok_s["ours"] / tok_s["hf"], 3), "goal": goal}
    if "book" in tok_s:
        line.update(book_tok_s=round(tok_s["book"], 2), book_ratio=round(tok_s["book"] / tok_s["hf"], 3),
                    fast_vs_book=round(tok_s["ours"] / tok_s["book"], 2))
    print(json.dumps({**line, **more}), flush=True)


def train_step_fn(model, batch, targets, is_hf: bool, autocast_dtype):
    """One optimizer step as each side's own training code takes it.

    Both use fused AdamW: gpt_core.train.make_optimizer's choice, and the default of transformers' Trainer
    (``adamw_torch_fused``). The fast side is sped up by ``speed_up_for_training`` before (the book side is not).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
    model.train()

    def step():
        ctx = torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
        with ctx:
            logits = model(batch, use_cache=False).logits if is_hf else model(batch)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_train(name: str, batch_size: int, context: int, rounds: int, **overrides):
    """Our training step (fast layer, and book layer alone) against transformers'. ``speed_up_for_training``
    also tells glibc to keep freed memory (``keep_freed_memory``), which is process-wide: transformers' side
    and the book side get that speed-up as well."""
    cfg = GPTConfig.preset(name, drop_rate=0.0, **overrides)
    torch.manual_seed(0)
    book = GPTModel(cfg)
    hf = hf_copy(book)
    ours = speed_up_for_training(copy.deepcopy(book), torch.device("cpu"))
    ids = torch.randint(0, cfg.vocab_size, (batch_size, context + 1))
    batch, targets = ids[:, :-1], ids[:, 1:]
    for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
        steps = {"ours": train_step_fn(ours, batch, targets, False, dtype),
                 "hf": train_step_fn(hf, batch, targets, True, dtype),
                 "book": train_step_fn(book, batch, targets, False, dtype)}
        for step in steps.values():
            step()  # warm-up (allocates AdamW state)
        report(f"train_step_{label}", name, batch_size * context, race(steps, rounds), 1.0,
               batch=batch_size, context=context, vocab=cfg.vocab_size)


def read_bandwidth_gb_s(rounds: int = 5) -> float:
    """The machine's memory read speed with every thread (a sum over 256 MB): the ceiling for one token,
    whose matrix-vector products read every weight once."""
    big = torch.ones(64 * 2**20)
    best = min(_timed(big.sum) for _ in range(rounds))
    return big.numel() * big.element_size() / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_generate(new_tokens: int, rounds: int):
    """Greedy generation: ours (KV cache, decoding head, one-token path) against transformers' generate, and
    the book's loop, which runs the whole text through the model for every new token."""
    cfg = GPTConfig.preset("gpt2-small")
    torch.manual_seed(0)
    book = GPTModel(cfg).eval()
    hf = hf_copy(book).eval()
    ours = copy.deepcopy(book)
    prompt = torch.randint(0, cfg.vocab_size, (1, 16))

    def hf_generate(n: int) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                               eos_token_id=None, pad_token_id=0)

    for label, dtype, goal in (("fp32", torch.float32, 1.25), ("bf16_weights", torch.bfloat16, 1.0)):
        speed_up(ours.to(dtype)), hf.to(dtype), book.to(dtype)  # speed_up again: the memory order follows the dtype
        generate(ours, prompt, 4), hf_generate(4), generate(book, prompt, 4)  # warm-up
        first_16 = hf_generate(16)
        same = bool(torch.equal(generate(ours, prompt, 16), first_16))
        book_same = bool(torch.equal(generate(book, prompt, 16), first_16))
        times = race({"ours": lambda: generate(ours, prompt, new_tokens), "hf": lambda: hf_generate(new_tokens)},
                     rounds)
        # the book side once: it runs the whole text through the model for every token (~30x slower)
        times["book"] = race({"book": lambda: generate(book, prompt, new_tokens)}, 1)["book"]
        # each new token reads every weight once (the tied head counted once: 124M values)
        weight_gb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e9
        report(f"generate_greedy_{label}", "gpt2-small", new_tokens, times, goal,
               same_first_16_ids=same, book_same_first_16_ids=book_same, threads=torch.get_num_threads(),
               ours_read_GB_s=round(weight_gb * new_tokens / times["ours"], 1),
               hf_read_GB_s=round(weight_gb * new_tokens / times["hf"], 1),
               machine_read_GB_s=round(read_bandwidth_gb_s(), 1))


def bench_capture(rounds: int):
    """The Inside GPT view's pass (every layer's attention weights kept) against transformers' plain forward."""
    cfg = GPTConfig.preset("gpt2-small")
    torch.manual_seed(0)
    book = GPTModel(cfg).eval()
    hf = hf_copy(book).eval()
    ours = speed_up(copy.deepcopy(book))
    ids = torch.randint(0, cfg.vocab_size, (1, 64))

    def run_hf():
        with torch.no_grad():
            hf(ids, use_cache=False)

    sides = {"ours": lambda: ours.forward_with_capture(ids), "hf": run_hf,
             "book": lambda: book.forward_with_capture(ids)}
    for run in sides.values():
        run()
    report("forward_with_capture_vs_hf_forward", "gpt2-small", 64, race(sides, rounds), 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller runs")
    parser.add_argument("--only", choices=["train", "generate", "capture"], help="run one group")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 3 if args.quick else 5
    with use_plain(False):  # "ours" is the fast layer whatever LLM_LAB_PLAIN says; "book" is measured beside it
        run_benches(args, rounds)


def run_benches(args, rounds: int):
    if args.only in (None, "capture"):
        bench_capture(rounds * 2)
    if args.only in (None, "train"):
        bench_train("nano", 16, 64, rounds * 8, vocab_size=4096)  # the Pretrain tab's classroom default (short steps)
        bench_train("micro", 8, 256, rounds)
        if not args.quick:
            bench_train("gpt2-small", 1, 256, rounds)
    if args.only in (None, "generate"):
        bench_generate(32 if args.quick else 128, 2 if args.quick else 3)


if __name__ == "__main__":
    main()
