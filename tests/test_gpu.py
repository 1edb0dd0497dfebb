"""The CUDA path against the book and against itself: bf16 fast layer = book layer, fused AdamW = unfused,
torch.compile = eager, KV-cache generation = the book's loop, all on a GPU (skipped without one, with the
reason). One test runs everywhere: bench/gpu.py on a machine without CUDA says so in one JSON line.

The timing itself is bench/gpu.py's (README, "GPU speed"); these tests hold the numbers it measures to the
book's.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_fast_equal import BF16, TINY, compare_forward_backward, largest, lm_loss

from gpt_core.fast import speed_up, speed_up_for_training
from gpt_core.fast.settings import use_plain
from gpt_core.generate import generate
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.train import make_optimizer, train
from gpt_core.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
COMPILED = 1e-4  # compiled vs eager, float32 without TF32: the same maths, fused in another order
ADAMW = 1e-4  # fused vs unfused AdamW after 3 steps of lr 1e-2: 1% of one step (the CPU's fused kernel: 1.1e-5)


def needs_cuda(test):
    """Marked ``gpu`` and skipped, with the reason, where torch sees no CUDA device."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none is visible to torch)")
    return pytest.mark.gpu(skip(test))


@pytest.fixture(autouse=True)
def fast_layer_on_and_no_tf32():
    """Both layers compared whatever LLM_LAB_PLAIN says; float32 matmuls in full precision (speed_up_for_training
    turns TF32 on for the process), restored afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with use_plain(False):
        yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def no_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def tiny_cuda_model(**overrides) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig(**{**TINY.to_dict(), **overrides})).to("cuda")


def token_ids(batch: int, length: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, TINY.vocab_size, (batch, length), generator=generator).to("cuda")


# ---------------------------------------------------------------- the fast layer in bf16 = the book layer
@needs_cuda
def test_bf16_fast_layer_equals_book_layer_on_cuda():
    """Under bf16 autocast on the GPU: the same logits and gradients (within bf16's steps), and both near the
    float32 book model's logits."""
    book = tiny_cuda_model().train()
    fast = speed_up_for_training(copy.deepcopy(book), "cuda")
    no_tf32()
    ids = token_ids(4, TINY.context_length)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        difference = compare_forward_backward(book, fast, ids, loss=lm_loss(ids))
    with torch.no_grad():
        fp32_logits = book(ids)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16_logits = fast(ids)
    assert difference <= BF16
    assert largest(bf16_logits, fp32_logits) <= BF16


# ---------------------------------------------------------------- fused AdamW = the unfused update
@needs_cuda
def test_fused_adamw_steps_equal_unfused_steps():
    """The lab's optimizer on CUDA is fused (one kernel for every parameter); three steps of it move every
    weight as three steps of the same AdamW, unfused, do."""
    no_tf32()
    config = TrainConfig(lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), device="cuda")
    fused_model = tiny_cuda_model()
    plain_model = copy.deepcopy(fused_model)
    fused = make_optimizer(fused_model, config, torch.device("cuda"))
    assert fused.defaults["fused"] is True
    params = list(plain_model.parameters())  # the same groups: decay on matrices and embeddings only
    plain = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=config.lr, betas=config.betas, fused=False, foreach=False)
    assert [len(g["params"]) for g in plain.param_groups] == [len(g["params"]) for g in fused.param_groups]
    ids = token_ids(4, TINY.context_length)
    for _ in range(3):
        for model, optimizer in ((fused_model, fused), (plain_model, plain)):
            optimizer.zero_grad(set_to_none=True)
            lm_loss(ids)(model(ids)).backward()
            optimizer.step()
    difference = max(largest(a, b) for a, b in zip(fused_model.parameters(), plain_model.parameters()))
    assert difference <= ADAMW
    assert largest(fused_model.tok_emb.weight, tiny_cuda_model().tok_emb.weight) > 1e-3  # the steps moved it


# ---------------------------------------------------------------- torch.compile = eager
@needs_cuda
def test_compiled_forward_equals_eager_forward():
    no_tf32()
    fast = speed_up_for_training(tiny_cuda_model(), "cuda")
    no_tf32()  # speed_up_for_training turned TF32 on
    ids = token_ids(4, TINY.context_length)
    compiled = torch.compile(fast)
    with torch.no_grad():
        assert largest(compiled(ids), fast(ids)) <= COMPILED


@needs_cuda
def test_a_compiled_bf16_training_run_follows_the_eager_run():
    """The engine's own loop (TrainConfig.compile) on the GPU: the same losses, step by step, as eager."""
    ids = torch.randint(0, TINY.vocab_size, (4000,), generator=torch.Generator().manual_seed(2))

    def losses(compile: bool) -> list[float]:
        model = speed_up_for_training(tiny_cuda_model(), "cuda")
        config = TrainConfig(lr=1e-3, warmup_steps=2, max_steps=6, batch_size=4, context_length=TINY.context_length,
                             eval_every=0, device="cuda", autocast="bf16", compile=compile, seed=3)
        events = list(train(model, ids, None, config))
        assert events[0].autocast == "bfloat16" and events[-1].reason == "max_steps"
        return [event.train_loss for event in events if event.kind == "step"]

    eager, compiled = losses(False), losses(True)
    assert len(eager) == 6
    assert max(abs(a - b) for a, b in zip(eager, compiled)) <= BF16


# ---------------------------------------------------------------- generation on the GPU
@needs_cuda
def test_kv_cache_generation_on_cuda_gives_the_books_ids():
    no_tf32()
    book = tiny_cuda_model().eval()
    fast = speed_up(copy.deepcopy(book))
    prompt = token_ids(1, 5)
    assert generate(fast, prompt, 30).tolist() == generate(book, prompt, 30).tolist()  # past the context (24)


# ---------------------------------------------------------------- the bench without a GPU
def test_the_gpu_bench_without_cuda_prints_one_skipped_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, also on a GPU machine
    done = subprocess.run([sys.executable, "bench/gpu.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"bench": "gpu", "skipped": "no CUDA device"}]
