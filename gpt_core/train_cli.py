"""The command line of pretraining: ``python -m gpt_core.train --help`` (also under ``torchrun``).

With no options it trains the Pretrain tab's default run (nano as the book builds it, Shakespeare, a 4,096-token
BPE trained on the text, 1,000 steps of 32 sequences of 32 tokens) and saves it in a new folder under ``runs/``:

    python -m gpt_core.train                                     # -> runs/nano-shakespeare-20250101-120000/
    python -m gpt_core.train --preset micro --max-steps 3000 --out runs/micro
    python -m gpt_core.train --resume runs/micro --max-steps 6000   # continue it: its options, its folder
    python -m gpt_core.train --recipe book-ch5 --no-save         # the book's chapter 5 run, with the book's losses
    python -m gpt_core.train --ablate no-causal-mask --ablate relu   # switch parts off
    torchrun --nproc_per_node=2 -m gpt_core.train --max-steps 100

A bad option ends with the usage line and exit status 2, never a traceback (``gpt_core.train_options``). ``--resume`` takes the newest intact
checkpoint of a run folder (a damaged newer one is named in a warning), and refuses a run whose batch size,
context length, text or seed differ from the checkpoint's (it would not continue the same run) unless ``--force``.
Ctrl-C stops after the current step and saves it (exit status 130); a second Ctrl-C quits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from gpt_core.ablations import apply_ablations, changed_settings
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
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer_choice import encode_corpus, make_tokenizer
from gpt_core.train import train
from gpt_core.train_config import TrainConfig
from gpt_core.train_options import RECIPES, RUN_SETTINGS_FILE, build_parser, parse_args
from gpt_core.train_state import (
    read_training_state,
    remove_stale_temp_files,
    resumable_checkpoint,
    set_aside_damaged,
)

RUNS_DIR = Path("runs")  # where a run without --out is saved, in a new folder of its own
_parse_args = parse_args  # its earlier name
__all__ = ["RECIPES", "build_parser", "main", "parse_args"]  # the options themselves: gpt_core.train_options


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
    args = parse_args(argv, parser)
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
