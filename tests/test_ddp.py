"""DistributedDataParallel on CPU: two gloo processes train a tiny model and end with identical weights."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt_core.events import StepEvent
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer_choice import ByteTokenizer
from gpt_core.train import train
from gpt_core.train_config import TrainConfig

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TEXT = "the quick brown fox jumps over the lazy dog. " * 16
SMALL = {"vocab_size": 256, "emb_dim": 32, "n_layers": 1, "n_heads": 2, "context_length": 16}


def _worker(rank: int, world_size: int, init_file: str, out_dir: str, result_dir: str) -> None:
    """One process of the spawned group: train 5 steps, then save this rank's weights and losses."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
        model = GPTModel(GPTConfig.preset("nano", drop_rate=0.1, **SMALL))
        config = TrainConfig(lr=3e-3, warmup_steps=1, max_steps=5, batch_size=4, eval_every=5, device="cpu",
                             autocast="off", out_dir=out_dir if rank == 0 else None, seed=3)
        events = list(train(model, ByteTokenizer().encode(TEXT), None, config))
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "out_head.weight"}
        save_file(state, f"{result_dir}/rank{rank}.safetensors")
        steps = [e.to_dict() for e in events if isinstance(e, StepEvent)]
        Path(f"{result_dir}/rank{rank}.json").write_text(json.dumps({"steps": steps, "done": events[-1].to_dict()}))
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_end_with_equal_weights(tmp_path):
    result_dir = tmp_path / "results"
    result_dir.mkdir()
    out_dir = tmp_path / "run"
    args = (2, str(tmp_path / "init"), str(out_dir), str(result_dir))
    torch.multiprocessing.spawn(_worker, args=args, nprocs=2, join=True)

    weights = [load_file(result_dir / f"rank{r}.safetensors") for r in range(2)]
    checkpoint = load_file(out_dir / "step-000005" / "model.safetensors")
    assert set(weights[0]) == set(checkpoint)
    for key, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][key]), key
        assert torch.equal(tensor, checkpoint[key]), key
    logs = [json.loads((result_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert [log["done"]["reason"] for log in logs] == ["max_steps", "max_steps"]
    assert [s["step"] for s in logs[0]["steps"]] == [1, 2, 3, 4, 5]
    assert logs[0]["steps"][-1]["tokens_seen"] == 5 * 4 * 16 * 2  # both processes' batches count
    assert all(math.isfinite(s["train_loss"]) for s in logs[0]["steps"])
    assert [s["train_loss"] for s in logs[0]["steps"]] == [s["train_loss"] for s in logs[1]["steps"]]
    assert logs[1]["done"]["checkpoint_path"] is None  # only rank 0 writes checkpoints


def test_torchrun_cli_with_two_processes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "gpt_core.train", "--preset", "nano", "--corpus", str(corpus), "--tokenizer", "bytes",
        "--emb-dim", "32", "--n-layers", "1", "--n-heads", "2", "--context-length", "16",
        "--max-steps", "5", "--batch-size", "4", "--warmup", "1", "--lr", "3e-3", "--eval-every", "5",
        "--out", str(out_dir), "--autocast", "off",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    print(result.stdout[-2000:], result.stderr[-2000:])
    assert result.returncode == 0
    assert "done (max_steps)" in result.stdout
    assert result.stdout.count("done (") == 1  # only rank 0 prints
    state = json.loads((out_dir / "step-000005" / "train_state.json").read_text())
    assert (state["step"], state["tokens_seen"]) == (5, 5 * 4 * 16 * 2)
    weights = load_file(out_dir / "step-000005" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
