"""Resumable training state: a checkpoint holds the weights, AdamW's moments, the random-number states and
the data position, so that a resumed run continues as if it had never stopped.

A checkpoint folder ``out_dir/step-000200/`` holds:

    model.safetensors, config.json    the weights and model shape (``gpt_core.checkpoints.load_checkpoint``)
    train_state.safetensors           AdamW's moments and the torch random-number states
    train_state.json                  step, tokens seen, data position, optimizer settings, python RNG, config

and ``out_dir/latest.txt`` names the newest complete one. Every folder is written under a temporary name and
renamed into place, then ``latest.txt`` is replaced atomically, so a run killed mid-write leaves the previous
checkpoint loadable. Nothing is pickled.

A disk can still damage a finished checkpoint (a full disk, a copy cut short). ``checkpoint_problem`` says what
is wrong with one, and ``resumable_checkpoint`` picks the newest intact one of a run folder:

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> (run / "step-000400").mkdir()
    >>> checkpoint_problem(run / "step-000400")
    'config.json is missing'
    >>> resumable_checkpoint(run)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: No intact checkpoint in ... to resume from: step-000400 is damaged (config.json is missing).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from gpt_core.checkpoints import save_checkpoint
from gpt_core.events import jsonable
from gpt_core.files import remove_temp_files, write_text_atomically
from gpt_core.model import GPTModel
from gpt_core.train_config import TrainConfig

CHECKPOINT_PREFIX = "step-"
LATEST_FILE = "latest.txt"
STATE_FORMAT = "llm-lab-train-state"
STATE_VERSION = 1
CHECKPOINT_FILES = ("config.json", "train_state.json", "model.safetensors", "train_state.safetensors")


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten AdamW's state: tensors as ``optimizer.state.<param>.<name>`` for safetensors, the rest as JSON."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{name}"] = value
    groups = [{k: jsonable(v) for k, v in group.items()} for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer.state."):
            param_id, name = key.removeprefix("optimizer.state.").split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    for key, value in info["scalars"].items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group
              for group in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor], python_state) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))


def all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder in ``out_dir`` (from latest.txt), or None."""
    pointer = Path(out_dir) / LATEST_FILE
    if not pointer.exists():
        return None
    folder = Path(out_dir) / pointer.read_text().strip()
    return folder if folder.is_dir() else None


def checkpoint_folders(out_dir: str | Path) -> list[Path]:
    """The ``step-NNNNNN`` folders of a run, newest (highest step) first."""
    folders = [p for p in Path(out_dir).glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(r"step-\d+", p.name)]
    return sorted(folders, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), reverse=True)


def checkpoint_problem(folder: str | Path) -> str | None:
    """What makes a checkpoint folder unusable (a file missing, unreadable or cut short), or None if it is intact.

    Reads the two JSON files and the headers of the two safetensors files (which give every tensor's size,
    so a file cut short is noticed), not the tensors themselves.
    """
    folder = Path(folder)
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            return f"{name} is missing"
    for name in ("config.json", "train_state.json"):
        try:
            info = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return f"{name} is unreadable: {err}"
        if not isinstance(info, dict):
            return f"{name} is unreadable: not a JSON object"
    if info.get("format") != STATE_FORMAT or not all(key in info for key in ("step", "data_position", "optimizer")):
        return "train_state.json is not an LLM Lab training state"
    for name in ("model.safetensors", "train_state.safetensors"):
        try:
            with safe_open(str(folder / name), framework="pt"):
                pass
        except (OSError, SafetensorError) as err:
            return f"{name} is unreadable: {err}"
    return None


def resumable_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """The checkpoint to resume from, and a warning when newer ones are damaged (None when there are none).

    ``path`` is a checkpoint folder (used as it is, if intact) or a run's out folder: its newest intact
    checkpoint. A folder with no intact checkpoint raises ValueError, naming what is wrong with each.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"There is no folder {path} to resume from.")
    if (path / "train_state.json").exists() or re.fullmatch(r"step-\d+", path.name):
        problem = checkpoint_problem(path)
        if problem:
            raise ValueError(f"The checkpoint {path} is damaged ({problem}); resume from its run folder "
                             f"{path.parent} to take the newest intact checkpoint there.")
        return path, None
    damaged = []
    named = (path / LATEST_FILE).read_text(errors="replace").strip() if (path / LATEST_FILE).is_file() else ""
    if named and not (path / named).is_dir():
        damaged.append(f"{named} (named by {LATEST_FILE}) is missing")
    for folder in checkpoint_folders(path):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, "; ".join(damaged) + f"; resuming from {folder.name}" if damaged else None
        damaged.append(f"{folder.name} is damaged ({problem})")
    if not damaged:
        raise ValueError(f"No training checkpoint in {path}: expected step-NNNNNN folders or train_state.json.")
    raise ValueError(f"No intact checkpoint in {path} to resume from: {'; '.join(damaged)}.")


def set_aside_damaged(out_dir: str | Path) -> list[Path]:
    """Rename a run's damaged checkpoint folders to ``step-NNNNNN.damaged`` (kept to look at): a run that resumes
    in this folder then keeps, prunes and falls back among intact checkpoints only."""
    moved = []
    for folder in checkpoint_folders(out_dir):
        if checkpoint_problem(folder) is not None:
            target = folder.with_name(f"{folder.name}.damaged")
            shutil.rmtree(target, ignore_errors=True)  # one set aside by an earlier resume
            os.replace(folder, target)
            moved.append(target)
    return moved


def read_training_state(folder: str | Path) -> tuple[dict, dict]:
    """(train_state.json, config.json) of an intact checkpoint folder: the run's settings and the model's shape."""
    folder = Path(folder)
    return (json.loads((folder / "train_state.json").read_text(encoding="utf-8")),
            json.loads((folder / "config.json").read_text(encoding="utf-8")))


def remove_stale_temp_files(out_dir: str | Path) -> list[Path]:
    """Delete what runs killed mid-write left in a run folder and its checkpoints (``gpt_core.files``)."""
    out_dir = Path(out_dir)
    removed = remove_temp_files(out_dir)
    for folder in checkpoint_folders(out_dir):
        removed += remove_temp_files(folder)
    return removed


def save_training_checkpoint(out_dir: str | Path, model: GPTModel, optimizer: torch.optim.Optimizer, *,
                             step: int, tokens_seen: int, data_position: dict, config: TrainConfig,
                             tokenizer_path: str | None = None) -> Path:
    """Write ``out_dir/step-NNNNNN/`` atomically, point latest.txt at it, and drop folders beyond keep_checkpoints."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".tmp-{CHECKPOINT_PREFIX}*"):  # left behind by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    name = f"{CHECKPOINT_PREFIX}{step:06d}"
    tmp_dir, final_dir = out_dir / f".tmp-{name}", out_dir / name
    try:
        save_checkpoint(model, tmp_dir, tokenizer_path=tokenizer_path, extra={"step": step, "tokens_seen": tokens_seen})
        optimizer_tensors, optimizer_info = _optimizer_to_files(optimizer)
        save_file({**optimizer_tensors, **_rng_tensors()}, str(tmp_dir / "train_state.safetensors"))
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "tokens_seen": tokens_seen,
            "data_position": data_position, "optimizer": optimizer_info,
            "python_random_state": list(random.getstate()), "config": config.to_dict(),
        }
        (tmp_dir / "train_state.json").write_text(json.dumps(state, indent=1))
        if final_dir.exists():  # the same step written again (e.g. a stop right after a periodic save)
            shutil.rmtree(final_dir)
        os.replace(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    write_text_atomically(out_dir / LATEST_FILE, name + "\n")
    folders = sorted(p for p in out_dir.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(r"step-\d+", p.name))
    for old in folders[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final_dir


def _checkpoint_folder(path: str | Path) -> Path:
    path = Path(path)
    if (path / "train_state.json").exists():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise ValueError(f"No training checkpoint in {path}: expected train_state.json or {LATEST_FILE}.")
    return latest


def load_training_state(path: str | Path, model: GPTModel) -> tuple[dict, dict[str, torch.Tensor]]:
    """Load a checkpoint's weights into ``model``; return (train_state.json, train_state tensors)."""
    folder = _checkpoint_folder(path)
    state = json.loads((folder / "train_state.json").read_text())
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{folder} is not an LLM Lab training checkpoint.")
    try:
        load_model(model, str(folder / "model.safetensors"), strict=True)
    except RuntimeError as err:
        raise ValueError(f"The checkpoint in {folder} was made for a model of another shape: {err}") from None
    return state, load_file(str(folder / "train_state.safetensors"))


def resume_training(path: str | Path, model: GPTModel, optimizer: torch.optim.Optimizer) -> tuple[int, int, dict]:
    """Load a checkpoint into ``model`` and ``optimizer`` and restore the random-number states.

    Returns (step, tokens seen, data position) to continue from.
    """
    state, tensors = load_training_state(path, model)
    optimizer.load_state_dict(optimizer_from_files(tensors, state["optimizer"]))
    restore_rng(tensors, state["python_random_state"])
    return state["step"], state["tokens_seen"], state["data_position"]
