"""The model choice shared by the tabs that run a model (Inside GPT, Generate, Classify, Instruct).

Every choice is one row of MODEL_CHOICES. A model is built (or downloaded) the first time someone picks
it, then kept in memory: one copy per choice for the whole server, whatever the number of students.
Each is the book's GPTModel sped up in place by gpt_core.fast (nothing changes with LLM_LAB_PLAIN=1).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch

from gpt_core.fast import speed_up
from gpt_core.model import GPTConfig, GPTModel
from ui.budgets import BudgetStore, env_number, register_store

SEED = 123  # random-init models are the same for every student


@dataclass(frozen=True)
class ModelChoice:
    label: str
    build: Callable[[], GPTModel]  # returns the model (weights loaded or random)
    note: str  # one line shown to the student under the views
    tokenizer: Callable[[], object] | None = None  # None: GPT-2's vocabulary
    built_in: bool = True  # False: downloaded from the hub, or a student's own model


@dataclass
class LoadedModel:
    model: GPTModel
    tokenizer: object  # BPETokenizer: .encode, .decode, .vocab_size
    label: str
    note: str

    @property
    def cfg(self) -> GPTConfig:
        return self.model.cfg


@functools.cache
def gpt2_tokenizer():
    """GPT-2's BPE vocabulary, read from files that ship with a package (works offline)."""
    from gpt_core.tokenizer import BPETokenizer

    return BPETokenizer.gpt2()


def random_init(preset: str) -> GPTModel:
    """An untrained GPTModel of a preset size with GPT-2's vocabulary, always the same weights (seed 123)."""
    torch.manual_seed(SEED)
    return GPTModel(GPTConfig.preset(preset, vocab_size=50257))


def pretrained_gpt2(hub_name: str) -> GPTModel:
    """OpenAI's GPT-2 weights from the Hugging Face hub (needs the internet the first time).

    With no internet this fails in about a second, then at once for the next few minutes (the engine
    remembers the failure).
    """
    from gpt_core.checkpoints import load_hf_gpt2

    try:
        return load_hf_gpt2(hub_name)
    except ConnectionError as error:  # offline, HF_HUB_OFFLINE=1, hub down: a message the student can act on
        raise ValueError(f"{error} Pick '{DEFAULT_CHOICE}', which works offline.") from error
    except Exception as error:  # no such repository, a broken download, ...
        raise ValueError(f"GPT-2 weights could not be loaded ({hub_name}): {error} "
                         f"Pick '{DEFAULT_CHOICE}', which works offline.") from error


BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets" / "bundled"


def bundled_model() -> GPTModel:
    """The small GPT this repository pretrained on Shakespeare (scripts/build_bundled_model.sh); works offline."""
    from gpt_core.checkpoints import load_checkpoint

    return load_checkpoint(BUNDLED_DIR)


@functools.cache
def bundled_tokenizer():
    """The 4,096-token BPE trained on the same Shakespeare text as the bundled model."""
    from gpt_core.tokenizer import BPETokenizer

    return BPETokenizer.load(BUNDLED_DIR / "lab_tokenizer.json")


UNTRAINED = "Untrained: random weights (seed 123), so attention is spread almost evenly and the text is gibberish."
MODEL_CHOICES: list[ModelChoice] = [
    ModelChoice("Shakespeare GPT · 4 layers (pretrained here, bundled)", bundled_model,
                "Pretrained by this repo on Shakespeare's plays (2.6M parameters, 4,096-token BPE, val loss 4.33): "
                "its heads have learned patterns, and it writes Shakespeare-ish text.", bundled_tokenizer),
    ModelChoice("Random init · nano (untrained)", lambda: random_init("nano"), UNTRAINED),
    ModelChoice("Random init · micro (untrained)", lambda: random_init("micro"), UNTRAINED),
    ModelChoice("GPT-2 small (124M, download)", lambda: pretrained_gpt2("openai-community/gpt2"),
                "OpenAI's GPT-2 small (124M parameters), trained on 40 GB of web text.", built_in=False),
    ModelChoice("GPT-2 medium (355M, download)", lambda: pretrained_gpt2("openai-community/gpt2-medium"),
                "OpenAI's GPT-2 medium (355M parameters), trained on 40 GB of web text.", built_in=False),
]
DEFAULT_CHOICE = MODEL_CHOICES[0].label

_loaded: dict[str, LoadedModel] = {}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def built_in_labels() -> list[str]:
    """The models this repository builds without the internet (the bundled one and the random presets)."""
    return [choice.label for choice in MODEL_CHOICES if choice.built_in]


def choice_labels() -> list[str]:
    return [choice.label for choice in MODEL_CHOICES]


def model_picker() -> gr.Dropdown:
    """The dropdown above the tabs; its value is passed to every tab that runs a model."""
    return gr.Dropdown(
        choices=choice_labels(),
        value=DEFAULT_CHOICE,
        label="Model used by Inside GPT, Generate, Classify and Instruct",
        info="The bundled and random-init models work offline; GPT-2 downloads its weights the first time "
        "(internet needed).",
        interactive=True,
    )


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside the block, then as before: for the views made while the page is built.

    A small model is fastest on one thread, and on a busy 2-core machine two threads fight the other processes
    for the cores: the bundled model's first views took 12 s with two threads there, 0.3 s with one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


LOAD_WAIT_S = 3.0  # how long a request waits for another request that is loading the same model


def load_choice(label: str) -> LoadedModel:
    """The model for a dropdown label, built once per server and shared (eval mode, no gradients).

    A lock per choice: when 30 students pick GPT-2 at the same moment it is loaded once, not 30 times.
    The others wait at most LOAD_WAIT_S, then are told it is still loading; other models never wait for it.
    """
    if not isinstance(label, str) or len(label) > 300:
        raise ValueError("Pick a model from the menu at the top of the page.")
    choice = next((c for c in MODEL_CHOICES if c.label == label), None)
    if choice is None:  # a model cleared from the explorer says so; anything else is unknown
        EXPLORER_MODELS.get(EXPLORER, label, missing=f"Unknown model {label!r}. Choose one of: "
                                                     f"{', '.join(choice_labels())}.")
    if EXPLORER_MODELS.find(EXPLORER, label) is not None:
        EXPLORER_MODELS.get(EXPLORER, label)  # in use: the last to be evicted
    if label in _loaded:
        return _loaded[label]
    with _locks_guard:
        lock = _locks.setdefault(label, threading.Lock())
    if not lock.acquire(timeout=LOAD_WAIT_S):
        raise ValueError(still_loading_message(label))
    try:
        if label not in _loaded:  # another request may have built it while we waited
            model = speed_up(choice.build().eval())
            model.requires_grad_(False)
            tokenizer = (choice.tokenizer or gpt2_tokenizer)()
            _loaded[label] = LoadedModel(model, tokenizer, label, choice.note)
    finally:
        lock.release()
    return _loaded[label]


def still_loading_message(label: str) -> str:
    """What a student sees when another request is still loading (or downloading) the model they picked."""
    return (f"'{label}' is still loading for another request (a download can take a minute). Try again in a "
            f"moment, or pick '{DEFAULT_CHOICE}', which works offline.")


def model_bytes(model: torch.nn.Module) -> int:
    """Memory the model's weights take."""
    return sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())


def _forget_model(label: str) -> None:
    """Take an evicted model out of the menu and out of memory."""
    with _locks_guard:
        MODEL_CHOICES[:] = [choice for choice in MODEL_CHOICES if choice.label != label]
        _loaded.pop(label, None)


# Models students added with "Use this model in the explorer", under a count and memory budget. Any page may
# pick one from its menu, so the store keeps them under one owner and load_choice marks them used.
EXPLORER = "explorer"
EXPLORER_MODELS = register_store(BudgetStore(
    "model in the explorer", int(env_number("LLM_LAB_KEPT_MODELS", 30)),
    env_number("LLM_LAB_MODELS_MEMORY_GB", 2) * 1e9, on_evict=_forget_model))


def register_model(label: str, model: GPTModel, tokenizer, note: str) -> str:
    """Add an already-built model (e.g. a finished Pretrain run) to the menu, with its own tokenizer.

    It is kept in memory under the explorer-models budget (least recently added go first when it is full);
    registering a label again replaces its model.
    """
    speed_up(model.eval()).requires_grad_(False)
    with _locks_guard:
        if label not in choice_labels():
            MODEL_CHOICES.append(ModelChoice(label, lambda: _loaded[label].model, note, built_in=False))
        _loaded[label] = LoadedModel(model, tokenizer, label, note)
    EXPLORER_MODELS.put(EXPLORER, label, label, size_bytes=model_bytes(model))
    return label


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The text of each token on its own (a token can be part of a UTF-8 character: shown as �)."""
    return [tokenizer.decode([token_id]) for token_id in ids]


def encode_capped(tokenizer, text: str, max_tokens: int) -> tuple[list[int], str | None]:
    """Token ids of `text`, cut to the first `max_tokens`; the note says so when it cut.

    Raises ValueError for empty text.
    """
    if not text or not text.strip():
        raise ValueError("Type some text first: the box is empty.")
    ids = tokenizer.encode(text, allowed_special="all")  # a typed <|endoftext|> is read as that special token
    if len(ids) <= max_tokens:
        return ids, None
    return ids[:max_tokens], f"Your text has {len(ids):,} tokens; showing the first {max_tokens}."
