"""Pretrain tab (chapter 5): train a small GPT from random weights on a text, and watch it learn.

Pick a model size, a text and a few settings, press Start. The run goes through the server's one job manager
(``ui.runs.job_manager()``: a few runs at a time, the rest wait in a queue); a timer polls only the events
that arrived since the last poll and redraws the loss curves, the learning-rate schedule, the speed and the
samples. When it is done, download the checkpoint or make it the model of the Inside GPT and Generate tabs.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from gpt_core.ablations import ABLATIONS, apply_ablations, put_causal_mask_back
from gpt_core.batches import BatchStream, as_dataset, fixed_batches
from gpt_core.checkpoints import load_checkpoint
from gpt_core.corpora import cache_dir, the_verdict_text
from gpt_core.data import read_user_text, shakespeare_text, window_starts
from gpt_core.device import cpu_peak_flops, device_in_words, pick_device
from gpt_core.export import export_run
from gpt_core.fast import speed_up_for_training
from gpt_core.files import human_size, write_atomically
from gpt_core.model import GPTConfig, GPTModel, estimate_memory, parameter_breakdown
from gpt_core.snapshots import snapshot_steps
from gpt_core.tokenizer import BPETokenizer
from gpt_core.tokenizer_choice import encode_corpus
from gpt_core.tokenizer_choice import make_tokenizer as tokenizer_spec
from gpt_core.train import batch_loss, evaluate, make_optimizer, train, training_loop
from gpt_core.train_config import (
    TrainConfig,
    flops_per_token,
    lr_at,
    lr_schedule,
    peak_flops,
    training_autocast_dtype,
)
from ui import models
from ui.api import SYNC_RUN_QUEUE, RunTimer, Stopwatch, run_summary, sync_run_limit, tool, wait_for_run
from ui.budgets import BudgetStore, env_number, register_store
from ui.common import NumberBox, explain, friendly, learning_rate, number_input, show_source
from ui.downloads import csv_file, figure_html_file, png_config
from ui.experiments import (
    NO_PREDICTION,
    RunRecord,
    ablation_choices,
    check_ablations,
    check_prediction,
    explain_ablations,
    prediction_choices,
    verdict,
)
from ui.follow import followed
from ui.jobs import JobView
from ui.run_tab import RunHistory, RunTab, with_note
from ui.runs import (
    browser_id_state,
    job_manager,
    lone_run_threads,
    owner_of,
    pin_torch_threads,
    run_threads,
    shared_threads,
    sharing_cores,
)
from ui.snapshots_view import SnapshotSection, build_snapshot_section
from ui.uploads import read_upload
from ui.view_cache import plot_value
from ui.zerogpu import chunked_job, on_zero_gpu, seeded_model
from visualizations.compare import X_AXES, compare_figure, runs_csv, safe_file_stem, settings_table_html
from visualizations.training import batch_html, samples_html, stats_markdown, training_figure

JOB_LABEL = "pretrain"
PRESET_NAMES = ("nano", "micro", "mini")
SHAKESPEARE, VERDICT, UPLOAD = "Shakespeare (packaged)", "The Verdict (the book's story, 20 kB)", "Upload a .txt file"
CORPUS_CHOICES = (SHAKESPEARE, VERDICT, UPLOAD)
BPE_4096, GPT2_VOCAB = "BPE, 4,096 tokens trained on this text", "GPT-2's 50,257 tokens"
TOKENIZER_CHOICES = (BPE_4096, GPT2_VOCAB)
TOKENIZER_SPECS = {BPE_4096: "bpe:4096", GPT2_VOCAB: "gpt2"}  # gpt_core.tokenizer_choice's names
# The classroom default: about a minute from click to done on a quiet 2-core server (a lone run trains on both
# cores: ui.runs.run_threads). nano as the book builds it (PyTorch's own init, an untied head, no qkv bias), 1,000
# steps of 32 sequences of 32 tokens, lr 1e-2 after 300 warm-up steps, AdamW betas (0.9, 0.99): 49-63 s and val
# loss 4.48-4.49 through this tab (bench/pretrain_demo.py; lr 8e-3 4.49-4.50, 200 warm-up steps 4.50). The sweep
# behind it (one thread, the same 717k tokens, val loss on 40 batches): 16 x 64 with betas (0.9, 0.95) 4.73; betas
# (0.9, 0.99) 4.66, (0.9, 0.999) 4.66; 32 x 32 4.60; 64 x 16 4.64; 48 x 32 for fewer steps 4.62; 100 warm-up steps
# 4.75; no weight decay, no clipping or a cosine down to 0 no better; the book's init and untied head 4.58 (GPT-2's
# init with the book's untied head 5.33); fp32 instead of bf16 autocast the same loss in 1.6x the time.
CLASSROOM_PRESET, CLASSROOM_STEPS, CLASSROOM_BATCH, CLASSROOM_CONTEXT = "nano", 1000, 32, 32
CLASSROOM_LR, CLASSROOM_WARMUP = 1e-2, 300
BETAS = (0.9, 0.99)  # AdamW's: a slower second moment than the engine's (0.9, 0.95) suits these short runs
MAX_UPLOAD_BYTES = 10_000_000  # an uploaded text larger than 10 MB is refused
MAX_CONTEXT = 1024  # GPT-2's context length; longer ones are refused
VAL_FRACTION = 0.1  # the last 10% of the tokens are held out for the validation loss
N_SAMPLES_SHOWN = 4
WINDOWS_SHOWN = 3  # windows of the first batch shown before Start
SEED = 123  # the batch order and the initial weights of every tab run (the same run for every student)
EVAL_BATCHES = 4  # the validation loss is measured on the same first 4 batches of the last 10% every time
SAMPLE_TOKENS = 32
# Finished runs kept with their checkpoints (least recently used go first; running and queued runs always stay).
KEPT_RUNS = int(env_number("LLM_LAB_KEPT_RUNS", 120))  # four per student of a class of thirty, to compare
RUNS_DISK_BYTES = env_number("LLM_LAB_RUNS_DISK_GB", 20) * 1e9
# The val loss of the default settings with no switches, measured through this tab (bench/pretrain_demo.py, seed
# 123: 4.480); an experiment on the default settings compares with it until the page has its own unchanged run.
DEFAULT_VAL_LOSS = 4.480
ABLATION_NAMES = tuple(ABLATIONS)  # the switches the Experiment panel offers
MAX_COMPARED = 8  # the side-by-side plot shows this page's newest 8 runs
RUNS_DIR = Path(os.environ.get("LLM_LAB_RUNS_DIR") or Path(tempfile.gettempdir()) / "llm_lab_runs")
# Rough training speed, for the time estimate before a run starts: the share of the device's peak FLOP/s a small
# model reaches (on a CPU the peak is measured: gpt_core.device.cpu_peak_flops).
CPU_SHARE_OF_PEAK = 0.4  # nano on 1 thread of an AMD EPYC reaches 42% of the bf16 matmul peak (bench/pretrain_demo.py)
MPS_FLOPS = 2e12
GPU_SHARE_OF_PEAK = 0.3

INTRO = """
### Pretraining: from random weights to Shakespeare-ish text
The model reads windows of `context length` tokens and, at **every position**, is scored on how well it
predicted the next token (cross-entropy, in nats). Each **optimizer step** averages that loss over a batch,
computes the gradient of every weight, clips it, and lets AdamW take a small step whose size follows the
**learning-rate schedule** (a linear warm-up, then a cosine decay). A random model over *V* tokens starts near
ln(*V*) (8.3 for 4,096 tokens); the **validation loss**, measured on the last 10% of the text that the model
never trains on, tells you whether it is learning the language or just memorising.
"""


EXPERIMENT_INTRO = """
**Ablations**: switch one part of the model or of its training off, keep everything else (the same text, the same
seed, the same batches), and see what that part was for. **Predict first**: will the validation loss come out lower,
about the same, or higher than the same run without the switch? Press Start; at the end the run says what happened
and why, and it joins your other runs below, side by side.
"""


# ---------------------------------------------------------------------------------------------------------------
# The text and its tokens
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    name: str
    tokenizer: object  # BPETokenizer: .encode, .decode, .vocab_size, .save
    train_ids: torch.Tensor | list[int]  # a 1-D tensor of ids (the run's windows read it without a copy)
    val_ids: torch.Tensor | list[int]


_corpora: OrderedDict[tuple, Corpus] = OrderedDict()
_corpora_lock = threading.Lock()


def read_corpus(corpus: str, upload: str | None) -> tuple[str, str]:
    """(name, text) of the chosen corpus. An upload must be UTF-8 and at most MAX_UPLOAD_BYTES."""
    if corpus == SHAKESPEARE:
        return "Shakespeare", shakespeare_text()
    if corpus == VERDICT:
        return "The Verdict", the_verdict_text()  # bundled with the lab, as the book's chapters 2-5 use it
    if corpus == UPLOAD:
        data, name = read_upload(upload, what="a .txt file", suffixes=(".txt",), max_bytes=MAX_UPLOAD_BYTES)
        text = read_user_text(data, name, MAX_UPLOAD_BYTES)
        if len(text.strip()) < 100:
            raise ValueError(f"{name} has only {len(text.strip())} characters; a model needs at least a few "
                             f"thousand to learn anything. Upload a longer text.")
        return name, text
    raise ValueError(f"Unknown corpus {corpus!r}; choose one of: {', '.join(CORPUS_CHOICES)}.")


def make_tokenizer(choice: str, text: str):
    """GPT-2's vocabulary, or a 4,096-token BPE trained on the text itself (a few seconds for 5 MB)."""
    if choice not in TOKENIZER_SPECS:
        raise ValueError(f"Unknown tokenizer {choice!r}; choose one of: {', '.join(TOKENIZER_CHOICES)}.")
    return tokenizer_spec(TOKENIZER_SPECS[choice], text)


def prepare_corpus(corpus: str, upload: str | None, tokenizer_choice: str) -> Corpus:
    """Read, tokenize and split a corpus (first 90% train, last 10% validation); the last few are cached.

    The tokenizer and the ids depend only on the text and the tokenizer choice, so they are computed once per
    text: kept in memory, and for the packaged texts also on disk (``cached_tokens``), so that a restarted
    server does not train the 4,096-token BPE again.
    """
    name, text = read_corpus(corpus, upload)
    text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    key = (name, text_hash, tokenizer_choice)
    with _corpora_lock:
        if key in _corpora:
            _corpora.move_to_end(key)
            return _corpora[key]
    folder = cache_dir() / "corpora" / f"{text_hash[:24]}-{TOKENIZER_SPECS[tokenizer_choice].replace(':', '')}"
    on_disk = corpus in (SHAKESPEARE, VERDICT)  # uploads stay in memory only
    tokenizer, ids = cached_tokens(folder, tokenizer_choice) if on_disk else (None, None)
    if ids is None:
        tokenizer = make_tokenizer(tokenizer_choice, text)
        ids = torch.tensor(encode_corpus(tokenizer, text), dtype=torch.long)
        if on_disk:
            keep_tokens(folder, tokenizer_choice, tokenizer, ids)
    split = int(len(ids) * (1 - VAL_FRACTION))
    prepared = Corpus(name, tokenizer, ids[:split], ids[split:])
    with _corpora_lock:
        _corpora[key] = prepared
        while len(_corpora) > 4:
            _corpora.popitem(last=False)
    return prepared


def cached_tokens(folder: Path, tokenizer_choice: str) -> tuple[object, torch.Tensor | None]:
    """(tokenizer, ids) kept by ``keep_tokens``, or (None, None) when there are none (or they cannot be read)."""
    try:
        ids = torch.from_numpy(np.load(folder / "ids.npy").astype(np.int64))
        if tokenizer_choice == BPE_4096:
            return BPETokenizer.load(folder / "lab_tokenizer.json"), ids
        return make_tokenizer(tokenizer_choice, ""), ids
    except (OSError, ValueError):
        return None, None


def keep_tokens(folder: Path, tokenizer_choice: str, tokenizer, ids: torch.Tensor) -> None:
    """Save a text's tokenizer and ids (uint16: every id is below 65,536); a disk that refuses is no error."""
    def save_ids(tmp: str) -> None:
        with open(tmp, "wb") as file:
            np.save(file, ids.numpy().astype(np.uint16))

    try:
        folder.mkdir(parents=True, exist_ok=True)
        if tokenizer_choice == BPE_4096:
            write_atomically(folder / "lab_tokenizer.json", tokenizer.save)
        write_atomically(folder / "ids.npy", save_ids)  # written last: its presence means both are complete
    except OSError:
        pass


def check_fits(corpus: Corpus, context_length: int, batch_size: int) -> None:
    """Refuse a context or batch the text cannot fill: at least one batch of training windows, one val window."""
    def n_windows(n_tokens: int) -> int:  # non-overlapping windows of context_length (+1 for the last target)
        return len(window_starts(n_tokens, context_length, context_length)) if n_tokens > context_length else 0

    n_train, n_val = n_windows(len(corpus.train_ids)), n_windows(len(corpus.val_ids))
    if n_val == 0:
        raise ValueError(
            f"The context length ({context_length} tokens) is longer than the validation part of {corpus.name} "
            f"({len(corpus.val_ids):,} tokens, the last 10% of the text). Use a shorter context or a longer text.")
    if n_train < batch_size:
        raise ValueError(
            f"{corpus.name} gives only {n_train} training windows of {context_length} tokens, fewer than one batch "
            f"of {batch_size}. Use a smaller batch size or context length, or a longer text.")


# ---------------------------------------------------------------------------------------------------------------
# Settings: checked and explained before anything runs
# ---------------------------------------------------------------------------------------------------------------


def whole_number(value, what: str, minimum: int, maximum: int | None = None) -> int:
    """A whole number from a number box, or a plain ValueError.

    >>> whole_number(8.0, "The batch size", 1)
    8
    """
    return number_input(value, what, minimum=minimum, maximum=maximum, whole=True)


def model_config(preset: str, vocab_size: int, context_length: int) -> GPTConfig:
    """The preset's shape with the tokenizer's vocabulary and the chosen context, built as the book's chapter 4
    model (PyTorch's own init, an untied output head, no qkv bias), with no dropout for short runs."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"Unknown model size {preset!r}; choose one of: {', '.join(PRESET_NAMES)}.")
    return GPTConfig.preset(preset, vocab_size=vocab_size, context_length=context_length, drop_rate=0.0,
                            init="pytorch", tie_weights=False, qkv_bias=False)


def cpu_peak(threads: int | None = None) -> float:
    """This server's CPU peak for one run: a matmul on the run's threads (``threads``, else the count a run
    would get now), in the dtype its matmuls use (``gpt_core.device.cpu_peak_flops``, measured once per count
    when the tab is built, then cached)."""
    dtype = training_autocast_dtype(torch.device("cpu"), "auto") or torch.float32
    return cpu_peak_flops(threads or run_threads(), dtype)


def measure_cpu_peaks() -> None:
    """Measure the CPU peak once, now, on a quiet server, for a shared run and a lone run: the yardstick of CPU runs'
    MFU and of the time estimates. In a thread of its own that then ends: a thread that ran torch on several
    threads keeps an OpenMP team, and a second team slowed a lone run's steps by a third (bench/pretrain_demo.py)."""
    measuring = threading.Thread(target=lambda: [cpu_peak(n) for n in {shared_threads(), lone_run_threads()}],
                                 name="cpu-peak")
    measuring.start()
    measuring.join()


def tokens_per_second_guess(cfg: GPTConfig, context_length: int, device: torch.device) -> float:
    """A rough training speed: the FLOP/s the device reaches on a small model, over the FLOPs per token."""
    if device.type == "cuda":
        reached = (peak_flops(device) or 50e12) * GPU_SHARE_OF_PEAK  # an unknown GPU: guess 50 TFLOP/s
    elif device.type == "mps":
        reached = MPS_FLOPS
    else:
        reached = cpu_peak() * CPU_SHARE_OF_PEAK
    return reached / flops_per_token(cfg, context_length)


def device_words(device: torch.device) -> str:
    """The device a run trains on, in words: 'CPU, 1 thread' (the threads one run gets), 'NVIDIA H100'."""
    return device_in_words(device, run_threads())


def duration_words(seconds: float) -> str:
    """A duration as a student reads it.

    >>> duration_words(44.6), duration_words(150), duration_words(10_980)
    ('45 s', '2 min 30 s', '3 h 03 min')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def settings_summary(preset: str, tokenizer_choice: str, steps, batch_size, context_length) -> str:
    """Parameters, training memory and a rough time on this server's device; a bad setting gives its message."""
    try:
        return _settings_summary(preset, tokenizer_choice, steps, batch_size, context_length)
    except ValueError as error:
        return f"⚠ {error}"


def _settings_summary(preset: str, tokenizer_choice: str, steps, batch_size, context_length) -> str:
    vocab_size = 50257 if tokenizer_choice == GPT2_VOCAB else 4096
    context_length = whole_number(context_length, "The context length", 1, MAX_CONTEXT)
    batch_size = whole_number(batch_size, "The batch size", 1, 512)
    steps = whole_number(steps, "The number of steps", 1)
    steps_run, _ = job_manager().clamp_steps(steps)
    cfg = model_config(preset, vocab_size, context_length)
    n_params = sum(count for _, count in parameter_breakdown(cfg))
    memory = estimate_memory(cfg, training=True, batch_size=batch_size, context_length=context_length)["total"]
    device = pick_device("auto")
    step_s = batch_size * context_length / tokens_per_second_guess(cfg, context_length, device)
    cap_s = job_manager().max_minutes_cap * 60
    timing = f"roughly **{duration_words(steps_run * step_s)}** for {steps_run:,} steps on {device_words(device)}"
    if steps_run * step_s > cap_s:
        timing += (f", but **this server stops runs after {job_manager().max_minutes_cap:g} minutes: about "
                   f"{int(cap_s / step_s):,} of {steps_run:,} steps**")
    return (f"**{preset}**: {cfg.n_layers} layers × {cfg.emb_dim} wide, {cfg.n_heads} heads · "
            f"**{n_params:,} parameters** · about **{human_size(memory)}** of memory to train · {timing} "
            f"({batch_size * context_length:,} tokens per step; a guess from FLOPs, the run shows the real speed)")


@dataclass
class PretrainRun:
    """What the tab keeps about a run it started (the job manager keeps the events)."""

    job_id: str
    config: TrainConfig
    model_cfg: GPTConfig
    corpus: Corpus
    out_dir: str
    schedule: list[float]
    preset: str = CLASSROOM_PRESET
    choices: tuple = ()  # (corpus, tokenizer) as picked on the page, for "repeat with one change"
    base: tuple = ()  # the settings before any switch: a run with the same base and no switch is the baseline
    prediction: str | None = None
    record: RunRecord | None = None


def folder_bytes(folder: str | Path) -> int:
    """The disk space a run folder takes (its checkpoints and the download zip)."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def delete_run_files(run: PretrainRun) -> None:
    shutil.rmtree(run.out_dir, ignore_errors=True)


RUNS = register_store(BudgetStore("pretraining run", KEPT_RUNS, RUNS_DISK_BYTES, on_evict=delete_run_files))


def keep_run(owner: str, run: PretrainRun) -> None:
    """Remember a run for its owner; it is never evicted while it is queued or running."""
    RUNS.put(owner, run.job_id, run, busy=lambda: job_manager().is_active(run.job_id))


def run_of(owner: str, job_id: str) -> PretrainRun:
    """This owner's run (a clear message when it was cleared to make room)."""
    return RUNS.get(owner, job_id)


def run_settings(run: PretrainRun) -> dict[str, str]:
    """A run's settings in words, one row of the side-by-side table each."""
    cfg, config = run.model_cfg, run.config
    return {
        "model": f"{run.preset}: {cfg.n_layers} layers × {cfg.emb_dim} wide",
        "heads per layer": str(cfg.n_heads),
        "text": run.corpus.name,
        "tokenizer": f"{cfg.vocab_size:,} tokens",
        "steps": f"{config.max_steps:,}",
        "batch × context": f"{config.batch_size} × {config.context_length}",
        "peak learning rate": f"{config.lr:g}",
        "warm-up steps": f"{config.warmup_steps:,}",
        "schedule": config.schedule,
        "weight decay": f"{config.weight_decay:g}",
        "gradient clipping": f"norm {config.grad_clip:g}" if config.grad_clip else "off",
        "dropout": f"{cfg.drop_rate:g}",
        "causal mask": "on" if cfg.causal_mask else "off",
        "position embedding": "yes" if cfg.pos_embedding else "no",
        "shortcuts (residual)": "yes" if cfg.residual else "no",
        "LayerNorm": {"pre": "before each sublayer", "post": "after each shortcut", "none": "none"}[cfg.norm],
        "activation": cfg.activation.upper(),
        "output head": "tied to the embedding" if cfg.tie_weights else "its own matrix",
    }


def runs_of(owner: str) -> list[PretrainRun]:
    """This page's runs that the server still keeps, oldest first, each record brought up to date."""
    runs = sorted((run for run in RUNS.items_of(owner) if run.record is not None), key=lambda run: run.record.number)
    for run in runs:
        if run.record.running:
            try:
                run.record.fold(job_manager().poll(run.job_id, owner, run.record.since))
            except ValueError:  # the job manager no longer has it: keep what was folded
                run.record.status = "stopped"
    return runs


def next_run_number(owner: str) -> int:
    return max((run.record.number for run in RUNS.items_of(owner) if run.record is not None), default=0) + 1


def baseline_of(owner: str, run: PretrainRun) -> tuple[str, float] | None:
    """(which run, its val loss): this page's newest finished run with the same settings and no switch; for the
    default settings, the measured default until there is one."""
    for other in reversed(runs_of(owner)):
        record = other.record
        if (other is not run and not record.ablations and other.base == run.base and not record.running
                and record.final_val is not None):
            return record.label, record.final_val
    if run.base == default_base():
        return "the default settings with no switch (measured)", DEFAULT_VAL_LOSS
    return None


def default_base() -> tuple:
    return (CLASSROOM_PRESET, "Shakespeare", BPE_4096, CLASSROOM_STEPS, CLASSROOM_BATCH, CLASSROOM_CONTEXT,
            CLASSROOM_LR, CLASSROOM_WARMUP)


def pretrain_config(steps: int, batch_size: int, context_length: int, lr: float, warmup: int,
                    sample_prompt: str, corpus: Corpus, out_dir: str) -> TrainConfig:
    """The TrainConfig of a tab run: about 10 evaluations and 8 samples, and checkpoints to keep the last good one."""
    return TrainConfig(
        lr=lr, warmup_steps=warmup, max_steps=steps, batch_size=batch_size, context_length=context_length,
        betas=BETAS, eval_every=max(1, steps // 10), eval_batches=EVAL_BATCHES, sample_every=max(1, steps // 8),
        sample_tokens=SAMPLE_TOKENS, sample_prompt=sample_prompt, checkpoint_every=max(10, steps // 4),
        keep_checkpoints=1, out_dir=out_dir, tokenizer=corpus.tokenizer, log_every=1, seed=SEED,
        snapshot_steps=tuple(snapshot_steps(steps)),  # the insides at steps 0, 10, 30, 100, 300, 1000
    )


# ---------------------------------------------------------------------------------------------------------------
# The plan: what the tab shows before Start (built once from the defaults, so opening the page costs nothing)
# ---------------------------------------------------------------------------------------------------------------


def plan_figure(steps: int, lr: float, warmup: int):
    """The planned learning rate of every step, under a loss plot that fills in once the run starts."""
    config = TrainConfig(lr=lr, warmup_steps=min(warmup, steps), max_steps=steps)
    return training_figure([], [], steps, lr_schedule(config),
                           title="the plan: the learning rate of every step (the losses appear after Start)")


def plan_batch(corpus: Corpus, batch_size: int, context_length: int, shown: int = WINDOWS_SHOWN) -> str:
    """The first windows of the first batch a run with these settings trains on (the same seed, the same order)."""
    train_set = as_dataset(corpus.train_ids, context_length, "training")
    inputs, _ = BatchStream(train_set, batch_size, SEED, n_eval=1).next_batch()  # (batch_size, context_length)
    token_bytes = corpus.tokenizer.token_bytes
    windows = [[(token_id, token_bytes(token_id)) for token_id in row] for row in inputs[:shown].tolist()]
    intro = (f"<p><b>What the model reads.</b> Each step is one batch of {batch_size} windows of {context_length} "
             f"tokens, picked at random from the training text ({len(corpus.train_ids):,} tokens of "
             f"{html.escape(corpus.name)}). At every position the model predicts the next token, so one batch holds "
             f"{batch_size} × {context_length} = {batch_size * context_length:,} predictions to score. The first "
             f"{min(shown, batch_size)} windows of the first batch:</p>")
    return intro + batch_html(windows, batch_size, context_length)


def prepared_corpus(corpus_choice: str, tokenizer_choice: str) -> Corpus | None:
    """A packaged corpus already prepared (by the plan or a run), without preparing it; else None."""
    names = {SHAKESPEARE: "Shakespeare", VERDICT: "The Verdict"}
    with _corpora_lock:
        return next((corpus for (name, _, choice), corpus in reversed(_corpora.items())
                     if name == names.get(corpus_choice) and choice == tokenizer_choice), None)


def plan_views(corpus_choice: str, tokenizer_choice: str, steps, batch_size, context_length, lr, warmup,
               history: RunHistory | None):
    """The plan for the settings on screen (schedule, batch), until this page starts a run."""
    if history is not None:
        return gr.skip(), gr.skip()
    try:
        steps, _ = job_manager().clamp_steps(whole_number(steps, "The number of steps", 1))
        figure = plan_figure(steps, learning_rate(lr), min(whole_number(warmup, "The number of warm-up steps", 0), steps))
    except ValueError:
        figure = gr.skip()
    corpus = prepared_corpus(corpus_choice, tokenizer_choice)
    try:
        batch_size = whole_number(batch_size, "The batch size", 1, 512)
        context_length = whole_number(context_length, "The context length", 2, MAX_CONTEXT)
        if corpus is None:
            return figure, ("<p class='lab-note'>The text is tokenized when you press Start; its first batch "
                            "is shown here for the packaged texts once they are prepared.</p>")
        check_fits(corpus, context_length, batch_size)
        return figure, plan_batch(corpus, batch_size, context_length)
    except ValueError as error:
        return figure, f"<p class='lab-note'>⚠ {error}</p>"


def pretrain_job(run: PretrainRun):
    """The function the job manager runs in its thread: build the model, then stream train(...)'s events."""
    if on_zero_gpu():  # a ZeroGPU Space lends its GPU one call at a time: the run trains in chunks (ui.zerogpu)
        return chunked_job(partial(seeded_model, run.model_cfg, run.config.seed), run.corpus.train_ids,
                           run.corpus.val_ids, run.config)

    def job(stop: threading.Event) -> Iterator:
        pin_torch_threads()
        torch.manual_seed(run.config.seed)
        model = speed_up_for_training(GPTModel(run.model_cfg), pick_device(run.config.device))
        yield from sharing_cores(train(model, run.corpus.train_ids, run.corpus.val_ids, run.config, stop=stop))

    return job


# ---------------------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------------------


RUN = RunTab(JOB_LABEL, "pretraining run", n_views=10, stopping="Stopping after the current step (a final "
              "checkpoint is written)…", busy="Your run is still going: press Stop first, or wait until it finishes.")


def start_run(preset: str, corpus_choice: str, upload: str | None, tokenizer_choice: str, steps, batch_size,
              context_length, lr, warmup, sample_prompt: str, history: RunHistory | None, browser_id: str | None,
              ablations: list[str] | None = None, prediction: str | None = NO_PREDICTION,
              request: gr.Request = None):
    """Check the settings, prepare the text, and queue a run for this browser; the timer then follows it.

    ``ablations``: switches of gpt_core.ablations (at most 4), ``prediction``: the student's guess of their effect.
    Outputs: status, stats, figure, samples, checkpoint file, verdict, the comparison's plot, table and run menu,
    note, history, timer (the views are cleared).
    """
    owner = RUN.owner_for_start(history, browser_id, request)
    ablations, prediction = check_ablations(ablations), check_prediction(prediction)
    batch_size = whole_number(batch_size, "The batch size", 1, 512)
    context_length = whole_number(context_length, "The context length", 2, MAX_CONTEXT)
    steps = whole_number(steps, "The number of steps", 1)
    warmup = whole_number(warmup, "The number of warm-up steps", 0)
    lr = learning_rate(lr)
    steps, note = job_manager().clamp_steps(steps)
    if note:
        gr.Warning(note)
    warmup = min(warmup, steps)
    sample_prompt = (sample_prompt or "").strip()[:200] or "ROMEO:"
    corpus = prepare_corpus(corpus_choice, upload, tokenizer_choice)
    check_fits(corpus, context_length, batch_size)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    out_dir = tempfile.mkdtemp(prefix="pretrain_", dir=RUNS_DIR)
    config = pretrain_config(steps, batch_size, context_length, lr, warmup, sample_prompt, corpus, out_dir)
    model_cfg = model_config(preset, corpus.tokenizer.vocab_size, context_length)
    model_cfg, config, already_so = apply_ablations(ablations, model_cfg, config)
    if already_so:
        gr.Warning(explain_ablations(already_so, already_so).split("\n")[-1].strip("-* "))
    ablations = tuple(name for name in ablations if name not in already_so)
    base = (preset, corpus.name, tokenizer_choice, steps, batch_size, context_length, lr, warmup)
    run = PretrainRun("", config, model_cfg, corpus, out_dir, lr_schedule(config), preset,
                      (corpus_choice, tokenizer_choice), base, prediction)
    record = RunRecord("", next_run_number(owner), ablations, run_settings(run))
    history = RUN.start(owner, pretrain_job(run), f"{preset} on {corpus.name}", max_steps=steps, start_note=note)
    run.job_id = record.job_id = history.job_id
    run.record = record
    keep_run(owner, run)
    switches = f", {record.label.split(' · ')[1]}" if ablations else ""
    started = (f"Started **run {record.number}{switches}**: {preset} on {corpus.name} ({len(corpus.train_ids):,} "
               f"training tokens, vocabulary {corpus.tokenizer.vocab_size:,}) as {run.job_id}.")
    empty_plot = run_figure(history, False, run)  # the planned schedule, before the first step
    no_file = gr.File(value=None, visible=False)
    return (with_note(started, note), "", empty_plot, samples_html([], sample_prompt), no_file, "",
            *compare_views(owner, "step", False), *SnapshotSection.refresh(history), "", history,
            gr.Timer(active=True))


def start_run_api(preset: str, corpus_choice: str, upload: str | None, tokenizer_choice: str, steps, batch_size,
                  context_length, lr, warmup, sample_prompt: str, history: RunHistory | None, browser_id: str | None,
                  request: gr.Request = None):
    """Start pretraining a fresh GPT model in the background and return at once (poll it with pretrain_poll).

    Scripts that want one call use pretrain_run instead.

    Args:
        preset: model size, one of the presets (nano, micro, classroom, ...).
        corpus_choice: the text to learn from (the packaged Shakespeare, or an uploaded .txt file).
        upload: the uploaded .txt file when corpus_choice is the upload, else None.
        tokenizer_choice: the tokenizer the text is cut into tokens with.
        steps: optimizer steps (lowered to the server's cap).
        batch_size: windows per step (1 to 512).
        context_length: tokens per window.
        lr: peak learning rate.
        warmup: warm-up steps.
        sample_prompt: the prompt the model continues while it trains.
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The status line, speed stats, the loss figure, samples, the checkpoint file (empty until the run ends),
        a note and the poll timer.
    """
    outputs = start_run(preset, corpus_choice, upload, tokenizer_choice, steps, batch_size, context_length, lr,
                        warmup, sample_prompt, history, browser_id, None, NO_PREDICTION, request)
    return (*outputs[:5], *outputs[-3:])


def pretrain_run(preset: str, corpus_choice: str, upload: str | None, tokenizer_choice: str, steps, batch_size,
                 context_length, lr, warmup, sample_prompt: str, ablations: list[str] | None = None,
                 request: gr.Request = None):
    """Pretrain a fresh GPT model from random weights and wait until the run ends (for scripts and agents).

    The run goes through the server's job queue and caps: steps above the server's cap are lowered, and a run
    still going after the server's minutes per run (plus as long again in the queue) is stopped. It belongs to
    the caller's session, so no browser state is needed.

    Args:
        preset: model size, one of the presets (nano, micro, classroom, ...).
        corpus_choice: the text to learn from (the packaged Shakespeare, or an uploaded .txt file).
        upload: the uploaded .txt file when corpus_choice is the upload, else None.
        tokenizer_choice: the tokenizer the text is cut into tokens with.
        steps: optimizer steps (at most the server's cap).
        batch_size: windows per step (1 to 512).
        context_length: tokens per window.
        lr: peak learning rate (warm-up then cosine decay).
        warmup: warm-up steps.
        sample_prompt: the prompt the model continues while it trains.
        ablations: switches of the experiment (change one thing per run), or none.

    Returns:
        A summary dict (job id, status, steps, final train and validation loss, tokens per second, seconds, settings)
        and the final checkpoint as a zip file (model.safetensors, config.json, lab_tokenizer.json).
    """
    clock = Stopwatch()
    outputs = start_run(preset, corpus_choice, upload, tokenizer_choice, steps, batch_size, context_length, lr,
                        warmup, sample_prompt, None, None, ablations, NO_PREDICTION, request)
    history = outputs[-2]
    owner = owner_of(None, request)
    history = wait_for_run(owner, history)
    run = run_of(owner, history.job_id)
    zip_path = checkpoint_zip(history) if history.status != "failed" else None
    if zip_path:
        RUNS.resize(owner, run.job_id, folder_bytes(run.out_dir))
    if history.status == "failed":
        raise ValueError(f"The run failed: {history.error}")
    config = run.config
    settings = {"preset": run.preset, "corpus": run.corpus.name, "vocab_size": run.model_cfg.vocab_size,
                "steps": config.max_steps, "batch_size": config.batch_size, "context_length": config.context_length,
                "lr": config.lr, "warmup_steps": config.warmup_steps,
                "ablations": list(run.record.ablations) if run.record else [], "in_words": run_settings(run)}
    return run_summary(history, clock.seconds, settings), zip_path


def poll_run_api(log_scale: bool, history: RunHistory | None, browser_id: str | None, request: gr.Request = None):
    """Follow this session's pretraining run: its status, speed, loss curves, samples and, once it ends, its checkpoint.

    Args:
        log_scale: draw the loss on a log-scale axis.
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The status line (Markdown), speed stats (Markdown), the loss figure, samples (HTML), the checkpoint zip
        once the run has ended, and the poll timer (inactive once the run has ended).
    """
    outputs = poll_run(log_scale, history, browser_id, request=request)
    return (*outputs[:5], *outputs[-2:])


def stop_run(history: RunHistory | None, browser_id: str | None, request: gr.Request = None) -> str:
    """Stop this session's pretraining run after its current step (it still writes a final checkpoint).

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A line saying whether a run was stopped.
    """
    return RUN.stop(history, browser_id, request)


def run_stem(run: PretrainRun, what: str) -> str:
    """A download's file name: llm-lab-pretrain-run-2-nano-no-causal-mask-loss."""
    record = run.record
    number = f"run-{record.number}" if record else run.job_id
    return safe_file_stem("llm-lab-pretrain", number, run.preset, *(record.ablations if record else ()), what)


def run_figure(history: RunHistory, log_scale: bool, run: PretrainRun):
    figure = training_figure(history.step_losses, history.evals, len(run.schedule), run.schedule, history.step,
                             bool(log_scale))
    return plot_value(figure, config=png_config(run_stem(run, "loss")))  # the camera button saves a named PNG


def run_stats(history: RunHistory, model_flops_per_token: float) -> str:
    """Speed, MFU, time left and tokens seen. A GPU's MFU comes from the engine (its data-sheet peak); a CPU
    run's is measured against this server's matmul peak (``cpu_peak``). An MFU that cannot be right (a peak
    measured while the machine was busy) or a device without a known peak shows none."""
    eta = 0.0 if history.done else history.eta_s
    device = torch.device(history.device) if history.device else None
    mfu, peak = history.mfu, "the GPU's peak FLOP/s"
    if device is not None and device.type == "cpu" and history.tokens_per_s:
        mfu, peak = model_flops_per_token * history.tokens_per_s / cpu_peak(), "this CPU's measured matmul peak"
    if mfu is not None and not 0 < mfu <= 1:
        mfu = None
    return stats_markdown(history.tokens_per_s, mfu, eta, history.tokens_seen,
                          device_words(device) if device is not None else None, peak=peak)


def checkpoint_zip(history: RunHistory) -> str | None:
    """A zip of the final checkpoint (model.safetensors, config.json, lab_tokenizer.json), made once per run."""
    if not history.checkpoint:
        return None
    folder = Path(history.checkpoint)
    target = folder.parent / f"{history.job_id}-step{history.step}.zip"
    if not target.exists():
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in ("model.safetensors", "config.json", "lab_tokenizer.json"):
                if (folder / name).exists():
                    archive.write(folder / name, arcname=name)
    return str(target)


def run_status(history: RunHistory, view: JobView) -> str:
    named = replace(history, device=device_words(torch.device(history.device))) if history.device else history
    status = named.status_line(view, show_eta=False,  # the stats line shows the time left
                               preparing="⏳ Starting: building a fresh model with random weights…")
    if view.done and history.checkpoint:
        status += "\n\nThe checkpoint is ready: download it below, or press **Use this model in the explorer**."
    return status


def run_views(history: RunHistory, view: JobView, owner: str, log_scale: bool, compare_x: str = "step",
              compare_log: bool = False, snapshot_index: float | None = None,
              snapshots_known: int | None = None) -> tuple:
    """Stats, figure, samples; once the run has ended also the checkpoint's zip, the experiment's verdict and
    the comparison with this page's other runs."""
    run = run_of(owner, history.job_id)
    download = gr.skip()
    if view.done:
        zip_path = checkpoint_zip(history)
        download = gr.File(value=zip_path, visible=True) if zip_path else gr.skip()
        RUNS.resize(owner, run.job_id, folder_bytes(run.out_dir))  # the finished folder's real size, zip included
    model_flops = flops_per_token(run.model_cfg, run.config.context_length)
    compared = (gr.skip(),) * 4
    if view.done:
        compared = (run_verdict(owner, run, history), *compare_views(owner, compare_x, compare_log))
    return (run_stats(history, model_flops), run_figure(history, log_scale, run),
            samples_html(history.samples, run.config.sample_prompt, N_SAMPLES_SHOWN), download, *compared,
            *SnapshotSection.refresh(history, snapshot_index, snapshots_known))


def run_verdict(owner: str, run: PretrainRun, history: RunHistory) -> str:
    """The end of an experiment: the prediction beside the val loss against the unchanged run."""
    record = run.record
    if record is None or not record.ablations:
        return ""
    baseline = baseline_of(owner, run)  # (which brings this run's record up to date too)
    val = record.final_val if history.reason != "nan" else float("nan")
    text = verdict(record.ablations, run.prediction, val, baseline, record.first_loss)
    if "no-causal-mask" in record.ablations and history.checkpoint and history.reason != "nan":
        text += (f"\n\n**With the mask put back**, as when the model writes text and the next token is not there "
                 f"yet: val loss **{loss_with_mask_back(run, history.checkpoint):.3f}** (a model that knows nothing "
                 f"scores ln({run.model_cfg.vocab_size:,}) = {math.log(run.model_cfg.vocab_size):.2f}). The samples "
                 f"above show the same thing.")
    return text


def loss_with_mask_back(run: PretrainRun, checkpoint: str) -> float:
    """The val loss of a run trained without the causal mask, on its own evaluation batches, with the mask on."""
    model = put_causal_mask_back(load_checkpoint(checkpoint))
    val_set = as_dataset(run.corpus.val_ids, run.config.context_length, "validation")
    batches = fixed_batches(val_set, run.config.batch_size, run.config.eval_batches)
    return evaluate(model, batches, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------------------
# Runs side by side
# ---------------------------------------------------------------------------------------------------------------


def compare_views(owner: str, x_axis: str, log_scale: bool) -> tuple:
    """This page's newest runs overlaid on one plot, their settings side by side, and the menu of runs."""
    if x_axis not in X_AXES:
        raise ValueError(f"Unknown x axis {str(x_axis)[:40]!r}; choose one of: {', '.join(X_AXES)}.")
    runs = runs_of(owner)[-MAX_COMPARED:]
    records = [run.record for run in runs]
    figure = compare_figure([record.curve for record in records], x_axis, bool(log_scale))
    stem = safe_file_stem("llm-lab-pretrain-runs", *(str(record.number) for record in records))
    plot = plot_value(figure, config=png_config(stem))
    if not records:
        table = "<p class='lab-note'>Your runs appear here, side by side, as soon as you start one.</p>"
    else:
        table = settings_table_html([record.settings for record in records], [record.label for record in records],
                                    [record.results() for record in records])
    choices = [(record.label, record.job_id) for record in reversed(records)]
    menu = gr.update(choices=choices, value=choices[0][1] if choices else None)
    return plot, table, menu


def redraw_comparison(x_axis: str, log_scale: bool, browser_id: str | None = None, request: gr.Request = None):
    """Compare this session's pretraining runs: their loss curves in one plot and their settings side by side.

    Args:
        x_axis: what the plot's x axis counts (step, tokens seen or seconds).
        log_scale: draw the loss on a log-scale axis.
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The comparison figure, the settings table (HTML) and the menu of runs to repeat.
    """
    return compare_views(owner_of(browser_id, request), x_axis, log_scale)


def download_comparison(x_axis: str, log_scale: bool, browser_id: str | None = None, request: gr.Request = None):
    """Download this session's pretraining runs: every run's losses as CSV and the comparison plot as an HTML page.

    Args:
        x_axis: what the plot's x axis counts (step, tokens seen or seconds).
        log_scale: draw the loss on a log-scale axis.
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        Two files: the losses as CSV and the plot as a page that opens offline.
    """
    runs = runs_of(owner_of(browser_id, request))[-MAX_COMPARED:]
    if not runs:
        raise ValueError("There is no run to download yet: start one first.")
    curves = [run.record.curve for run in runs]
    stem = safe_file_stem("llm-lab-pretrain-runs", *(str(run.record.number) for run in runs))
    figure = compare_figure(curves, x_axis if x_axis in X_AXES else "step", bool(log_scale))
    return [csv_file(runs_csv(curves), stem), figure_html_file(figure, stem)]


def repeat_with_one_change(job_id: str | None, browser_id: str | None = None, request: gr.Request = None):
    """Put one of this session's pretraining runs' settings back on the page, ready for one change and Start.

    Args:
        job_id: the run's job id (from the runs menu or a run summary).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The run's settings (preset, text, tokenizer, steps, batch size, context, learning rate, warm-up, sample
        prompt, switches, prediction) and a note.
    """
    if not job_id:
        raise ValueError("Pick one of your runs first (start one if the menu is empty).")
    run = run_of(owner_of(browser_id, request), str(job_id)[:64])
    config, (corpus_choice, tokenizer_choice) = run.config, run.choices
    note = (f"The settings of **{run.record.label}** are back above. Change **one** thing (a setting or a "
            f"switch), predict, and press Start: the two runs then differ by exactly that.")
    if corpus_choice == UPLOAD:
        note += " Upload your text again first."
    return (run.preset, corpus_choice, tokenizer_choice, config.max_steps, config.batch_size, config.context_length,
            config.lr, config.warmup_steps, config.sample_prompt, list(run.record.ablations), NO_PREDICTION, note)


def export_for_transformers(history: RunHistory | None, browser_id: str | None = None, request: gr.Request = None):
    """Export the finished pretraining run as a zipped Hugging Face folder that transformers loads.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The zip file (config.json, model.safetensors, tokenizer.json) and a note on loading it with
        GPT2LMHeadModel.from_pretrained and AutoTokenizer.from_pretrained.
    """
    if history is None or not history.checkpoint:
        raise ValueError("There is no checkpoint yet: start a run and wait until it has written one.")
    if history.running:
        raise ValueError("The run is still going: stop it or wait until it finishes, then export it.")
    run = run_of(owner_of(browser_id, request), history.job_id)
    folder = Path(history.checkpoint).parent / f"{run_stem(run, 'hf')}-step{history.step}"
    target = folder.with_suffix(".zip")
    if not target.exists():
        export_run(history.checkpoint, folder)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                archive.write(path, arcname=f"{folder.name}/{path.name}")
        shutil.rmtree(folder, ignore_errors=True)
        RUNS.resize(owner_of(browser_id, request), run.job_id, folder_bytes(run.out_dir))
    note = (f"Unzip it and load it with `GPT2LMHeadModel.from_pretrained(\"{folder.name}\")` and "
            f"`AutoTokenizer.from_pretrained(\"{folder.name}\")` (transformers).")
    return gr.File(value=str(target), visible=True), note


def poll_run(log_scale: bool, history: RunHistory | None, browser_id: str | None, compare_x: str = "step",
             compare_log: bool = False, snapshot_index: float | None = None, snapshots_known: int | None = None,
             request: gr.Request = None):
    """Fetch the events since the last poll and redraw; the timer stops when the run has finished.

    Outputs: status, stats, figure, samples, checkpoint file, history, timer. Nothing is redrawn when no
    new event arrived, so a poll costs the training thread almost nothing.
    """
    return RUN.poll(history, browser_id, request, run_status,
                    lambda history, view, owner: run_views(history, view, owner, log_scale, compare_x, compare_log,
                                                           snapshot_index, snapshots_known))


def redraw(log_scale: bool, history: RunHistory | None, browser_id: str | None = None, request: gr.Request = None):
    """Switch between linear and log loss axes without waiting for the next poll."""
    if history is None:
        return gr.skip()
    return run_figure(history, log_scale, run_of(owner_of(browser_id, request), history.job_id))


def use_in_explorer(history: RunHistory | None, browser_id: str | None = None, request: gr.Request = None):
    """Load the finished pretraining run's checkpoint as the model of Inside GPT, Generate, Classify and Instruct.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The model menu's new choice (the run's model) and a note.
    """
    if history is None or not history.checkpoint:
        raise ValueError("There is no checkpoint yet: start a run and wait until it has written one.")
    if history.running:
        raise ValueError("The run is still going: stop it or wait until it finishes, then use it.")
    owner = owner_of(browser_id, request)
    run = run_of(owner, history.job_id)
    model = load_checkpoint(history.checkpoint)
    label = f"Your pretrain run · {history.job_id} ({run.model_cfg.n_layers}×{run.model_cfg.emb_dim}, " \
            f"step {history.step}, {run.corpus.name})"
    note = (f"Pretrained in the Pretrain tab for {history.step} steps on {run.corpus.name} "
            f"(tokenizer with {run.corpus.tokenizer.vocab_size:,} ids).")
    models.register_model(label, model, run.corpus.tokenizer, note)
    message = f"**{label}** is now the model of the Inside GPT and Generate tabs."
    return gr.update(choices=models.choice_labels(), value=label), message


reattach = RUN.reattach  # on page load: follow this browser's pretraining run again


def preset_context(preset: str):
    """Moving to another model size sets the context length to that preset's."""
    return gr.update(value=GPTConfig.preset(preset).context_length)


def corpus_upload_visible(corpus: str):
    return gr.update(visible=corpus == UPLOAD)


# ---------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------


def default_plan() -> tuple[object, str]:
    """The plan of the default run (its schedule, its first batch), made once when the tab is built.

    The default text is prepared here, so the first Start does not wait for it (and a restarted server reads
    its tokens from disk); so is torch's optimizer machinery (its first AdamW imports torch._dynamo: 1.6 s).
    """
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    figure = plan_figure(CLASSROOM_STEPS, CLASSROOM_LR, CLASSROOM_WARMUP)
    try:
        corpus = prepare_corpus(SHAKESPEARE, None, BPE_4096)
        return figure, plan_batch(corpus, CLASSROOM_BATCH, CLASSROOM_CONTEXT)
    except (ValueError, OSError) as error:  # the text could not be read: the run will say why
        return figure, f"<p class='lab-note'>⚠ {html.escape(str(error))}</p>"


def build_tab(model_choice: gr.Dropdown) -> None:
    browser_id = browser_id_state()
    measure_cpu_peaks()
    plan_plot, plan_html = default_plan()
    explain(INTRO)
    with gr.Row():
        preset = gr.Dropdown(list(PRESET_NAMES), value=CLASSROOM_PRESET, label="model size (preset)", scale=1)
        corpus = gr.Radio(list(CORPUS_CHOICES), value=SHAKESPEARE, label="text to learn from", scale=2)
        tokenizer = gr.Radio(list(TOKENIZER_CHOICES), value=BPE_4096, label="tokenizer", scale=2)
    upload = gr.File(label=f"your text (.txt, UTF-8, at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB)", file_types=[".txt"],
                     type="filepath", visible=False)
    with gr.Row():
        steps = NumberBox(CLASSROOM_STEPS, label="steps", precision=0, minimum=1, elem_id="pretrain-steps")
        batch_size = NumberBox(CLASSROOM_BATCH, label="batch size", precision=0, elem_id="pretrain-batch")
        context_length = NumberBox(CLASSROOM_CONTEXT, label="context (tokens)", precision=0,
                                   elem_id="pretrain-context")
        lr = NumberBox(CLASSROOM_LR, label="peak learning rate")
        warmup = NumberBox(CLASSROOM_WARMUP, label="warm-up steps", precision=0, minimum=0)
        sample_prompt = gr.Textbox("ROMEO:", label="sample prompt", max_length=200)
    summary = gr.Markdown(settings_summary(CLASSROOM_PRESET, BPE_4096, CLASSROOM_STEPS, CLASSROOM_BATCH,
                                           CLASSROOM_CONTEXT), elem_classes=["lab-note"], elem_id="pretrain-summary")
    with gr.Accordion("Experiment: change one thing, predict, run, compare", open=False,
                      elem_id="pretrain-experiment"):
        explain(EXPERIMENT_INTRO)
        with gr.Row():
            ablations = gr.CheckboxGroup(ablation_choices(), value=[], label="switches (change one thing per run)",
                                         elem_id="pretrain-ablations", scale=3)
            prediction = gr.Radio(prediction_choices(), value=NO_PREDICTION, elem_id="pretrain-prediction",
                                  label="your prediction: the validation loss, against the same run without it",
                                  scale=2)
        ablation_notes = gr.Markdown(explain_ablations([]), elem_id="pretrain-ablation-notes")
    followed("pretrain", {"preset": preset, "corpus": corpus, "tokenizer": tokenizer, "steps": steps,
                         "batch_size": batch_size, "context_length": context_length, "lr": lr, "warmup": warmup,
                         "sample_prompt": sample_prompt, "ablations": ablations})  # class mode
    with gr.Row():
        start = gr.Button("Start pretraining", variant="primary", elem_id="pretrain-start")
        stop = gr.Button("Stop", elem_id="pretrain-stop")
    status = gr.Markdown("Press **Start pretraining**: a fresh, random model learns from the text.",
                         label="status", elem_id="pretrain-status")
    verdict_view = gr.Markdown(label="experiment verdict", elem_id="pretrain-verdict")
    stats = gr.Markdown(label="speed and progress", elem_id="pretrain-stats")
    with gr.Row():
        with gr.Column(scale=3):
            plot = gr.Plot(plan_plot, label="loss curves", show_label=False, elem_id="pretrain-plot")
            log_scale = gr.Checkbox(False, label="log-scale loss axis")
        with gr.Column(scale=2):
            gr.Markdown("**Samples** (greedy, newest first): the same prompt after more and more steps")
            samples = gr.HTML(samples_html([], ""), label="samples", elem_id="pretrain-samples")
    with gr.Accordion("The first batch: what the model reads at step 1", open=True):
        batch_view = gr.HTML(plan_html, label="the first batch", elem_id="pretrain-batch-view")
    with gr.Row():
        download = gr.File(label="checkpoint (model.safetensors + config.json + lab_tokenizer.json)", interactive=False,
                           visible=False, elem_id="pretrain-download")
        with gr.Column():
            use = gr.Button("Use this model in the explorer (Inside GPT, Generate)", elem_id="pretrain-use")
            use_note = gr.Markdown(label="note", elem_classes=["lab-note"])
        with gr.Column():
            export = gr.Button("Export for Hugging Face transformers (.zip)", elem_id="pretrain-export")
            export_file = gr.File(label="Hugging Face folder (config.json, model.safetensors, tokenizer.json)",
                                  interactive=False, visible=False, elem_id="pretrain-export-file")
            export_note = gr.Markdown(label="how to load it", elem_classes=["lab-note"])
    history = gr.State(None)
    snapshots = build_snapshot_section(history, CLASSROOM_STEPS)
    with gr.Accordion("Your runs side by side", open=True, elem_id="pretrain-compare"):
        with gr.Row():
            compare_x = gr.Radio(list(X_AXES), value="step", label="x axis", scale=2)
            compare_log = gr.Checkbox(False, label="log-scale loss axis", scale=1)
            refresh = gr.Button("↻ Refresh", scale=1, size="sm")
        compare_plot, compare_table, repeat_choice = compare_views("", "step", False)
        compare_plot = gr.Plot(compare_plot, label="runs side by side", show_label=False, elem_id="pretrain-compare-plot")
        compare_table = gr.HTML(compare_table, label="settings side by side", elem_id="pretrain-compare-table")
        with gr.Row():
            repeat_choice = gr.Dropdown([], value=None, label="run", scale=2, elem_id="pretrain-repeat-choice")
            repeat = gr.Button("Repeat with one change", scale=1, elem_id="pretrain-repeat")
            download_runs = gr.Button("Download the runs (CSV + plot as HTML)", scale=1)
        repeat_note = gr.Markdown(label="note", elem_classes=["lab-note"])
        runs_files = gr.File(label="downloads", file_count="multiple", interactive=False, visible=False)
    timer = RunTimer(1.0, active=False)
    show_source(training_loop, batch_loss, lr_at, make_optimizer, train)

    settings = [preset, tokenizer, steps, batch_size, context_length]
    for control in settings:
        control.change(friendly(settings_summary), settings, summary, api_name=False, queue=False,
                       show_progress="hidden")
    plan_inputs = [corpus, tokenizer, steps, batch_size, context_length, lr, warmup, history]
    for control in plan_inputs[:-1]:
        control.change(friendly(plan_views), plan_inputs, [plot, batch_view], api_name=False, show_progress="hidden")
    preset.change(preset_context, preset, context_length, api_name=False, queue=False)
    corpus.change(corpus_upload_visible, corpus, upload, api_name=False, queue=False)
    settings_in = [preset, corpus, upload, tokenizer, steps, batch_size, context_length, lr, warmup, sample_prompt,
                   history, browser_id]
    start_out = [status, stats, plot, samples, download, verdict_view, compare_plot, compare_table, repeat_choice,
                 *snapshots.refresh_outputs, use_note, history, timer]
    # The page's own start and poll (switches, prediction, comparison, snapshots): callable, but not listed on
    # the API page or as MCP tools; scripts use /pretrain_start and /pretrain_poll below, or /pretrain_run.
    start.click(friendly(start_run), [*settings_in, ablations, prediction], start_out,
                api_name="pretrain_start_experiment", api_visibility="undocumented", concurrency_limit=4,
                concurrency_id="pretrain-start")
    stop.click(tool(stop_run, "pretrain_stop"), [history, browser_id], status, api_name="pretrain_stop")
    poll_out = [status, stats, plot, samples, download, verdict_view, compare_plot, compare_table, repeat_choice,
                *snapshots.refresh_outputs, history, timer]
    timer.tick(friendly(poll_run), [log_scale, history, browser_id, compare_x, compare_log, snapshots.index,
                                    snapshots.count], poll_out,
               api_name="pretrain_poll_experiment", api_visibility="undocumented", show_progress="hidden",
               concurrency_limit=None)
    # /pretrain_start and /pretrain_poll keep the inputs and outputs scripts have always sent and read: a run with
    # no switch, and the run's own views (the page itself uses the two events above)
    api_only = gr.Button(visible=False)
    api_only.click(tool(start_run_api, "pretrain_start"), settings_in, [*start_out[:5], use_note, history, timer],
                   api_name="pretrain_start", concurrency_limit=4, concurrency_id="pretrain-start")
    api_only.click(tool(poll_run_api, "pretrain_poll"), [log_scale, history, browser_id], [*poll_out[:5], history, timer],
                   api_name="pretrain_poll", show_progress="hidden", concurrency_limit=None)
    # One call for scripts and agents: start, wait until the run ends (within the server's caps), summary + zip.
    run_summary_json = gr.JSON(label="run summary", visible=False)
    run_zip = gr.File(label="checkpoint zip (model.safetensors + config.json + lab_tokenizer.json)", visible=False)
    api_only.click(tool(pretrain_run, "pretrain_run"), [*settings_in[:-2], ablations], [run_summary_json, run_zip],
                   api_name="pretrain_run", concurrency_limit=sync_run_limit(), concurrency_id=SYNC_RUN_QUEUE)
    log_scale.change(friendly(redraw), [log_scale, history, browser_id], plot, api_name=False,
                     show_progress="hidden")
    use.click(tool(use_in_explorer, "pretrain_use"), [history, browser_id], [model_choice, use_note], api_name="pretrain_use")
    export.click(tool(export_for_transformers, "pretrain_export"), [history, browser_id], [export_file, export_note],
                 api_name="pretrain_export", concurrency_limit=2)
    ablations.change(friendly(explain_ablations), ablations, ablation_notes, api_name=False, queue=False,
                     show_progress="hidden")
    compared = [compare_plot, compare_table, repeat_choice]
    for control in (compare_x, compare_log):
        control.change(friendly(redraw_comparison), [compare_x, compare_log, browser_id], compared,
                       api_name=False, show_progress="hidden")
    refresh.click(tool(redraw_comparison, "pretrain_compare"), [compare_x, compare_log, browser_id], compared,
                  api_name="pretrain_compare")
    repeat.click(tool(repeat_with_one_change, "pretrain_repeat"), [repeat_choice, browser_id],
                 [preset, corpus, tokenizer, steps, batch_size, context_length, lr, warmup, sample_prompt, ablations,
                  prediction, repeat_note], api_name="pretrain_repeat")
    download_runs.click(tool(download_comparison, "pretrain_download_runs"), [compare_x, compare_log, browser_id], runs_files,
                        api_name="pretrain_download_runs").then(
        lambda: gr.File(visible=True), None, runs_files, api_name=False, queue=False)
    gr.context.Context.root_block.load(friendly(reattach), browser_id, [history, timer], api_name=False)
