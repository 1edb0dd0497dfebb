"""The pretraining loop: loss goes down, schedule, stop flag, exact resume, NaN handling, atomic checkpoints."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from gpt_core import train_config as train_config_module
from gpt_core import train_state as train_state_module
from gpt_core.events import CheckpointEvent, DoneEvent, EvalEvent, SampleEvent, StepEvent
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer_choice import ByteTokenizer
from gpt_core.train import ETA_SKIP, ETA_WINDOW, Run, make_optimizer, train
from gpt_core.train_config import TrainConfig, flops_per_token, lr_at, lr_schedule
from gpt_core.train_state import latest_checkpoint

TEXT = "the quick brown fox jumps over the lazy dog. " * 16  # 720 bytes
IDS = ByteTokenizer().encode(TEXT)


def tiny_model(seed: int = 0, drop_rate: float = 0.0) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig.preset("nano", vocab_size=256, emb_dim=32, n_layers=1, n_heads=2, context_length=16,
                           drop_rate=drop_rate)
    return GPTModel(cfg)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(lr=3e-3, warmup_steps=2, max_steps=6, batch_size=4, eval_every=0, device="cpu",
                    autocast="off", seed=7)
    return TrainConfig(**{**settings, **overrides})


def run(model, config, train_ids=IDS[:640], val_ids=IDS[640:], **kwargs) -> list:
    return list(train(model, train_ids, val_ids, config, **kwargs))


def of_kind(events, cls) -> list:
    return [e for e in events if isinstance(e, cls)]


def test_tiny_run_loss_decreases_and_events_are_json():
    events = run(tiny_model(), tiny_config(max_steps=30, eval_every=10, eval_batches=2))
    steps = of_kind(events, StepEvent)
    evals = of_kind(events, EvalEvent)
    assert [e.step for e in steps] == list(range(1, 31))
    assert [e.step for e in evals] == [10, 20, 30]
    first, last = steps[0].train_loss, evals[-1].train_loss
    print(f"loss {first:.3f} -> {last:.3f}")
    assert first == pytest.approx(math.log(256), abs=0.3)  # an untrained model guesses uniformly
    assert last < first - 2.0
    assert evals[-1].val_perplexity == pytest.approx(math.exp(evals[-1].val_loss))
    assert steps[-1].tokens_seen == 30 * 4 * 16
    assert steps[-1].mfu is None  # no known peak FLOP/s on a CPU
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert (done.kind, done.reason, done.step) == ("done", "max_steps", 30)
    kinds = [json.loads(json.dumps(e.to_dict()))["kind"] for e in events]
    assert kinds[0] == "start" and kinds.count("step") == 30


def test_lr_at_warmup_end_middle_and_last_step():
    config = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert lr_at(1, config) == 1e-4
    assert lr_at(10, config) == 1e-3  # end of warmup: exactly the peak
    assert lr_at(60, config) == pytest.approx(5.5e-4, rel=1e-12)  # halfway through the cosine
    assert lr_at(110, config) == 1e-4  # last step: exactly the floor
    schedule = lr_schedule(config)
    assert len(schedule) == 110 and max(schedule) == 1e-3 and schedule[-1] == 1e-4
    assert TrainConfig(lr=6e-4, warmup_steps=0, max_steps=5).min_lr == pytest.approx(6e-5)


def test_steps_report_the_schedule_lr():
    config = tiny_config(max_steps=5, warmup_steps=2, lr=1e-2, min_lr=1e-3)
    steps = of_kind(run(tiny_model(), config), StepEvent)
    assert [e.lr for e in steps] == [lr_at(s, config) for s in range(1, 6)]
    assert steps[1].lr == 1e-2 and steps[-1].lr == 1e-3


def test_stop_flag_ends_within_one_step_and_leaves_a_checkpoint(tmp_path):
    stop = threading.Event()
    events = []
    for event in train(tiny_model(), IDS[:640], None, tiny_config(max_steps=50, out_dir=str(tmp_path)), stop):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            stop.set()
    assert max(e.step for e in of_kind(events, StepEvent)) == 3
    done = events[-1]
    assert (done.reason, done.step) == ("stopped", 3)
    assert done.checkpoint_path == str(tmp_path / "step-000003")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000003"
    assert json.loads((tmp_path / "step-000003" / "train_state.json").read_text())["step"] == 3


def test_resume_gives_exactly_the_same_losses(tmp_path):
    """8 steps in one go == 4 steps, checkpoint, a fresh process-like restart, 4 more (dropout on, accumulation 2)."""
    config = tiny_config(max_steps=8, grad_accum_steps=2, batch_size=3, checkpoint_every=4, out_dir=str(tmp_path / "a"))
    straight = of_kind(run(tiny_model(drop_rate=0.1), config), StepEvent)

    stop = threading.Event()
    config_b = tiny_config(max_steps=8, grad_accum_steps=2, batch_size=3, out_dir=str(tmp_path / "b"))
    first_half = []
    for event in train(tiny_model(drop_rate=0.1), IDS[:640], IDS[640:], config_b, stop):
        if isinstance(event, StepEvent):
            first_half.append(event)
            if event.step == 4:
                stop.set()
    torch.manual_seed(999)  # scramble the global RNG: resuming must restore it
    resumed_model = tiny_model(seed=42, drop_rate=0.1)  # different initial weights: resuming must load them
    second_half = of_kind(run(resumed_model, config_b, resume_from=str(tmp_path / "b")), StepEvent)
    resumed = first_half + second_half
    assert [e.step for e in resumed] == list(range(1, 9))
    diffs = [abs(a.train_loss - b.train_loss) for a, b in zip(straight, resumed)]
    print("largest loss difference after resume:", max(diffs))
    assert [e.train_loss for e in resumed] == [e.train_loss for e in straight]
    assert [e.tokens_seen for e in resumed] == [e.tokens_seen for e in straight]
    assert [e.epoch for e in resumed] == [e.epoch for e in straight]


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = tiny_model()
    calls = {"n": 0}

    def poison_fifth_forward(module, inputs, output):  # the 5th training step produces NaN logits
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 5 else output

    model.register_forward_hook(poison_fifth_forward)
    events = run(model, tiny_config(max_steps=10, checkpoint_every=2, out_dir=str(tmp_path)))
    done = events[-1]
    assert (done.reason, done.step) == ("nan", 4)
    assert done.checkpoint_path == str(tmp_path / "step-000004")
    assert "learning rate is too high" in done.message and "step 5" in done.message
    assert [e.step for e in of_kind(events, CheckpointEvent)] == [2, 4]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000004"
    weights = load_file(tmp_path / "step-000004" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_huge_learning_rate_ends_with_reason_nan():
    events = run(tiny_model(), tiny_config(lr=1e30, warmup_steps=0, max_steps=20))
    assert events[-1].reason == "nan"
    assert all(math.isfinite(e.train_loss) for e in of_kind(events, StepEvent))


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save_file = train_state_module.save_file
    calls = {"n": 0}

    def crash_on_second_checkpoint(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            open(path, "wb").write(b"half a file")  # noqa: SIM115
            raise OSError("disk full (simulated)")
        return real_save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(train_state_module, "save_file", crash_on_second_checkpoint)
    with pytest.raises(OSError, match="simulated"):
        run(tiny_model(), tiny_config(max_steps=6, checkpoint_every=2, out_dir=str(tmp_path)))
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000002"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.txt", "step-000002"]

    monkeypatch.setattr(train_state_module, "save_file", real_save_file)
    (tmp_path / ".tmp-step-000004").mkdir()  # what a killed process leaves behind
    events = run(tiny_model(seed=5), tiny_config(max_steps=4, out_dir=str(tmp_path)), resume_from=str(tmp_path))
    assert [e.step for e in of_kind(events, StepEvent)] == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.txt", "step-000002", "step-000004"]


def test_token_and_time_budgets():
    events = run(tiny_model(), tiny_config(max_steps=50, max_tokens=3 * 4 * 16))
    assert (events[-1].reason, events[-1].step) == ("max_tokens", 3)
    events = run(tiny_model(), tiny_config(max_steps=50, time_budget_s=1e-9))
    assert (events[-1].reason, events[-1].step) == ("time_budget", 1)


def step_times(max_steps: int) -> list[float]:
    """A run's step durations as a busy CPU gives them: 3 slow warm-up steps, an evaluation every 50th step
    (5 steps long), and from step 200 on a CPU shared with another job (1.2x slower)."""
    times = []
    for step in range(1, max_steps + 1):
        seconds = 0.5 if step <= 3 else 0.05 * (1.2 if step >= 200 else 1.0)
        times.append(seconds + (0.25 if step % 50 == 0 else 0.0))
    return times


def test_time_left_uses_a_median_step_time_so_it_never_jumps_between_polls():
    config = tiny_config(max_steps=400)
    run = Run(tiny_model(), IDS[:640], IDS[640:], config, None)
    clock, polls, estimates = 0.0, [], {}
    for step, seconds in enumerate(step_times(config.max_steps), start=1):
        clock += seconds  # a fake clock: the elapsed time at each step event
        run.step = step
        estimates[step] = run.eta_s(clock)
        if not polls or clock - polls[-1][0] >= 1.0:  # the page polls once a second and shows the latest
            polls.append((clock, estimates[step]))
    assert [estimates[step] for step in range(1, ETA_SKIP + 1)] == [None] * ETA_SKIP  # warm-up steps: no guess
    assert estimates[ETA_SKIP + 1] == pytest.approx((400 - ETA_SKIP - 1) * 0.05)  # the first timed step
    assert estimates[100] == pytest.approx(300 * 0.05)  # the evaluation at step 100 does not move the median
    assert estimates[300] == pytest.approx(100 * 0.06)  # 20 steps after the slowdown, all steps are slower
    assert len(run.step_seconds) == ETA_WINDOW and estimates[400] == 0.0
    shown = [(time, eta) for time, eta in polls if eta is not None]
    jumps = [abs(after - (before - (t2 - t1))) / before
             for (t1, before), (t2, after) in zip(shown, shown[1:]) if before > 1.0]
    print("largest jump between polls:", max(jumps))
    assert max(jumps) <= 0.3
    # the old estimate (time so far / steps so far) would have started at 10x the real time left
    assert estimates[ETA_SKIP + 1] < 0.2 * (sum(step_times(4)) / 4 * 396)


def test_time_left_counts_the_time_and_token_budgets():
    run = Run(tiny_model(), IDS[:640], IDS[640:], tiny_config(max_steps=100, max_tokens=60 * 64,
                                                             time_budget_s=100.0), None)
    for step in range(1, 11):
        run.step, run.tokens_seen = step, step * 64
        eta = run.eta_s(step * 0.5)
    assert eta == pytest.approx((60 - 10) * 0.5)  # the token budget ends the run at step 60
    run.config.time_budget_s = 8.0
    run.step, run.tokens_seen = 11, 11 * 64
    assert run.eta_s(5.5) == pytest.approx(2.5)  # the time budget comes first


def test_samples_use_the_tokenizer_and_are_greedy():
    config = tiny_config(max_steps=4, sample_every=2, sample_prompt="the qu", sample_tokens=5,
                         tokenizer=ByteTokenizer())
    samples = of_kind(run(tiny_model(), config), SampleEvent)
    assert [s.step for s in samples] == [2, 4]
    assert all(s.text.startswith("the qu") and len(s.text.encode()) <= 11 for s in samples)
    again = of_kind(run(tiny_model(), config), SampleEvent)
    assert [s.text for s in again] == [s.text for s in samples]


def test_weight_decay_only_on_matrices():
    model = tiny_model()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_flops_per_token_formula():
    # gpt2-small: N = 124,439,808 - 786,432 position-embedding weights; 6N + 12 * 12 * 768 * 1024
    assert flops_per_token(GPTConfig.preset("gpt2-small")) == 6 * 123_653_376 + 12 * 12 * 768 * 1024


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "The batch size must be a whole number of at least 1, got 0"),
        ({"lr": 0.0}, "The learning rate must be a number above 0, got 0.0"),
        ({"lr": float("nan")}, "The learning rate must be a number above 0, got nan"),
        ({"max_steps": 0}, "max_steps .* at least 1, got 0"),
        ({"min_lr": 1.0}, "min_lr must be between 0 and lr"),
        ({"autocast": "fp8"}, "autocast must be one of auto, bf16, off"),
        ({"betas": (0.9, 1.5)}, "betas must be two numbers in"),
        ({"grad_clip": -1.0}, "grad_clip must be above 0"),
        ({"schedule": "linear"}, "schedule must be one of cosine, constant; got 'linear'"),
    ],
)
def test_bad_settings_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_data_too_short_for_the_context_or_the_batch():
    with pytest.raises(ValueError, match="The training text is too short: A context length of 16 needs at least 17"):
        train(tiny_model(), IDS[:10], None, tiny_config())
    with pytest.raises(ValueError, match="The validation text is too short"):
        train(tiny_model(), IDS[:640], IDS[:5], tiny_config())
    with pytest.raises(ValueError, match="has 3 sequences, fewer than one batch of 4"):
        train(tiny_model(), IDS[:60], None, tiny_config())
    with pytest.raises(ValueError, match="longer than the model's"):
        train(tiny_model(), IDS[:640], None, tiny_config(context_length=64))


def test_lr_at_without_warmup_and_numpy_ids():
    import numpy as np

    config = tiny_config(warmup_steps=0, max_steps=4, lr=1e-2, min_lr=0.0)
    assert lr_at(0, config) == 1e-2 and lr_at(4, config) == 0.0
    events = run(tiny_model(), config, train_ids=np.array(IDS[:640]), val_ids=None)
    assert events[-1].reason == "max_steps"


def test_a_job_runs_training_and_can_be_stopped(tmp_path):
    from ui.jobs import JobManager

    manager = JobManager()
    model = tiny_model()
    job_id = manager.start("alice", lambda stop: train(model, IDS[:640], None, tiny_config(
        max_steps=10_000, out_dir=str(tmp_path)), stop), "tiny")
    view = manager.poll(job_id, "alice")
    while not any(isinstance(e, StepEvent) for e in view.events):
        time.sleep(0.002)
        view = manager.poll(job_id, "alice")
    manager.stop(job_id, "alice")
    final = manager.wait(job_id, "alice", timeout=30)
    done = final.events[-1]
    assert (final.status, done.reason) == ("stopped", "stopped")
    assert done.step < 100 and latest_checkpoint(tmp_path) == tmp_path / f"step-{done.step:06d}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_run_reports_mfu():
    events = run(tiny_model(), tiny_config(device="cuda", autocast="auto", max_steps=5))
    steps = of_kind(events, StepEvent)
    assert events[0].autocast == "bfloat16" and events[-1].reason == "max_steps"
    assert all(math.isfinite(e.train_loss) for e in steps)
    name = torch.cuda.get_device_name()
    known = any(key in name for key in train_config_module.PEAK_FLOPS)
    assert (steps[-1].mfu is not None) == known


def test_book_recipe_sets_the_chapter_5_settings_and_options_still_override():
    from gpt_core.train_cli import _parse_args

    args = _parse_args(["--recipe", "book-ch5"])
    assert (args.preset, args.corpus, args.context_length, args.lr, args.min_lr, args.weight_decay) == (
        "book", "verdict", 256, 4e-4, 4e-4, 0.1)  # the book's GPT_CONFIG_124M at context 256
    assert (args.batch_size, args.max_steps, args.warmup, args.betas) == (2, 90, 0, (0.9, 0.999))
    assert args.grad_clip == 0.0 and _parse_args([]).grad_clip == 1.0  # the book does not clip
    assert (args.optimizer, args.no_reseed, args.plain, args.eval_from_first_step, args.eval_batches) == (
        "book", True, True, True, 5)
    assert _parse_args(["--recipe", "book-ch5", "--max-steps", "3"]).max_steps == 3
    assert _parse_args([]).weight_decay == 0.1


def test_a_stop_between_evals_still_reports_the_final_val_loss(tmp_path):
    stop = threading.Event()
    events = []
    config = tiny_config(max_steps=50, eval_every=10, out_dir=str(tmp_path))
    for event in train(tiny_model(), IDS[:640], IDS[640:], config, stop):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            stop.set()
    evals = of_kind(events, EvalEvent)
    assert [e.step for e in evals] == [3]
    assert evals[0].val_loss > 0
    assert events[-1].reason == "stopped"


def test_cli_ablations_change_the_trained_model_and_are_listed_in_help(tmp_path, capsys):
    from gpt_core.ablations import ABLATIONS
    from gpt_core.checkpoints import load_checkpoint
    from gpt_core.train_cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "run"
    argv = ["--preset", "nano", "--corpus", str(corpus), "--tokenizer", "bytes", "--emb-dim", "32", "--n-layers", "1",
            "--n-heads", "2", "--context-length", "16", "--max-steps", "2", "--batch-size", "2", "--eval-every", "0",
            "--device", "cpu", "--autocast", "off", "--out", str(out), "--drop-rate", "0.1",
            "--ablate", "no-causal-mask", "--ablate", "relu", "--ablate", "dropout", "--ablate", "constant-lr"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert ("ablation causal_mask: True -> False\nablation activation: gelu -> relu\n"
            "ablation schedule: cosine -> constant\n"
            "ablation dropout: already so in this run (nothing changed)") in printed  # --drop-rate 0.1
    model = load_checkpoint(latest_checkpoint(out))
    assert (model.cfg.causal_mask, model.cfg.activation, model.cfg.drop_rate, model.cfg.n_heads) == (
        False, "relu", 0.1, 2)
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert all(f"{name:<16}  {ablation.what}" in help_text for name, ablation in ABLATIONS.items())
    with pytest.raises(SystemExit):
        main(["--ablate", "no-attention"])
    assert "argument --ablate: invalid choice: 'no-attention'" in capsys.readouterr().err
