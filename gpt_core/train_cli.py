"""The command line of pretraining: ``python -m gpt_core.train --help`` (also under ``torchrun``).

    python -m gpt_core.train --preset nano --corpus shakespeare --max-steps 200 --out runs/nano
    python -m gpt_core.train --recipe book-ch5        # the book's chapter 5 run, with the book's losses
    python -m gpt_core.train --preset nano --ablate no-causal-mask --ablate relu   # switch parts off
    torchrun --nproc_per_node=2 -m gpt_core.train --preset nano --max-steps 100
"""

from __future__ import annotations

import argparse

import torch

from gpt_core.ablations import ABLATIONS, apply_ablations, changed_settings
from gpt_core.corpora import load_corpus
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
)
from gpt_core.fast import speed_up_for_training
from gpt_core.fast.settings import set_plain
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer_choice import encode_corpus, make_tokenizer
from gpt_core.train import train
from gpt_core.train_config import AUTOCAST_CHOICES, OPTIMIZER_CHOICES, SCHEDULE_CHOICES, TrainConfig

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
    ),
}


def _yes_no(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def _ablations_help() -> str:
    """The epilog of --help: every ablation with the sentence that says what it changes."""
    width = max(len(name) for name in ABLATIONS)
    lines = [f"  {name:<{width}}  {ablation.what}" for name, ablation in ABLATIONS.items()]
    return "ablations (--ablate NAME, repeatable; applied after the preset and the options):\n" + "\n".join(lines)


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpt_core.train", description="Pretrain a small GPT.",
                                     epilog=_ablations_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="named settings (the other options still override them)")
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--corpus", default="shakespeare", help="shakespeare, verdict or a text file path")
    parser.add_argument("--plain", action="store_true", help="the book layer alone: no speed-up is applied")
    parser.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2, bytes, bpe:4096 or a tokenizer .json")
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--emb-dim", type=int, default=None)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--n-heads", type=int, default=None)
    parser.add_argument("--drop-rate", type=float, default=None)
    parser.add_argument("--qkv-bias", type=_yes_no, default=None)
    parser.add_argument("--tie-weights", type=_yes_no, default=None, help="share the token embedding and output head")
    parser.add_argument("--init", choices=("gpt2", "pytorch"), default=None,
                        help="gpt2: normal(0, 0.02) as GPT-2; pytorch: PyTorch's layer defaults, as the book's model "
                             "(default: the preset's)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this; 0: no clipping")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--min-lr", type=float, default=None)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--schedule", choices=SCHEDULE_CHOICES, default="cosine",
                        help="after the warm-up: cosine decay to --min-lr, or constant at --lr")
    parser.add_argument("--ablate", action="append", choices=list(ABLATIONS), default=[], metavar="NAME",
                        help="switch one part off or change it (repeatable); the names are listed below")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--sample-every", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--no-reseed", action="store_true",
                        help="reseed nothing and read batches in the book's DataLoader order (after --seed's model)")
    parser.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default="lab",
                        help="lab: AdamW with decay on matrices only, fused; book: AdamW(model.parameters())")
    parser.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95))
    parser.add_argument("--eval-batches", type=int, default=4, help="batches of each split per evaluation")
    parser.add_argument("--eval-from-first-step", action="store_true",
                        help="evaluate after steps 1, 1 + N, ... (the book's) instead of N, 2N, ...")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--autocast", default="auto", choices=AUTOCAST_CHOICES)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default=None, help="checkpoint folder")
    parser.add_argument("--resume", default=None, help="a checkpoint folder or an earlier --out folder")
    args = parser.parse_args(argv)
    if args.recipe:  # the recipe's values become the defaults; options given on the command line still win
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    return args


def describe_ablations(names: list[str], model_cfg: GPTConfig, config: TrainConfig) -> str:
    """What --ablate changes, one line per setting, and the ablations that were already so in this run."""
    lines = [f"ablation {setting}: {before} -> {after}" for setting, before, after in
             changed_settings(names, model_cfg, config)]
    already = apply_ablations(names, model_cfg, config)[2]
    lines += [f"ablation {name}: already so in this run (nothing changed)" for name in already]
    return "\n".join(lines)


def main(argv=None) -> int:
    from tqdm import tqdm

    args = _parse_args(argv)
    if args.plain:
        set_plain(True)  # the book layer alone: no speed-up is applied
    rank, world_size, ddp_device = join_process_group()
    try:
        text = load_corpus(args.corpus)[: args.max_chars]
        tokenizer = make_tokenizer(args.tokenizer, text)
        overrides = {"vocab_size": tokenizer.vocab_size}
        for name in ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "qkv_bias", "tie_weights",
                     "init"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        model_cfg = GPTConfig.preset(args.preset, **overrides)
        split = int(0.9 * len(text))  # as the book: the first 90% of the characters train, the rest validate
        train_ids, val_ids = encode_corpus(tokenizer, text[:split]), encode_corpus(tokenizer, text[split:])
        config = TrainConfig(
            lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup, schedule=args.schedule, max_steps=args.max_steps,
            weight_decay=args.weight_decay, grad_clip=args.grad_clip or None,
            max_tokens=args.max_tokens, time_budget_s=args.time_budget, batch_size=args.batch_size,
            grad_accum_steps=args.grad_accum, eval_every=args.eval_every, sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every, out_dir=args.out, resume_from=args.resume,
            seed=None if args.no_reseed else args.seed, optimizer=args.optimizer, betas=tuple(args.betas),
            eval_from_first_step=args.eval_from_first_step, eval_batches=args.eval_batches,
            device=ddp_device or args.device, autocast=args.autocast, compile=args.compile, tokenizer=tokenizer,
        )
        if args.ablate:
            if rank == 0:
                print(describe_ablations(args.ablate, model_cfg, config))
            model_cfg, config, _ = apply_ablations(args.ablate, model_cfg, config)
        torch.manual_seed(args.seed)  # the same initial weights on every process
        model = GPTModel(model_cfg)  # the book: seed 123, then the model
        speed_up_for_training(model, pick_device(config.device))
        events = train(model, train_ids, val_ids, config)
        bar = tqdm(total=config.max_steps, disable=rank != 0, unit="step")
        for event in events:
            if rank != 0:
                continue
            if isinstance(event, StartEvent):
                bar.n = event.start_step
                bar.write(f"{event.n_params:,} parameters on {event.device} x{event.world_size}, "
                          f"{event.tokens_per_step:,} tokens per step")
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
                bar.write(f"{event.kind}: {getattr(event, 'path', None) or getattr(event, 'message', '')}")
            elif isinstance(event, DoneEvent):
                bar.close()
                print(f"done ({event.reason}): {event.message} checkpoint: {event.checkpoint_path}")
                return 1 if event.reason == "nan" else 0
        return 0
    finally:
        leave_process_group(world_size)


if __name__ == "__main__":
    raise SystemExit(main())
