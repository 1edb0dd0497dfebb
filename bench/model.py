"""Speed of gpt_core's model against transformers' GPT2LMHeadModel: same config, same weights, same ids.

Prints one JSON line per measurement:
    {"bench": "train_step_fp32", "config": "gpt2-small", "ours_tok_s": ..., "hf_tok_s": ..., "ratio": ..., "goal": 1.0}

The two sides run interleaved (order swapped every round) and each side keeps its best (minimum) time.
    python bench/model.py            # about 3 minutes on 2 CPU cores
    python bench/model.py --quick    # fewer rounds and configs
"""

from __future__ import annotations

import argparse
import contextlib
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
from gpt_core.generate import generate  # noqa: E402
from gpt_core.model import GPTConfig, GPTModel  # noqa: E402
from gpt_core.train import prepare_for_training  # noqa: E402


def hf_copy(model: GPTModel):
    """The same weights in transformers' GPT2LMHeadModel (through export_hf)."""
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        export_hf(model, tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp)
    return hf


def race(ours, theirs, rounds: int) -> tuple[float, float]:
    """Best wall time of each callable, run alternately, the order swapped every round."""
    best = {"ours": float("inf"), "hf": float("inf")}
    sides = [("ours", ours), ("hf", theirs)]
    for r in range(rounds):
        for name, fn in sides if r % 2 == 0 else sides[::-1]:
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best["ours"], best["hf"]


def report(bench: str, config: str, tokens: int, t_ours: float, t_hf: float, goal: float, **more):
    ours_tok_s, hf_tok_s = tokens / t_ours, tokens / t_hf
    line = {"bench": bench, "config": config, "ours_tok_s": round(ours_tok_s, 2), "hf_tok_s": round(hf_tok_s, 2),
            "ratio": round(ours_tok_s / hf_tok_s, 3), "goal": goal, **more}
    print(json.dumps(line), flush=True)


def train_step_fn(model, batch, targets, is_hf: bool, autocast_dtype):
    """One optimizer step as each side's own training code takes it.

    Both use fused AdamW: gpt_core.train.make_optimizer's choice, and the default of transformers' Trainer
    (``adamw_torch_fused``). Our model is first set up by ``prepare_for_training``, as gpt_core.train does.
    """
    if not is_hf:
        prepare_for_training(model, torch.device("cpu"))
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
    """Our training step against transformers'. ``prepare_for_training`` also tells glibc to keep freed
    memory (``keep_freed_memory``), which is process-wide: transformers' side gets that speed-up as well."""
    cfg = GPTConfig.preset(name, drop_rate=0.0, **overrides)
    torch.manual_seed(0)
    ours = GPTModel(cfg)
    hf = hf_copy(ours)
    ids = torch.randint(0, cfg.vocab_size, (batch_size, context + 1))
    batch, targets = ids[:, :-1], ids[:, 1:]
    for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
        ours_step = train_step_fn(ours, batch, targets, False, dtype)
        hf_step = train_step_fn(hf, batch, targets, True, dtype)
        ours_step(), hf_step()  # warm-up (allocates AdamW state)
        t_ours, t_hf = race(ours_step, hf_step, rounds)
        report(f"train_step_{label}", name, batch_size * context, t_ours, t_hf, 1.0,
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
    cfg = GPTConfig.preset("gpt2-small")
    torch.manual_seed(0)
    ours = GPTModel(cfg).eval()
    hf = hf_copy(ours).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 16))
    for label, dtype, goal in (("fp32", torch.float32, 1.25), ("bf16_weights", torch.bfloat16, 1.0)):
        ours.to(dtype).use_fast_layout(), hf.to(dtype)  # our weights' memory order depends on the dtype

        def run_ours():
            out = generate(ours, prompt, new_tokens)
            assert out.shape[1] == prompt.shape[1] + new_tokens

        def run_hf():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                  do_sample=False, eos_token_id=None, pad_token_id=0)
            assert out.shape[1] == prompt.shape[1] + new_tokens

        generate(ours, prompt, 4), hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4,
                                                do_sample=False, pad_token_id=0)  # warm-up
        same = bool(torch.equal(generate(ours, prompt, 16), hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16, do_sample=False,
            eos_token_id=None, pad_token_id=0)))
        t_ours, t_hf = race(run_ours, run_hf, rounds)
        # each new token reads every weight once (the tied head counted once: 124M values)
        weight_gb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e9
        report(f"generate_greedy_{label}", "gpt2-small", new_tokens, t_ours, t_hf, goal,
               same_first_16_ids=same, threads=torch.get_num_threads(),
               ours_read_GB_s=round(weight_gb * new_tokens / t_ours, 1),
               hf_read_GB_s=round(weight_gb * new_tokens / t_hf, 1), machine_read_GB_s=round(read_bandwidth_gb_s(), 1))
    ours.float().use_fast_layout()


def bench_capture(rounds: int):
    cfg = GPTConfig.preset("gpt2-small")
    torch.manual_seed(0)
    ours = GPTModel(cfg).eval()
    hf = hf_copy(ours).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 64))

    def run_hf():
        with torch.no_grad():
            hf(ids, use_cache=False)

    ours.forward_with_capture(ids), run_hf()
    t_ours, t_hf = race(lambda: ours.forward_with_capture(ids), run_hf, rounds)
    report("forward_with_capture_vs_hf_forward", "gpt2-small", 64, t_ours, t_hf, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller runs")
    parser.add_argument("--only", choices=["train", "generate", "capture"], help="run one group")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 3 if args.quick else 5
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
