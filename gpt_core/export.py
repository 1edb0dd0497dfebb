"""Export a training run to the Hugging Face ecosystem: a folder that ``transformers`` loads with no LLM Lab code.

    python -m gpt_core.export RUN_DIR OUT_DIR

    from transformers import AutoTokenizer, GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(OUT_DIR)
    tokenizer = AutoTokenizer.from_pretrained(OUT_DIR)

A run folder (``out_dir`` of ``gpt_core.train.train``) holds checkpoints ``step-NNNNNN/`` and ``latest.txt``,
which names the newest one (``gpt_core.train_state``). Each checkpoint is in LLM Lab's own format, and the
export rewrites both of its parts in Hugging Face's:

1. The model. LLM Lab's ``config.json`` holds a ``GPTConfig`` and ``model.safetensors`` our weight names
   (``trf_blocks.0.att.W_query.weight``). Hugging Face's holds a ``GPT2Config`` and GPT-2's names and layouts
   (``transformer.h.0.attn.c_attn.weight``, the three projections side by side and transposed), renamed by
   ``gpt_core.checkpoints.export_hf``. ``GPT2LMHeadModel`` always computes GPT-2's layout, so a model trained
   without part of it (an ablation: no causal mask, no shortcuts, post-norm, ...) is refused, saying why
   (``gpt2_layout_problems``).
2. The tokenizer. ``lab_tokenizer.json`` (``BPETokenizer.save``) becomes ``tokenizer.json`` in the format of
   Hugging Face's ``tokenizers`` library, plus ``tokenizer_config.json`` and ``special_tokens_map.json``
   (``gpt_core.hf_tokenizer`` explains the conversion). Every token keeps its id, so the exported model and
   tokenizer give the same ids and the same logits as the run's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpt_core.checkpoints import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_dir,
    export_hf,
    load_checkpoint,
    load_checkpoint_tokenizer,
    read_checkpoint_info,
    write_json,
)
from gpt_core.gpt2_vocab import ENDOFTEXT
from gpt_core.hf_tokenizer import (
    HF_SPECIAL_TOKENS_FILE,
    HF_TOKENIZER_CONFIG_FILE,
    HF_TOKENIZER_FILE,
    hf_tokenizer_config,
    hf_tokenizer_json,
    special_tokens_map,
)
from gpt_core.model import GPTConfig
from gpt_core.tokenizer import BPETokenizer

GENERATION_CONFIG_FILE = "generation_config.json"
HF_FILES = (CONFIG_FILE, WEIGHTS_FILE, GENERATION_CONFIG_FILE, HF_TOKENIZER_FILE, HF_TOKENIZER_CONFIG_FILE,
            HF_SPECIAL_TOKENS_FILE)  # what export_run writes
ONLY_GPT2 = "Export is only for models GPT-2 can run."
_LAYOUT = "GPT-2's layout (transformers' GPT2LMHeadModel)"


def gpt2_layout_problems(cfg: GPTConfig) -> list[str]:
    """Why GPT2LMHeadModel could not compute this model's logits (an empty list: it can be exported).

    Some switches can be written in GPT-2's terms and are no problem: ReLU instead of GELU
    (``activation_function: "relu"``), no position embedding (a position embedding of zeros), no qkv bias
    (a zero bias), an untied output head.

    >>> gpt2_layout_problems(GPTConfig.preset("nano"))
    []
    """
    problems = []
    if not getattr(cfg, "causal_mask", True):
        problems.append(f"This model was trained without a causal mask; {_LAYOUT} always masks the future, so it "
                        f"would compute different logits.")
    if not getattr(cfg, "residual", True):
        problems.append(f"This model was trained without shortcut (residual) connections; {_LAYOUT} always adds "
                        f"them, so it would compute different logits.")
    norm = getattr(cfg, "norm", "pre")
    if norm != "pre":
        where = "after each sublayer (post-norm)" if norm == "post" else "nowhere (no LayerNorm)"
        problems.append(f"This model puts its LayerNorms {where}; {_LAYOUT} always normalises before attention "
                        f"and the feed-forward (pre-norm), so it would compute different logits.")
    activation = getattr(cfg, "activation", "gelu")
    if activation not in ("gelu", "relu"):
        problems.append(f"This model uses the activation {activation!r}, which {_LAYOUT} does not offer.")
    return problems


def check_tokenizer_fits(tokenizer: BPETokenizer, cfg: GPTConfig) -> None:
    """Refuse a tokenizer with ids the model has no row for (a checkpoint saved with another tokenizer)."""
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"The tokenizer has {tokenizer.vocab_size:,} ids but the model only {cfg.vocab_size:,}; "
                         f"they do not belong together.")


def export_tokenizer(tokenizer: BPETokenizer, out_dir, model_max_length: int) -> list[Path]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json; returns their paths."""
    out_dir = Path(out_dir)
    files = {
        HF_TOKENIZER_FILE: hf_tokenizer_json(tokenizer),
        HF_TOKENIZER_CONFIG_FILE: hf_tokenizer_config(tokenizer, model_max_length),
        HF_SPECIAL_TOKENS_FILE: special_tokens_map(tokenizer),
    }
    for name, data in files.items():
        write_json(out_dir / name, data)
    return [out_dir / name for name in files]


def check_out_dir(out_dir, *sources: Path) -> None:
    """Refuse to write over the run or the checkpoint itself, or over another LLM Lab checkpoint."""
    out_dir = Path(out_dir)
    if any(out_dir.resolve() == source.resolve() for source in sources):
        raise ValueError(f"The export would overwrite the checkpoint's own files; choose another folder than {out_dir}.")
    if (out_dir / CONFIG_FILE).exists() and read_checkpoint_info(out_dir).get("format") == "llm-lab-gpt":
        raise ValueError(f"{out_dir} holds an LLM Lab checkpoint; export into another folder.")


def export_run(run_or_checkpoint_dir, out_dir, tokenizer: BPETokenizer | None = None) -> Path:
    """Write a Hugging Face folder for a run's newest checkpoint (or one checkpoint folder); returns out_dir.

    ``tokenizer`` is needed only when the checkpoint carries none (a run on raw bytes, say); a checkpoint's
    own tokenizer file is used otherwise. Raises ValueError, saying why, for a folder that holds no checkpoint
    or a model GPT-2's layout cannot run.
    """
    folder = checkpoint_dir(run_or_checkpoint_dir)
    if not (folder / CONFIG_FILE).exists():
        raise ValueError(f"{run_or_checkpoint_dir} holds no checkpoint: expected a run folder (with latest.txt) or "
                         f"a checkpoint folder (with {CONFIG_FILE} and {WEIGHTS_FILE}).")
    check_out_dir(out_dir, Path(run_or_checkpoint_dir), folder)
    model = load_checkpoint(folder)
    problems = gpt2_layout_problems(model.cfg)
    if problems:
        raise ValueError(" ".join(problems) + " " + ONLY_GPT2)
    tokenizer = load_checkpoint_tokenizer(folder) or tokenizer
    if tokenizer is None:
        raise ValueError(f"The checkpoint in {folder} has no tokenizer file; pass the tokenizer it was trained "
                         f"with (python -m gpt_core.export RUN_DIR OUT_DIR --tokenizer gpt2|bytes|FILE).")
    check_tokenizer_fits(tokenizer, model.cfg)
    eot_id = tokenizer.special_tokens.get(ENDOFTEXT)
    out_dir = Path(out_dir)
    export_hf(model, out_dir, eot_id=eot_id)
    export_tokenizer(tokenizer, out_dir, model.cfg.context_length)
    write_json(out_dir / GENERATION_CONFIG_FILE, {"bos_token_id": eot_id, "eos_token_id": eot_id})
    return out_dir


def bytes_as_bpe() -> BPETokenizer:
    """gpt_core.tokenizer_choice.ByteTokenizer's ids (one per byte, 0-255) as a BPE with no merges."""
    return BPETokenizer([], name="bytes")


def _tokenizer_from_spec(spec: str | None) -> BPETokenizer | None:
    if spec is None:
        return None
    if spec == "bytes":
        return bytes_as_bpe()
    if spec == "gpt2":
        return BPETokenizer.gpt2()
    return BPETokenizer.load(spec)


def main(argv: list[str] | None = None) -> int:
    """``python -m gpt_core.export RUN_DIR OUT_DIR [--tokenizer SPEC]``: 0 when written, 2 with a message if not."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gpt_core.export",
                                     description="Write a training run as a Hugging Face GPT-2 folder.")
    parser.add_argument("run_dir", help="a run folder (its newest checkpoint) or one checkpoint folder")
    parser.add_argument("out_dir", help="the folder to write (created if needed)")
    parser.add_argument("--tokenizer", default=None,
                        help="only for a checkpoint without a tokenizer file: gpt2, bytes or a lab_tokenizer.json")
    args = parser.parse_args(argv)
    try:
        out_dir = export_run(args.run_dir, args.out_dir, _tokenizer_from_spec(args.tokenizer))
    except (ValueError, OSError) as err:
        print(f"Not exported: {err}", file=sys.stderr)
        return 2
    for name in HF_FILES:
        print(f"wrote {out_dir / name} ({(out_dir / name).stat().st_size:,} bytes)")
    print("Load it with:")
    print(f"from transformers import AutoTokenizer, GPT2LMHeadModel; model = GPT2LMHeadModel.from_pretrained("
          f"{str(out_dir)!r}); tokenizer = AutoTokenizer.from_pretrained({str(out_dir)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
