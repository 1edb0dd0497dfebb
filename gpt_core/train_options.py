"""The options of the pretraining command line (``gpt_core.train_cli``): each with its help, its default and its
checks, so that a bad value is a usage error (exit status 2 and the usage line), never a traceback.

    >>> args = parse_args(["--max-steps", "500"])
    >>> args.preset, args.tokenizer, args.batch_size, args.context_length, args.lr
    ('nano', 'bpe:4096', 32, 32, 0.01)
    >>> args.warmup, args.eval_every, args.sample_every, args.checkpoint_every   # follow from --max-steps
    (300, 50, 62, 125)
    >>> whole_number(1, 512)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be from 1 to 512, got 0
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from gpt_core.ablations import ABLATIONS
from gpt_core.corpora import CORPORA
from gpt_core.model import PRESETS
from gpt_core.tokenizer import MAX_TRAIN_VOCAB
from gpt_core.train_config import AUTOCAST_CHOICES, OPTIMIZER_CHOICES, SCHEDULE_CHOICES

# The Pretrain tab's default run (ui/pretrain_tab.py: CLASSROOM_*, BETAS, SEED, model_config, pretrain_config):
# nano built as the book's chapter 4 model (PyTorch's init, an untied head, no qkv bias) with no dropout,
# 1,000 steps of 32 x 32 tokens, lr 1e-2 after 300 warm-up steps, AdamW betas (0.9, 0.99): 1,448,704
# parameters with the 4,096-token BPE, val loss about 4.48 in about a minute on 2 CPU cores.
DEFAULTS = dict(
    preset="nano", corpus="shakespeare", tokenizer="bpe:4096", max_steps=1000, batch_size=32, context_length=32,
    lr=1e-2, warmup=300, betas=(0.9, 0.99), drop_rate=0.0, init="pytorch", tie_weights=False, qkv_bias=False,
    seed=123, eval_batches=4, sample_prompt="ROMEO:", sample_tokens=32,
)
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
RUN_SETTINGS_FILE = "run_settings.json"  # a run's options and its text's fingerprint, next to its checkpoints

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


def resumed_options(path: str, parser: argparse.ArgumentParser) -> dict:
    """The options the run in ``path`` (its folder or one of its checkpoints) was started with, from its
    run_settings.json, except where to save and what to resume; {} for a run started elsewhere."""
    own = {action.dest for action in parser._actions} - {"help", "resume", "out", "no_save", "force"}
    for folder in (Path(path), Path(path).parent):
        try:
            options = json.loads((folder / RUN_SETTINGS_FILE).read_text(encoding="utf-8"))["options"]
            return {name: value for name, value in options.items() if name in own}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return {}


def parse_args(argv=None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The options of ``argv`` (a recipe's or the resumed run's values as the defaults), with the defaults that
    follow from --max-steps filled in; contradicting options are a usage error."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.recipe:  # the recipe's values become the defaults; options given on the command line still win
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    if args.resume:  # the resumed run's own options become the defaults; options given here still win
        parser.set_defaults(**resumed_options(args.resume, parser))
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
