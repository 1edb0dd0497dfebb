"""The command line of pretraining: ``python -m gpt_core.train --help`` (also under ``torchrun``).

With no options it trains the Pretrain tab's default run (nano as the book builds it, Shakespeare, a 4,096-token
BPE trained on the text, 1,000 steps of 32 sequences of 32 tokens) and saves it in a new folder under ``runs/``:

    python -m gpt_core.train                                     # -> runs/nano-shakespeare-20250101-120000/
    python -m gpt_core.train --preset micro --max-steps 3000 --out runs/micro
    python -m gpt_core.train --resume runs/micro --max-steps 6000   # continue it (in the same folder)
    python -m gpt_core.train --recipe book-ch5 --no-save         # the book's chapter 5 run, with the book's losses
    python -m gpt_core.train --ablate no-causal-mask --ablate relu   # switch parts off
    torchrun --nproc_per_node=2 -m gpt_core.train --max-steps 100

A bad option ends with the usage line and exit status 2, never a traceback. ``--resume`` takes the newest intact
checkpoint of a run folder (a damaged newer one is named in a warning), and refuses a run whose batch size,
context length, text or seed differ from the checkpoint's (it would not continue the same run) unless ``--force``.
Ctrl-C stops after the current step and saves it (exit status 130); a second Ctrl-C quits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gpt_core.ablations import ABLATIONS, apply_ablations, changed_settings
from gpt_core.corpora import CORPORA, load_corpus
from gpt_core.device import pick_device
from gpt_core.distributed import join_process_group, leave_process_group
from gpt_core.events import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    jsonable,
)
from gpt_core.fast import speed_up_for_training
from gpt_core.fast.settings import set_plain
from gpt_core.files import write_text_atomically
from gpt_core.model import PRESETS, GPTConfig, GPTModel
from gpt_core.tokenizer import MAX_TRAIN_VOCAB
from gpt_core.tokenizer_choice import encode_corpus, make_tokenizer
from gpt_core.train import train
from gpt_core.train_config import AUTOCAST_CHOICES, OPTIMIZER_CHOICES, SCHEDULE_CHOICES, TrainConfig
from gpt_core.train_state import (
    read_training_state,
    remove_stale_temp_files,
    resumable_checkpoint,
    set_aside_damaged,
)

# The Pretrain tab's default run (ui/pretrain_tab.py: CLASSROOM_*, BETAS, SEED, model_config, pretrain_config):
# nano built as the book's chapter 4 model (PyTorch's init, an untied head, no qkv bias) with no dropout,
# 1,000 steps of 32 x 32 tokens, lr 1e-2 after 300 warm-up steps, AdamW betas (0.9, 0.99): 1,448,704
# parameters with the 4,096-token BPE, val loss about 4.48 in about a minute on 2 CPU cores.
DEFAULTS = dict(
    preset="nano", corpus="shakespeare", tokenizer="bpe:4096", max_steps=1000, batch_size=32, context_length=32,
    lr=1e-2, warmup=300, betas=(0.9, 0.99), drop_rate=0.0, init="pytorch", tie_weights=False, qkv_bias=False,
    seed=123, eval_batches=4, sample_prompt="ROMEO:", sample_tokens=32,
)
RUNS_DIR = Path("runs")  # where a run without --out is saved, in a new folder of its own
RUN_SETTINGS_FILE = "run_settings.json"  # the options and the text's fingerprint, next to a run's checkpoints
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"

# Named command-line settings. `--recipe book-ch5` is the book's chapter-5 run, `train_model_simple`:
# GPT_CONFIG_124M at context 256 (the book's model, seed 123: 162M parameters) trained on "The Verdict"
# (bundled), split 90/10 by characters; the book's optimizer `AdamW(model.parameters(), lr=0.0004,
# weight_decay=0.1)` at a constant rate, no clipping, batch 2, 10 epochs of 9 batches = 90 steps; evaluation
# on 5 batches after steps 1, 6, 11, ... (the book's global_step 0, 5, 10); nothing reseeded, the book's
# DataLoader order, the book layer alone (`--plain`). It prints the book's losses: after step 1 train 9.781,
# val 9.933; after step 6 train 8.111, val 8.339; ... after step 86 train 0.391, val 6.452.
RECIPES: dict[str, dict] = {
    "book-ch5": dict(
        preset="book", corpus="verdict", tokenizer="gpt2", context_length=256, lr=4e-4, min_lr=4e-4, warmup=0,
        weight_decay=0.1, betas=(0.9, 0.999), optimizer="book", grad_clip=0.0, batch_size=2, max_steps=90,
        eval_every=5, eval_batches=5, eval_from_first_step=True, no_reseed=True, plain=True, autocast="off",
        drop_rate=0.1, init="pytorch", tie_weights=False, qkv_bias=False, sample_every=0, checkpoint_every=0,
        split="characters",
    ),
}


# ---------------------------------------------------------------- option values, checked as they are read
def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """An option type: a whole number from ``minimum`` to ``maximum``; anything else is a usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum:,} to {maximum:,}, got {value:,}")
        return value

    return parse


def real_number(low: float, high: float, *, above_low: bool = False,
                below_high: bool = False) -> Callable[[str], float]:
    """An option type: a finite number between ``low`` and ``high`` (NaN and infinity are refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if above_low else value < low
        too_high = value >= high if below_high else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be a number {'above' if above_low else 'from'} {low:g} and "
                                             f"{'below' if below_high else 'at most'} {high:g}, got {text!r}")
        return value

    return parse


def yes_no(text: str) -> bool:
    answers = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    if text.lower() not in answers:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return answers[text.lower()]


def corpus_name(text: str) -> str:
    if text in CORPORA or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(f"expected {', '.join(CORPORA)} or the path of a text file, got {text!r}")


def tokenizer_spec(text: str) -> str:
    size = text.removeprefix("bpe:")
    if text in ("gpt2", "bytes") or Path(text).is_file() or (size.isdigit() and 257 <= int(size) <= MAX_TRAIN_VOCAB):
        return text
    raise argparse.ArgumentTypeError(f"expected gpt2, bytes, bpe:N (N from 257 to {MAX_TRAIN_VOCAB:,}) or the path "
                                     f"of a saved tokenizer, got {text!r}")


def device_name(text: str) -> str:
    if re.fullmatch(DEVICE_PATTERN, text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")


def short_text(text: str) -> str:
    if len(text) > 1000:
        raise argparse.ArgumentTypeError(f"at most 1,000 characters, got {len(text):,}")
    return text


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default after its help (written out where "None" would say nothing); the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if "(default:" in (action.help or "") else super()._get_help_string(action)


def _ablations_help() -> str:
    """The epilog of --help: every ablation with the sentence that says what it changes."""
    width = max(len(name) for name in ABLATIONS)
    lines = [f"  {name:<{width}}  {ablation.what}" for name, ablation in ABLATIONS.items()]
    return "ablations (--ablate NAME, repeatable; applied after the preset and the options):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpt_core.train", formatter_class=HelpFormatter, epilog=_ablations_help(),
        usage="%(prog)s [--preset NAME] [--corpus TEXT] [--max-steps N] [--out DIR] [--resume DIR] [...] (see --help)",
        description="Pretrain a small GPT. With no options: the Pretrain tab's default run, saved under runs/.")
    add = parser.add_argument
    whole, real = whole_number, real_number
    add("--recipe", choices=sorted(RECIPES), default=None,
        help="named settings (the other options still override them) (default: none)")
    add("--preset", choices=list(PRESETS), default=DEFAULTS["preset"], help="model size")
    add("--corpus", type=corpus_name, default=DEFAULTS["corpus"], metavar="{" + ",".join(CORPORA) + ",FILE}",
        help="the text to learn from: a packaged one or a UTF-8 text file")
    add("--max-chars", type=whole(1, 10**10), default=None,
        help="use only the first N characters of the text (default: all)")
    add("--tokenizer", type=tokenizer_spec, default=DEFAULTS["tokenizer"], metavar="{gpt2,bytes,bpe:N,FILE}",
        help="gpt2: GPT-2's 50,257 tokens; bytes: 256; bpe:N: a BPE of N tokens trained on the text; "
             "or a tokenizer .json saved by the lab")
    add("--split", choices=("tokens", "characters"), default="tokens",
        help="the last 10%% of the text validates: of its tokens (the Pretrain tab's) or of its characters (the "
             "book's)")
    add("--plain", action="store_true", help="the book layer alone: no speed-up is applied")
    model = parser.add_argument_group("model (the preset's shape, built as the book's chapter 4 model)")
    model.add_argument("--context-length", type=whole(1, 65_536), default=DEFAULTS["context_length"],
                       help="tokens per training sequence (the model's context)")
    model.add_argument("--emb-dim", type=whole(1, 65_536), default=None, help="width (default: the preset's)")
    model.add_argument("--n-layers", type=whole(1, 1000), default=None,
                       help="transformer blocks (default: the preset's)")
    model.add_argument("--n-heads", type=whole(1, 1000), default=None,
                       help="attention heads per block (default: the preset's)")
    model.add_argument("--drop-rate", type=real(0, 1, below_high=True), default=DEFAULTS["drop_rate"],
                       help="dropout probability")
    model.add_argument("--qkv-bias", type=yes_no, default=DEFAULTS["qkv_bias"], metavar="{yes,no}",
                       help="a bias in the query, key and value projections (GPT-2 has one) (default: no)")
    model.add_argument("--tie-weights", type=yes_no, default=DEFAULTS["tie_weights"], metavar="{yes,no}",
                       help="share the token embedding and output head (default: no)")
    model.add_argument("--init", choices=("gpt2", "pytorch"), default=DEFAULTS["init"],
                       help="gpt2: normal(0, 0.02) as GPT-2; pytorch: PyTorch's layer defaults, as the book's model")
    steps = parser.add_argument_group("training")
    steps.add_argument("--max-steps", type=whole(1, 10**9), default=DEFAULTS["max_steps"],
                       help="optimizer steps in the whole run (a resumed run counts the earlier ones)")
    steps.add_argument("--max-tokens", type=whole(1, 10**15), default=None,
                       help="stop after this many training tokens (default: no limit)")
    steps.add_argument("--time-budget", type=real(0, 1e7, above_low=True), default=None,
                       help="stop after this many seconds (default: no limit)")
    steps.add_argument("--batch-size", type=whole(1, 65_536), default=DEFAULTS["batch_size"],
                       help="sequences per micro-batch (per process under torchrun)")
    steps.add_argument("--grad-accum", type=whole(1, 65_536), default=1,
                       help="micro-batches whose gradients add up to one step")
    steps.add_argument("--lr", type=real(0, 10, above_low=True), default=DEFAULTS["lr"], help="peak learning rate")
    steps.add_argument("--min-lr", type=real(0, 10), default=None,
                       help="the learning rate at the end of the cosine decay (default: --lr / 10)")
    steps.add_argument("--warmup", type=whole(0, 10**9), default=DEFAULTS["warmup"],
                       help="warm-up steps, linear up to --lr (at most --max-steps)")
    steps.add_argument("--schedule", choices=SCHEDULE_CHOICES, default="cosine",
                       help="after the warm-up: cosine decay to --min-lr, or constant at --lr")
    steps.add_argument("--weight-decay", type=real(0, 10), default=0.1, help="AdamW's pull of the weights towards 0")
    steps.add_argument("--grad-clip", type=real(0, 1e6), default=1.0,
                       help="clip the gradient norm to this; 0: no clipping")
    steps.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default="lab",
                       help="lab: AdamW with decay on matrices only, fused; book: AdamW(model.parameters())")
    steps.add_argument("--betas", type=real(0, 1, below_high=True), nargs=2, default=DEFAULTS["betas"],
                       metavar=("BETA1", "BETA2"), help="AdamW's betas")
    steps.add_argument("--seed", type=whole(0, 2**32 - 1), default=DEFAULTS["seed"],
                       help="the initial weights, the batch order and dropout")
    steps.add_argument("--no-reseed", action="store_true",
                       help="reseed nothing and read batches in the book's DataLoader order (after --seed's model)")
    steps.add_argument("--ablate", action="append", choices=list(ABLATIONS), default=[], metavar="NAME",
                       help="switch one part off or change it (repeatable); the names are listed below "
                            "(default: none)")
    report = parser.add_argument_group("evaluation and samples")
    report.add_argument("--eval-every", type=whole(0, 10**9), default=None,
                        help="evaluate every N steps; 0: only at the end (default: a tenth of --max-steps)")
    report.add_argument("--eval-batches", type=whole(1, 100_000), default=DEFAULTS["eval_batches"],
                        help="batches of each split per evaluation")
    report.add_argument("--eval-from-first-step", action="store_true",
                        help="evaluate after steps 1, 1 + N, ... (the book's) instead of N, 2N, ...")
    report.add_argument("--sample-every", type=whole(0, 10**9), default=None,
                        help="print a greedy sample every N steps; 0: never (default: an eighth of --max-steps)")
    report.add_argument("--sample-prompt", type=short_text, default=DEFAULTS["sample_prompt"],
                        help="the start of every sample")
    report.add_argument("--sample-tokens", type=whole(1, 10_000), default=DEFAULTS["sample_tokens"],
                        help="new tokens per sample")
    device = parser.add_argument_group("device")
    device.add_argument("--device", type=device_name, default="auto", metavar="{auto,cpu,cuda,cuda:N,mps}",
                        help="auto: CUDA, then MPS, then the CPU")
    device.add_argument("--autocast", default="auto", choices=AUTOCAST_CHOICES,
                        help="auto: bf16 where the device supports it")
    device.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA recommended)")
    saving = parser.add_argument_group("saving and resuming")
    saving.add_argument("--out", default=None,
                        help="the run folder for checkpoints (default: the resumed run's folder, else a new "
                             "runs/PRESET-CORPUS-YYYYmmdd-HHMMSS)")
    saving.add_argument("--no-save", action="store_true", help="save nothing (a quick experiment)")
    saving.add_argument("--checkpoint-every", type=whole(0, 10**9), default=None,
                        help="save every N steps; 0: only at the end (default: a quarter of --max-steps, at "
                             "least 10)")
    saving.add_argument("--keep-checkpoints", type=whole(1, 1000), default=2,
                        help="keep the newest N checkpoints (2: a damaged newest one still leaves one to resume)")
    saving.add_argument("--resume", default=None,
                        help="continue a run: its folder (its newest intact checkpoint) or a checkpoint folder "
                             "(default: none)")
    saving.add_argument("--force", action="store_true",
                        help="resume even when the batch size, context length, text or seed differ")
    return parser


def _parse_args(argv=None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.recipe:  # the recipe's values become the defaults; options given on the command line still win
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    if args.no_save and args.out:
        parser.error("--no-save and --out contradict each other: give one of them")
    if args.force and not args.resume:
        parser.error("--force only matters with --resume")
    steps = args.max_steps  # the tab's rhythm: about 10 evaluations, 8 samples and 4 checkpoints a run
    args.warmup = min(args.warmup, steps)
    args.eval_every = max(1, steps // 10) if args.eval_every is None else args.eval_every
    args.sample_every = max(1, steps // 8) if args.sample_every is None else args.sample_every
    args.checkpoint_every = max(10, steps // 4) if args.checkpoint_every is None else args.checkpoint_every
    return args


def describe_ablations(names: list[str], model_cfg: GPTConfig, config: TrainConfig) -> str:
    """What --ablate changes, one line per setting, and the ablations that were already so in this run."""
    lines = [f"ablation {setting}: {before} -> {after}" for setting, before, after in
             changed_settings(names, model_cfg, config)]
    already = apply_ablations(names, model_cfg, config)[2]
    lines += [f"ablation {name}: already so in this run (nothing changed)" for name in already]
    return "\n".join(lines)


# ---------------------------------------------------------------- the run's text, model and settings
def load_text(args: argparse.Namespace) -> str:
    try:
        text = load_corpus(args.corpus)[: args.max_chars]
    except UnicodeDecodeError:
        raise ValueError(f"{args.corpus} is not UTF-8 text.") from None
    if len(text) < 100:
        raise ValueError(f"The text has only {len(text)} characters; a model needs thousands to learn anything.")
    return text


def model_config(args: argparse.Namespace, vocab_size: int) -> GPTConfig:
    """The preset's shape with the tokenizer's vocabulary and the model options that were given."""
    overrides = {"vocab_size": vocab_size}
    for name in ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "qkv_bias", "tie_weights",
                 "init"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return GPTConfig.preset(args.preset, **overrides)


def build_run(args: argparse.Namespace, text: str, ddp_device: str | None) -> tuple[GPTConfig, TrainConfig, list, list]:
    """(model config, training config with the tokenizer, training ids, validation ids) from the options."""
    tokenizer = make_tokenizer(args.tokenizer, text)
    model_cfg = model_config(args, tokenizer.vocab_size)
    if args.split == "characters":  # as the book: the first 90% of the characters train, the rest validate
        split = int(0.9 * len(text))
        train_ids, val_ids = encode_corpus(tokenizer, text[:split]), encode_corpus(tokenizer, text[split:])
    else:  # as the Pretrain tab: the first 90% of the tokens train, the rest validate
        ids = encode_corpus(tokenizer, text)
        split = int(0.9 * len(ids))
        train_ids, val_ids = ids[:split], ids[split:]
    config = TrainConfig(
        lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup, schedule=args.schedule, max_steps=args.max_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip or None,
        max_tokens=args.max_tokens, time_budget_s=args.time_budget, batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum, eval_every=args.eval_every, sample_every=args.sample_every,
        sample_prompt=args.sample_prompt, sample_tokens=args.sample_tokens, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, seed=None if args.no_reseed else args.seed,
        optimizer=args.optimizer, betas=tuple(args.betas), eval_from_first_step=args.eval_from_first_step,
        eval_batches=args.eval_batches, device=ddp_device or args.device, autocast=args.autocast,
        compile=args.compile, tokenizer=tokenizer,
    )
    return model_cfg, config, train_ids, val_ids


def run_settings(args: argparse.Namespace, text: str, model_cfg: GPTConfig, config: TrainConfig) -> dict:
    """What run_settings.json keeps beside the checkpoints: what a resume must match, and every option."""
    what = f"{args.corpus}" + (f" (first {args.max_chars:,} characters)" if args.max_chars else "")
    return {"text": what, "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "batch_size": config.batch_size, "context_length": model_cfg.context_length, "seed": config.seed,
            "options": {name: jsonable(value) for name, value in sorted(vars(args).items())}}


def resume_differences(checkpoint: Path, settings: dict) -> list[str]:
    """The settings a resume must keep (batch size, context length, text, seed) that differ from the checkpoint's."""
    state, model_info = read_training_state(checkpoint)
    saved = {"batch size": state["config"].get("batch_size"),
             "context length": model_info.get("gpt_config", {}).get("context_length"),
             "seed": state["config"].get("seed")}
    now = {"batch size": settings["batch_size"], "context length": settings["context_length"],
           "seed": settings["seed"]}
    differences = [f"{name} {saved[name]} (now {now[name]})" for name in saved if saved[name] != now[name]]
    run_file = checkpoint.parent / RUN_SETTINGS_FILE
    try:  # written by this command line; a run started elsewhere has none
        earlier = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict) and earlier.get("text_sha256") != settings["text_sha256"]:
        changed = "" if earlier.get("text") != settings["text"] else ", whose content changed"
        differences.append(f"text {earlier.get('text')} (now {settings['text']}{changed})")
    return differences


def choose_resume(args: argparse.Namespace, settings: dict) -> Path:
    """The checkpoint to resume from, after the warnings and checks --resume asks for (ValueError if refused)."""
    checkpoint, warning = resumable_checkpoint(args.resume)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    state, _ = read_training_state(checkpoint)
    if state["step"] >= args.max_steps:
        raise ValueError(f"{checkpoint} is at step {state['step']:,} already: give a --max-steps above it to "
                         f"train further.")
    differences = resume_differences(checkpoint, settings)
    if differences and not args.force:
        raise ValueError(f"{checkpoint} was trained with other settings: {'; '.join(differences)}. A resumed run "
                         f"must keep them to continue the same run: use the same ones, or add --force.")
    if differences:
        print(f"warning: resuming with other settings (--force): {'; '.join(differences)}", file=sys.stderr)
    return checkpoint


def new_run_folder(preset: str, corpus: str, root: Path = RUNS_DIR) -> Path:
    """A folder ``root/PRESET-CORPUS-YYYYmmdd-HHMMSS`` that does not exist yet (else ``-2``, ``-3``, ...)."""
    corpus_tag = corpus if corpus in CORPORA else re.sub(r"[^A-Za-z0-9_]+", "-", Path(corpus).stem)[:40].strip("-")
    base = root / f"{preset}-{corpus_tag or 'text'}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, number = base, 1
    while folder.exists():
        number += 1
        folder = base.with_name(f"{base.name}-{number}")
    return folder


def choose_out_dir(args: argparse.Namespace, resume_from: Path | None) -> Path | None:
    if args.no_save:
        return None
    if args.out:
        return Path(args.out)
    if resume_from is not None:  # continue in the resumed run's folder
        return resume_from.parent
    return new_run_folder(args.preset, args.corpus)


# ---------------------------------------------------------------- the command
def main(argv=None) -> int:
    parser = build_parser()
    args = _parse_args(argv, parser)
    if args.plain:
        set_plain(True)  # the book layer alone: no speed-up is applied
    rank, world_size, ddp_device = join_process_group()
    out_dir = None
    try:
        try:  # everything a bad option can break is checked here, before the first step: a usage error, exit 2
            text = load_text(args)
            model_cfg, config, train_ids, val_ids = build_run(args, text, ddp_device)
            if args.ablate:
                if rank == 0:
                    print(describe_ablations(args.ablate, model_cfg, config))
                model_cfg, config, _ = apply_ablations(args.ablate, model_cfg, config)
            settings = run_settings(args, text, model_cfg, config)
            resume_from = choose_resume(args, settings) if args.resume else None
            torch.manual_seed(args.seed)  # the same initial weights on every process
            model = GPTModel(model_cfg)  # the book: seed 123, then the model
        except ValueError as err:
            parser.error(str(err))
        out_dir = choose_out_dir(args, resume_from) if rank == 0 else None
        if out_dir is not None and out_dir.is_dir():
            remove_stale_temp_files(out_dir)  # what a run killed mid-write left behind
            if resume_from is not None:  # so that the damaged ones are not kept instead of the run's new ones
                for folder in set_aside_damaged(out_dir):
                    print(f"warning: set aside the damaged {folder.name.removesuffix('.damaged')} as "
                          f"{folder.name}", file=sys.stderr)
        config.out_dir = str(out_dir) if out_dir is not None else None
        config.resume_from = str(resume_from) if resume_from is not None else None
        speed_up_for_training(model, pick_device(config.device))
        stop = threading.Event()
        try:
            events = train(model, train_ids, val_ids, config, stop)  # checks the data against the model first
        except ValueError as err:
            parser.error(str(err))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(out_dir / RUN_SETTINGS_FILE, json.dumps(settings, indent=1))
            print(f"saving to {out_dir}")
        with first_ctrl_c_stops(stop):
            return print_run(events, config, rank, out_dir)
    finally:
        if out_dir is not None:
            remove_stale_temp_files(out_dir)
        leave_process_group(world_size)


@contextlib.contextmanager
def first_ctrl_c_stops(stop: threading.Event):
    """While training: a first Ctrl-C asks the run to stop after the current step (it evaluates and saves), a
    second one quits at once. Only the main thread can handle signals; elsewhere Ctrl-C simply quits."""
    def ask_to_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step, then saving (Ctrl-C again to quit now)", file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def print_run(events, config: TrainConfig, rank: int, out_dir: Path | None) -> int:
    """Print the run's events under a progress bar; the exit status (0 done, 1 NaN loss, 130 Ctrl-C)."""
    from tqdm import tqdm

    bar = tqdm(total=config.max_steps, disable=rank != 0, unit="step")
    last_checkpoint = None
    try:
        for event in events:
            if rank != 0:
                continue
            if isinstance(event, StartEvent):
                bar.n = event.start_step
                bar.write(f"{event.n_params:,} parameters on {event.device} x{event.world_size}, "
                          f"{event.tokens_per_step:,} tokens per step" +
                          (f", resuming at step {event.start_step:,}" if event.start_step else ""))
            elif isinstance(event, StepEvent):
                bar.update(event.step - bar.n)
                bar.set_postfix(loss=f"{event.train_loss:.3f}", lr=f"{event.lr:.2e}",
                                tok_s=f"{event.tokens_per_s:,.0f}")
            elif isinstance(event, EvalEvent):
                val = f"{event.val_loss:.3f} (perplexity {event.val_perplexity:.1f})" if event.val_loss else "-"
                bar.write(f"step {event.step}: train loss {event.train_loss:.3f}, val loss {val}")
            elif isinstance(event, SampleEvent):
                bar.write(f"step {event.step} sample: {event.text!r}")
            elif isinstance(event, CheckpointEvent | WarningEvent):
                last_checkpoint = getattr(event, "path", last_checkpoint)
                bar.write(f"{event.kind}: {getattr(event, 'path', None) or getattr(event, 'message', '')}")
            elif isinstance(event, DoneEvent):
                bar.close()
                print(f"done ({event.reason}): {event.message}")
                print_saved(event.checkpoint_path, out_dir)
                return {"nan": 1, "stopped": 130}.get(event.reason, 0)  # stopped: by Ctrl-C
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted (Ctrl-C) at step {bar.n:,}", file=sys.stderr)
        print_saved(last_checkpoint, out_dir)
        return 130
    return 0


def print_saved(checkpoint: str | None, out_dir: Path | None) -> None:
    if checkpoint is None:
        print("nothing was saved" + (" (--no-save)" if out_dir is None else ""))
        return
    print(f"model saved in {checkpoint}\n"
          f"  continue: python -m gpt_core.train --resume {out_dir} --max-steps MORE\n"
          f"  load:     gpt_core.checkpoints.load_checkpoint({checkpoint!r})")


if __name__ == "__main__":
    raise SystemExit(main())
