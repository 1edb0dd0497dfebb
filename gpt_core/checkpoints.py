"""Saving and loading weights: our own checkpoints, and GPT-2 in Hugging Face format (import and export).

Only safe formats are read: safetensors, or `torch.load(weights_only=True)` for pytorch_model.bin
(a pickle that would run code is refused).

Hugging Face's GPT-2 stores its linear layers as `Conv1D` with weights shaped (in, out); ours are
`nn.Linear` with (out, in), so those matrices are transposed, and the fused `c_attn` (in, 3 * emb_dim)
is split into W_query, W_key and W_value:

    transformer.h.0.attn.c_attn.weight (768, 2304) -> trf_blocks.0.att.W_query/W_key/W_value.weight (768, 768) each
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gpt_core.files import write_atomically, write_text_atomically
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.tokenizer import BPETokenizer

HUB_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-small": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_WEIGHTS_FILE = "pytorch_model.bin"


# ---------------------------------------------------------------- small file helpers
def write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, else pytorch_model.bin loaded weights-only."""
    if (folder / WEIGHTS_FILE).exists():
        return load_file(folder / WEIGHTS_FILE)
    if (folder / PICKLE_WEIGHTS_FILE).exists():
        return _torch_load_weights_only(folder / PICKLE_WEIGHTS_FILE)
    raise ValueError(f"No weights in {folder}: expected {WEIGHTS_FILE} or {PICKLE_WEIGHTS_FILE}.")


def _torch_load_weights_only(path: Path) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"Refused to load {path.name}: it is a pickle that contains more than plain weights "
                         f"(it could run code on this machine). Convert it to safetensors instead.") from err
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path.name} holds a {type(state_dict).__name__}, not a dict of weight tensors.")
    return state_dict


def _model_from_state_dict(cfg: GPTConfig, state_dict: dict[str, torch.Tensor],
                           dtype: torch.dtype = torch.float32) -> GPTModel:
    """Build GPTModel(cfg) and fill it from state_dict; every key and shape is checked first.

    The model is built on the 'meta' device (no memory, no random init) and the loaded tensors are
    used directly, so even gpt2-xl loads quickly.
    """
    with torch.device("meta"):
        model = GPTModel(cfg)
    if cfg.tie_weights:
        state_dict = {**state_dict, "out_head.weight": state_dict.get("tok_emb.weight")}
    fill_from_state_dict(model, state_dict, dtype)
    if cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight
    return model.eval()  # the book's model: gpt_core.fast.speed_up(model) for the fast layer


def fill_from_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                         dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Give ``model`` (built on the 'meta' device) the tensors of ``state_dict``; every key and shape is checked
    first, so a wrong file is refused with the name of the first weight that does not fit. Returns the model."""
    expected = model.state_dict()
    missing = [key for key in expected if state_dict.get(key) is None]
    if missing:
        raise ValueError(f"Checkpoint is missing {len(missing)} weight(s), first: {missing[0]!r}.")
    unexpected = sorted(set(state_dict) - set(expected))
    if unexpected:
        raise ValueError(f"Checkpoint has weights this model does not use, first: {unexpected[0]!r}.")
    for key, param in expected.items():
        if tuple(state_dict[key].shape) != tuple(param.shape):
            raise ValueError(f"Weight {key!r} has shape {tuple(state_dict[key].shape)} in the checkpoint but "
                             f"the model needs {tuple(param.shape)}.")
    tensors = {key: tensor.to(dtype).contiguous() for key, tensor in state_dict.items()}
    model.load_state_dict(tensors, assign=True)
    return model


# ---------------------------------------------------------------- our own checkpoints
def save_checkpoint(model: GPTModel, out_dir, *, tokenizer_path=None, extra: dict | None = None) -> Path:
    """Write out_dir/model.safetensors + config.json (and a copy of the tokenizer file). Returns out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    if model.cfg.tie_weights and model.out_head.weight.shape == model.tok_emb.weight.shape:
        state_dict.pop("out_head.weight")  # the same matrix as tok_emb.weight (a classifier's head is its own)
    meta = {"format": "llm-lab-gpt", "gpt_config": model.cfg.to_dict(), "extra": extra or {}}
    if tokenizer_path is not None:
        tokenizer_path = Path(tokenizer_path)
        write_atomically(out_dir / tokenizer_path.name, lambda tmp: shutil.copyfile(tokenizer_path, tmp))
        meta["tokenizer"] = tokenizer_path.name
    write_atomically(out_dir / WEIGHTS_FILE, lambda tmp: save_file(state_dict, tmp, metadata={"format": "pt"}))
    write_json(out_dir / CONFIG_FILE, meta)
    return out_dir


def checkpoint_dir(run_or_checkpoint_dir) -> Path:
    """The checkpoint folder itself, or a training run's newest checkpoint (named by its latest.txt)."""
    from gpt_core.train_state import latest_checkpoint  # train_state imports this module

    folder = Path(run_or_checkpoint_dir)
    if not (folder / CONFIG_FILE).exists() and (latest := latest_checkpoint(folder)) is not None:
        return latest
    return folder


def read_checkpoint_info(ckpt_dir) -> dict:
    """config.json of a checkpoint: {'gpt_config': {...}, 'extra': {...}, 'tokenizer': file name or absent}."""
    path = checkpoint_dir(ckpt_dir) / CONFIG_FILE
    if not path.exists():
        raise ValueError(f"{ckpt_dir} is not a checkpoint folder: {CONFIG_FILE} is missing.")
    return json.loads(path.read_text())


def load_checkpoint_tokenizer(ckpt_dir) -> BPETokenizer | None:
    """The BPETokenizer saved with a checkpoint, or None when it has none.

    config.json names the file: "lab_tokenizer.json", or "tokenizer.json" in checkpoints from before the rename.
    """
    name = read_checkpoint_info(ckpt_dir).get("tokenizer")
    return BPETokenizer.load(checkpoint_dir(ckpt_dir) / name) if name else None


def load_checkpoint(ckpt_dir, device=None) -> GPTModel:
    """Load a folder written by save_checkpoint, or a training run's newest checkpoint (a Hugging Face GPT-2
    folder works too)."""
    info = read_checkpoint_info(ckpt_dir)
    ckpt_dir = checkpoint_dir(ckpt_dir)
    if info.get("model_type") == "gpt2":
        return load_hf_gpt2(ckpt_dir).to(device or "cpu")
    if "gpt_config" not in info:
        raise ValueError(f"{Path(ckpt_dir) / CONFIG_FILE} has no 'gpt_config' entry; was it written by "
                         f"save_checkpoint?")
    cfg = GPTConfig.from_dict(info["gpt_config"])
    model = _model_from_state_dict(cfg, _read_weights(Path(ckpt_dir)))
    return model.to(device or "cpu")


# ---------------------------------------------------------------- Hugging Face GPT-2
def config_from_hf(hf: dict) -> GPTConfig:
    """A Hugging Face GPT2Config dict -> GPTConfig (refuses variants this model does not implement)."""
    emb_dim = hf.get("n_embd", 768)
    unsupported = {
        "activation_function": (hf.get("activation_function", "gelu_new"), _activations()),
        "n_inner": (hf.get("n_inner"), (None, 4 * emb_dim)),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), (False,)),
        "scale_attn_weights": (hf.get("scale_attn_weights", True), (True,)),
        "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), (1e-5,)),
    }
    for key, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise ValueError(f"This GPT-2 variant sets {key}={value!r}; LLM Lab's model supports {allowed}.")
    relu = {"activation": "relu"} if hf.get("activation_function") == "relu" else {}
    return GPTConfig(vocab_size=hf.get("vocab_size", 50257), context_length=hf.get("n_positions", 1024),
                     emb_dim=emb_dim, n_heads=hf.get("n_head", 12), n_layers=hf.get("n_layer", 12),
                     drop_rate=0.0, qkv_bias=True, tie_weights=hf.get("tie_word_embeddings", True), **relu)


def _activations() -> tuple[str, ...]:
    """Hugging Face activation_function values config_from_hf accepts ("relu" once GPTConfig has it)."""
    has_relu = "activation" in {field.name for field in fields(GPTConfig)}
    return ("gelu_new", "gelu_pytorch_tanh", "relu") if has_relu else ("gelu_new", "gelu_pytorch_tanh")


def config_to_hf(cfg: GPTConfig, eot_id: int | None = None) -> dict:
    """GPTConfig -> a Hugging Face GPT2Config dict. ``eot_id``: the tokenizer's <|endoftext|> id, written as
    bos/eos (by default GPT-2's 50256 when the vocabulary has it)."""
    if eot_id is None and cfg.vocab_size > 50256:
        eot_id = 50256  # <|endoftext|>
    activation = {"gelu": "gelu_new", "relu": "relu"}[getattr(cfg, "activation", "gelu")]  # gelu_new: tanh
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim, "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "n_inner": None,
        "activation_function": activation, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "resid_pdrop": cfg.drop_rate, "embd_pdrop": cfg.drop_rate, "attn_pdrop": cfg.drop_rate,
        "tie_word_embeddings": cfg.tie_weights, "bos_token_id": eot_id, "eos_token_id": eot_id,
    }


_BLOCK_RENAMES = {  # ours -> Hugging Face, inside block i
    "norm1.scale": "ln_1.weight", "norm1.shift": "ln_1.bias",
    "norm2.scale": "ln_2.weight", "norm2.shift": "ln_2.bias",
    "att.out_proj.weight": "attn.c_proj.weight", "att.out_proj.bias": "attn.c_proj.bias",
    "ff.layers.0.weight": "mlp.c_fc.weight", "ff.layers.0.bias": "mlp.c_fc.bias",
    "ff.layers.2.weight": "mlp.c_proj.weight", "ff.layers.2.bias": "mlp.c_proj.bias",
}
_TOP_RENAMES = {"tok_emb.weight": "wte.weight", "pos_emb.weight": "wpe.weight",
                "final_norm.scale": "ln_f.weight", "final_norm.shift": "ln_f.bias"}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def state_dict_from_hf(hf_state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors (with or without the 'transformer.' prefix) -> our names and layouts."""
    hf = {key.removeprefix("transformer."): tensor for key, tensor in hf_state.items()}

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise ValueError(f"The GPT-2 checkpoint is missing the weight {key!r}.")
        return hf[key].t() if key.endswith(_CONV1D) else hf[key]  # Conv1D (in, out) -> Linear (out, in)

    ours = {name: take(hf_name) for name, hf_name in _TOP_RENAMES.items()}
    for i in range(cfg.n_layers):
        for name, hf_name in _BLOCK_RENAMES.items():
            ours[f"trf_blocks.{i}.{name}"] = take(f"h.{i}.{hf_name}")
        qkv_weight = take(f"h.{i}.attn.c_attn.weight")  # (3 * emb_dim, emb_dim) after the transpose
        qkv_bias = take(f"h.{i}.attn.c_attn.bias")
        if qkv_weight.shape[0] % 3 != 0:
            raise ValueError(f"Weight 'h.{i}.attn.c_attn.weight' has shape {tuple(qkv_weight.T.shape)}; expected "
                             f"({cfg.emb_dim}, {3 * cfg.emb_dim}).")
        for part, w, b in zip(("W_query", "W_key", "W_value"), qkv_weight.chunk(3, 0), qkv_bias.chunk(3, 0)):
            ours[f"trf_blocks.{i}.att.{part}.weight"] = w
            ours[f"trf_blocks.{i}.att.{part}.bias"] = b
    if not cfg.tie_weights:
        ours["out_head.weight"] = take("lm_head.weight")
    return ours


def state_dict_to_hf(model: GPTModel) -> dict[str, torch.Tensor]:
    """Our weights -> Hugging Face GPT-2 names and Conv1D layouts (contiguous, ready for safetensors)."""
    cfg, ours = model.cfg, dict(model.state_dict())
    if not getattr(cfg, "pos_embedding", True):  # no position embedding = GPT-2's with every vector zero
        ours["pos_emb.weight"] = torch.zeros(cfg.context_length, cfg.emb_dim, dtype=ours["tok_emb.weight"].dtype)
    hf = {f"transformer.{hf_name}": ours[name] for name, hf_name in _TOP_RENAMES.items()}
    for i in range(cfg.n_layers):
        block = f"trf_blocks.{i}."
        for name, hf_name in _BLOCK_RENAMES.items():
            hf[f"transformer.h.{i}.{hf_name}"] = ours[block + name]
        parts = ("W_query", "W_key", "W_value")
        hf[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([ours[f"{block}att.{p}.weight"] for p in parts])
        biases = [ours.get(f"{block}att.{p}.bias") for p in parts]
        if biases[0] is None:  # qkv_bias=False is the same as a zero bias
            biases = [torch.zeros(cfg.emb_dim, dtype=ours[block + "att.W_query.weight"].dtype)] * 3
        hf[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat(biases)
    if not cfg.tie_weights:
        hf["lm_head.weight"] = ours["out_head.weight"]
    return {key: (t.t() if key.endswith(_CONV1D) else t).detach().cpu().contiguous() for key, t in hf.items()}


def export_hf(model: GPTModel, out_dir, eot_id: int | None = None) -> Path:
    """Write config.json + model.safetensors that transformers.GPT2LMHeadModel.from_pretrained loads.

    The weights only: gpt_core.export.export_run checks the layout first and adds the tokenizer.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = state_dict_to_hf(model)
    write_atomically(out_dir / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_json(out_dir / CONFIG_FILE, config_to_hf(model.cfg, eot_id))
    return out_dir


def _download_from_hub(name: str) -> Path:
    """Fetch config.json + weights of a hub model into the local cache; returns the folder.

    gpt_core.hub makes this fail in seconds, and remember it, when the hub cannot be reached
    (ConnectionError); a model already in the local cache loads with no network at all.
    """
    from gpt_core.hub import download_model

    repo_id = HUB_NAMES.get(name, name)
    try:
        return download_model(repo_id, CONFIG_FILE, (WEIGHTS_FILE, PICKLE_WEIGHTS_FILE))
    except ConnectionError:
        raise
    except Exception as err:  # no such repository, gated, a file missing, ...
        raise ValueError(f"Could not load {repo_id!r} from the Hugging Face Hub: {err}") from err


def load_hf_gpt2(path_or_name, dtype: torch.dtype = torch.float32) -> GPTModel:
    """GPT-2 from a Hugging Face-format folder, or a hub name ('gpt2', 'openai-community/gpt2-medium', ...)."""
    folder = Path(path_or_name)
    if not folder.is_dir():
        name = str(path_or_name)
        if name not in HUB_NAMES and "/" not in name:
            raise ValueError(f"{name!r} is neither a folder nor a GPT-2 name ({', '.join(HUB_NAMES)}).")
        folder = _download_from_hub(name)
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        raise ValueError(f"{folder} has no {CONFIG_FILE}; a Hugging Face GPT-2 folder needs one.")
    cfg = config_from_hf(json.loads(config_path.read_text()))
    state_dict = state_dict_from_hf(_read_weights(folder), cfg)
    return _model_from_state_dict(cfg, state_dict, dtype)
