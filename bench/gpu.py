"""The CUDA path: GPT-2 small trained at context 1024 in bf16 (tokens/s, MFU), the Pretrain tab's default run,
and generation, on one NVIDIA GPU. Prints one JSON line per measurement:

    {"bench": "gpu_device", "device": "NVIDIA H200", "peak_flops": 9.89e14, "torch": "2.13.0", ...}
    {"bench": "gpu_train", "variant": "fast_compiled", "tok_s": ..., "mfu": ..., "engine_mfu": ..., ...}
    {"bench": "gpu_train_ratio", "best": "fast_compiled", "best_mfu": ..., "goal": 0.45, "ratio": ..., ...}
    {"bench": "gpu_app_default", "device": "cuda", "tok_s": ..., "click_to_done_s": ..., "val_loss": ...}
    {"bench": "gpu_generate", "variant": "fast_bf16", "tok_s": ..., "same_first_32_ids": true, ...}

- ``gpu_train``: GPT-2 small (``GPTConfig.preset("gpt2-small")``, 124M, no dropout) through the engine's own
  loop (``gpt_core.train.train``): bf16 autocast, fused AdamW (``make_optimizer``), ``torch.compile`` on and off
  (``TrainConfig.compile``), and the book layer alone beside it. Random token ids (speed does not depend on
  the text). ``mfu`` = ``flops_per_token`` (6N plus attention, nanoGPT's estimate) x tokens/s / the GPU's
  data-sheet bf16 peak (``gpt_core.train_config.PEAK_FLOPS``, matched by the device's name; an unknown GPU has
  none and its MFU is null); ``engine_mfu`` is what the run's own step events report (the median).
- ``gpu_train_ratio``: the best variant against the 45% MFU goal, and against the book layer (``ratio``).
  Yardsticks: nanoGPT reaches about 30% MFU; the book's fastest single-A100 script about 142k tokens/s.
- ``gpu_app_default``: the Pretrain tab's default run (nano, 1,000 steps, the packaged Shakespeare) pressed
  through the tab's own handlers (``ui.pretrain_tab.start_run`` / ``poll_run``, as bench/pretrain_demo.py
  does): on a GPU machine its device is "auto" -> cuda.
- ``gpu_generate``: greedy generation with the KV cache, GPT-2 small, batch 1, 200 new tokens after a 16-token
  prompt; the fast layer in fp32 and bf16 weights, and the book's loop (whole window every token).

    python bench/gpu.py            # about 5 minutes on an H100/H200 (torch.compile takes 1-2 of them)
    python bench/gpu.py --quick    # a smoke run of every part: batch 4, a few steps, 100 app steps
    python bench/gpu.py --parts train --batch 32

Without a CUDA device it prints {"bench": "gpu", "skipped": "no CUDA device"} and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt_core.device import device_in_words  # noqa: E402
from gpt_core.fast import speed_up, speed_up_for_training  # noqa: E402
from gpt_core.fast.settings import use_plain  # noqa: E402
from gpt_core.generate import generate  # noqa: E402
from gpt_core.model import GPTConfig, GPTModel  # noqa: E402
from gpt_core.train import make_optimizer, train  # noqa: E402
from gpt_core.train_config import TrainConfig, flops_per_token, peak_flops  # noqa: E402

SEED = 123
CONTEXT = 1024
GOAL_MFU = 0.45  # on an H100/H200-class GPU
NANOGPT_MFU = 0.30  # what nanoGPT's train.py reaches (its own estimate_mfu)
BOOK_FASTEST_A100_TOK_S = 142_000  # the book's fastest single-A100 training script (appendix, GPT-2 small)
SKIPPED = {"bench": "gpu", "skipped": "no CUDA device"}


def emit(line: dict) -> dict:
    print(json.dumps(line), flush=True)
    return line


def device_line(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return {"bench": "gpu_device", "device": device_in_words(device), "peak_flops": peak_flops(device),
            "memory_gb": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
            "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}


# ---------------------------------------------------------------- training: GPT-2 small at context 1024
def gpt2_small() -> GPTConfig:
    return GPTConfig.preset("gpt2-small", drop_rate=0.0)


def train_config(batch: int, steps: int, compile: bool, device: torch.device) -> TrainConfig:
    """bf16 autocast (on CUDA an error if the GPU has none), the lab's fused AdamW, no evaluation: steps only."""
    return TrainConfig(lr=6e-4, warmup_steps=10, max_steps=steps, batch_size=batch, context_length=CONTEXT,
                       eval_every=0, log_every=1, seed=SEED, device=str(device),
                       autocast="bf16" if device.type == "cuda" else "auto", compile=compile)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (a CPU has none)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device, reset: bool = False) -> float | None:
    if device.type != "cuda":
        return None
    if reset:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 1)


def train_speed(variant: str, ids: torch.Tensor, batch: int, warm: int, timed: int, device: torch.device) -> dict:
    """Tokens/s of ``variant`` ("fast_eager", "fast_compiled", "book_eager") over ``timed`` steps after
    ``warm`` steps (the first allocates, and compiles when asked to). A step event comes after each step's loss
    reached the CPU, so the time between two events is one whole step."""
    cfg = gpt2_small()
    torch.manual_seed(SEED)
    model = GPTModel(cfg).to(device)
    if variant.startswith("fast"):
        speed_up_for_training(model, device)
    config = train_config(batch, warm + timed, variant.endswith("compiled"), device)
    fused = bool(make_optimizer(model, config, device).defaults.get("fused"))  # the optimizer train() makes
    peak_memory_gb(device, reset=True)
    start = time.perf_counter()
    clock: list[tuple[float, object]] = []
    autocast = None
    for event in train(model, ids, None, config):
        if event.kind == "step":
            clock.append((time.perf_counter(), event))
        elif event.kind == "start":
            autocast = event.autocast
    sync(device)
    measured = clock[warm - 1:]  # from the end of the last warm-up step to the end of the last step
    seconds = measured[-1][0] - measured[0][0]
    tokens_per_step = batch * CONTEXT
    tok_s = tokens_per_step * (len(measured) - 1) / seconds
    peak = peak_flops(device)
    engine_mfus = [event.mfu for _, event in measured[1:] if event.mfu is not None]
    line = {"bench": "gpu_train", "variant": variant, "config": "gpt2-small", "n_params": model.num_parameters(),
            "batch": batch, "context": CONTEXT, "autocast": autocast, "fused_adamw": fused,
            "compile": config.compile, "timed_steps": len(measured) - 1,
            "tok_s": round(tok_s), "step_ms": round(1000 * seconds / (len(measured) - 1), 1),
            "mfu": round(flops_per_token(cfg, CONTEXT) * tok_s / peak, 4) if peak else None,
            "engine_mfu": round(statistics.median(engine_mfus), 4) if engine_mfus else None,
            "first_step_s": round(clock[0][0] - start, 1),
            "peak_memory_gb": peak_memory_gb(device),
            "loss_first": round(clock[0][1].train_loss, 3), "loss_last": round(clock[-1][1].train_loss, 3)}
    del model
    peak_memory_gb(device, reset=True)  # frees the cached blocks before the next variant
    return emit(line)


def bench_train(batch: int, warm: int, timed: int, compile: bool, device: torch.device) -> None:
    """The fast layer eager and compiled, and the book layer, on the same random ids; then the ratio line."""
    torch.manual_seed(SEED)
    ids = torch.randint(0, gpt2_small().vocab_size, (batch * (warm + timed) * CONTEXT + 1,))
    variants = ["fast_eager", "fast_compiled", "book_eager"] if compile else ["fast_eager", "book_eager"]
    lines = {variant: train_speed(variant, ids, batch, warm, timed, device) for variant in variants}
    fast = [lines[v] for v in variants if v.startswith("fast")]
    best = max(fast, key=lambda line: line["tok_s"])
    emit({"bench": "gpu_train_ratio", "config": "gpt2-small", "batch": batch, "context": CONTEXT,
          "best": best["variant"], "best_tok_s": best["tok_s"], "best_mfu": best["mfu"], "goal": GOAL_MFU,
          "ok": best["mfu"] >= GOAL_MFU if best["mfu"] is not None else None,
          "ratio": round(best["tok_s"] / lines["book_eager"]["tok_s"], 2),  # the fast layer against the book's
          "compiled_vs_eager": round(lines["fast_compiled"]["tok_s"] / lines["fast_eager"]["tok_s"], 2)
          if compile else None,
          "vs_nanogpt_mfu": round(best["mfu"] / NANOGPT_MFU, 2) if best["mfu"] is not None else None,
          "vs_book_fastest_a100": round(best["tok_s"] / BOOK_FASTEST_A100_TOK_S, 2),
          "note": "ratio: best fast variant / book layer alone (same loop, bf16, fused AdamW); goal: best_mfu"})


# ---------------------------------------------------------------- the app's default run, through the tab
def bench_app_default(steps: int | None, poll_s: float = 0.25) -> dict:
    """Press Start on the Pretrain tab with its defaults (device "auto": cuda here) and poll until done."""
    from ui import pretrain_tab, runs

    runs.serve_settings()
    steps = steps or pretrain_tab.CLASSROOM_STEPS
    browser = runs.new_browser_id()
    clicked = time.perf_counter()
    outputs = pretrain_tab.start_run(pretrain_tab.CLASSROOM_PRESET, pretrain_tab.SHAKESPEARE, None,
                                     pretrain_tab.BPE_4096, steps, pretrain_tab.CLASSROOM_BATCH,
                                     pretrain_tab.CLASSROOM_CONTEXT, pretrain_tab.CLASSROOM_LR,
                                     min(pretrain_tab.CLASSROOM_WARMUP, steps), "ROMEO:", None, browser)
    started = time.perf_counter() - clicked  # the text prepared (its BPE trained on a fresh machine), the job queued
    history = outputs[-2]
    while history.running:
        time.sleep(poll_s)
        *_, history, _ = pretrain_tab.poll_run(False, history, browser)
    val_losses = [val for _, _, val in history.evals if val is not None]
    return emit({"bench": "gpu_app_default", "preset": pretrain_tab.CLASSROOM_PRESET, "steps": steps,
                 "batch": pretrain_tab.CLASSROOM_BATCH, "context": pretrain_tab.CLASSROOM_CONTEXT,
                 "device": history.device, "status": history.status, "reason": history.reason,
                 "error": history.error, "steps_done": history.step,
                 "tok_s": round(history.tokens_per_s or 0),
                 "mfu": round(history.mfu, 4) if history.mfu is not None else None,
                 "click_to_started_s": round(started, 1), "click_to_done_s": round(time.perf_counter() - clicked, 1),
                 "val_loss": round(val_losses[-1], 3) if val_losses else None,
                 "sample": history.samples[-1][1][:120] if history.samples else None})


# ---------------------------------------------------------------- generation
def time_generate(model: GPTModel, prompt: torch.Tensor, new_tokens: int, rounds: int) -> tuple[float, torch.Tensor]:
    """Best wall time of ``rounds`` greedy generations (after one warm-up), and the ids."""
    generate(model, prompt, 8)  # warm-up: kernels, the KV cache's first allocation
    best = float("inf")
    for _ in range(rounds):
        sync(prompt.device)
        start = time.perf_counter()
        out = generate(model, prompt, new_tokens)
        sync(prompt.device)
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_generate(new_tokens: int, rounds: int, device: torch.device) -> None:
    torch.manual_seed(SEED)
    book = GPTModel(gpt2_small()).to(device).eval()
    prompt = torch.randint(0, book.cfg.vocab_size, (1, 16), device=device)
    sides = {"fast_fp32": speed_up(copy.deepcopy(book)),
             "fast_bf16": speed_up(copy.deepcopy(book).to(torch.bfloat16)),
             "book_fp32": book}
    results = {name: time_generate(model, prompt, new_tokens, rounds if name != "book_fp32" else 1)
               for name, model in sides.items()}
    first = results["book_fp32"][1][0, 16:48]
    for name, (seconds, out) in results.items():
        emit({"bench": "gpu_generate", "variant": name, "config": "gpt2-small", "batch": 1, "prompt": 16,
              "new_tokens": new_tokens, "kv_cache": name.startswith("fast"), "tok_s": round(new_tokens / seconds, 1),
              "ms_per_token": round(1000 * seconds / new_tokens, 2),
              "same_first_32_ids": bool(torch.equal(out[0, 16:48], first)),
              "vs_book": round(results["book_fp32"][0] / seconds, 2)})


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: batch 4, few steps, short generation")
    parser.add_argument("--parts", default="train,app,generate", help="comma-separated: train, app, generate")
    parser.add_argument("--batch", type=int, help="GPT-2 small sequences per step (default 16; --quick 4)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 30; --quick 5)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        emit(SKIPPED)
        return 0
    parts = set(args.parts.split(","))
    device = torch.device("cuda")
    emit(device_line(device))
    with use_plain(False):  # the fast variants are the fast layer whatever LLM_LAB_PLAIN says
        if "train" in parts:
            bench_train(args.batch or (4 if args.quick else 16), warm=3 if args.quick else 5,
                        timed=args.steps or (5 if args.quick else 30), compile=not args.no_compile, device=device)
        if "app" in parts:
            bench_app_default(100 if args.quick else None)
        if "generate" in parts:
            bench_generate(50 if args.quick else 200, 2 if args.quick else 3, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
