"""Chapter 6: fine-tuning a GPT into a classifier (spam or not).

    model = load_hf_gpt2("gpt2")                          # or any GPTModel
    config = CLASSIFY_PRESETS["book-gpt2-small"]          # 5 epochs, lr 5e-5, weight decay 0.1, batch 8
    for event in finetune_classifier(model, BPETokenizer.gpt2(), config):
        print(event.to_dict())                            # start, step, eval, accuracy, ..., done
    classify(model, tokenizer, "You won a free cruise! Text WIN to 80082")   # {'ham': 0.02, 'spam': 0.98}
    save_classifier(model, "spam-classifier/", max_length=64)                 # load_classifier reads it back

The vocabulary-sized output head becomes a 2-way head (ham, spam). The class is read from the logits at the
LAST REAL token of each message: with causal attention only that position has seen the whole message.
Padding comes after it and can never change the prediction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from gpt_core.checkpoints import WEIGHTS_FILE, fill_from_state_dict, read_checkpoint_info, save_checkpoint
from gpt_core.data import make_loader
from gpt_core.events import AccuracyEvent, ConfusionEvent, Event, WarningEvent
from gpt_core.finetune_loop import FinetuneConfig, FinetuneRun, model_device, set_trainable
from gpt_core.model import GPTConfig, GPTModel, eval_mode
from gpt_core.spam_data import CLASS_NAMES, SpamDataset, classification_collate, classification_datasets


@dataclass
class ClassifyConfig(FinetuneConfig):
    trainable: str = "last_block"  # the book's choice: last block + final norm + head
    max_length: int | None = None  # cut messages to this many tokens (None: the model's context length)
    final_accuracy: bool = True  # after training, accuracy on the WHOLE train/val/test splits


CLASSIFY_PRESETS: dict[str, ClassifyConfig] = {
    # The book's chapter 6 with GPT-2 small (124M, needs the weights from the internet): test accuracy 95.7%.
    "book-gpt2-small": ClassifyConfig(epochs=5, lr=5e-5, weight_decay=0.1, batch_size=8, eval_every=50,
                                      eval_batches=5, trainable="last_block"),
    # Offline, on a small classroom model: train every weight, a higher learning rate, a few minutes on a CPU.
    "classroom": ClassifyConfig(epochs=3, lr=3e-4, weight_decay=0.1, batch_size=16, eval_every=20,
                                eval_batches=5, trainable="all", max_length=64),
}


def add_classification_head(model: GPTModel, num_classes: int = 2) -> GPTModel:
    """Replace the vocabulary head (emb_dim -> vocab_size) by a new, trainable (emb_dim -> num_classes) head.

    The new head is a plain nn.Linear with a bias, no longer tied to the token embedding. Returns the model.
    """
    model.out_head = nn.Linear(model.cfg.emb_dim, num_classes)
    model.num_classes = num_classes
    return model


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


@torch.no_grad()
def _predictions(model: GPTModel, loader, max_batches: int | None = None,
                 amp_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, true labels) over the first ``max_batches`` batches (all when None), dropout off."""
    device = model_device(model)
    predicted, true = [], []
    with eval_mode(model):
        for index, (input_ids, labels, lengths) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            logits = last_token_logits(model, input_ids.to(device), lengths, amp_dtype)  # (B, num_classes)
            predicted.append(logits.argmax(dim=-1).cpu())
            true.append(labels)
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
    with eval_mode(model):
        probs = torch.softmax(last_token_logits(model, input_ids.to(model_device(model)), lengths)[0], dim=-1)
    return {name: float(p) for name, p in zip(class_names, probs)}


def prepare_classifier(model: GPTModel, trainable: str = "last_block", num_classes: int = 2,
                       seed: int = 123) -> int:
    """Add a ``num_classes`` head (seeded) unless the model has one, then choose the trainable parts."""
    if model.out_head.out_features != num_classes:
        torch.manual_seed(seed)
        add_classification_head(model, num_classes)
    return set_trainable(model, trainable)


def save_classifier(model: GPTModel, out_dir, *, class_names: Sequence[str] = CLASS_NAMES,
                    max_length: int | None = None, tokenizer_path=None, extra: dict | None = None) -> Path:
    """``save_checkpoint`` for a classifier: config.json also names its classes and the length messages are cut
    to (``"extra": {"classifier": {...}}``), so that ``load_classifier`` can rebuild the head. Returns out_dir."""
    if len(class_names) != model.out_head.out_features:
        raise ValueError(f"The classifier has {model.out_head.out_features} outputs but {len(class_names)} class "
                         f"names were given ({', '.join(class_names)}).")
    head = {"class_names": list(class_names), "max_length": max_length or model.cfg.context_length}
    return save_checkpoint(model, out_dir, tokenizer_path=tokenizer_path, extra={**(extra or {}), "classifier": head})


def load_classifier(ckpt_dir, device=None) -> tuple[GPTModel, dict]:
    """A classifier saved by ``save_classifier``, and its head: ``{"class_names": [...], "max_length": 64}``.

    >>> import tempfile
    >>> _ = torch.manual_seed(0)
    >>> cfg = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1)
    >>> model = add_classification_head(GPTModel(cfg)).eval()
    >>> folder = save_classifier(model, tempfile.mkdtemp(), max_length=6)
    >>> loaded, head = load_classifier(folder)
    >>> head
    {'class_names': ['ham', 'spam'], 'max_length': 6}
    >>> ids = torch.tensor([[1, 2, 3]])                                  # (B, T)
    >>> torch.equal(last_token_logits(loaded, ids), last_token_logits(model, ids))   # (B, num_classes)
    True
    """
    info = read_checkpoint_info(ckpt_dir)
    head = info.get("extra", {}).get("classifier")
    weights = Path(ckpt_dir) / WEIGHTS_FILE
    if not head or "gpt_config" not in info or not weights.exists():
        raise ValueError(f"{ckpt_dir} holds no classifier: save_classifier writes {WEIGHTS_FILE} and a config.json "
                         f"with a 'classifier' entry.")
    with torch.device("meta"):  # no memory, no random init: the saved tensors are used as they are
        model = add_classification_head(GPTModel(GPTConfig.from_dict(info["gpt_config"])), len(head["class_names"]))
    fill_from_state_dict(model, load_file(weights))
    return model.eval().to(device or "cpu"), head


def finetune_classifier(model: GPTModel, tokenizer, config: ClassifyConfig, stop: threading.Event | None = None,
                        *, datasets: dict[str, SpamDataset] | None = None) -> Iterator[Event]:
    """Turn ``model`` into a spam classifier and train it; yields events (see ``FinetuneRun``).

    ``datasets``: {"train", "val", "test"} SpamDatasets; default the packaged SMS data (``spam_splits``).
    AccuracyEvents on the first ``eval_batches`` batches before training and after each epoch, and (with
    ``config.final_accuracy``) on every message of each split before and after training. Last before Done:
    the ConfusionEvent of the test split.
    """
    max_length = min(config.max_length or model.cfg.context_length, model.cfg.context_length)
    datasets = datasets or classification_datasets(tokenizer, max_length, config.seed)
    num_classes = max(max(ds.labels, default=0) for ds in datasets.values()) + 1
    prepare_classifier(model, config.trainable, max(num_classes, 2), config.seed)
    torch.manual_seed(config.seed)  # dropout masks
    run = FinetuneRun(model, datasets["train"], datasets.get("val"), classification_collate, classification_loss,
                      config, stop)
    test_loader = make_loader(datasets["test"], config.batch_size, shuffle=False, drop_last=False,
                              collate_fn=classification_collate) if datasets.get("test") else None

    def quick_accuracy(step: int, epoch: float) -> AccuracyEvent:
        return AccuracyEvent(step=step, epoch=epoch,
                             train_accuracy=accuracy(model, run.eval_train, amp_dtype=run.amp_dtype),
                             val_accuracy=accuracy(model, run.eval_val, amp_dtype=run.amp_dtype)
                             if run.eval_val else None)

    def full_accuracy() -> AccuracyEvent:
        return AccuracyEvent(
            step=run.step, epoch=run.epoch, final=True,
            train_accuracy=accuracy(model, run.train_eval_loader, amp_dtype=run.amp_dtype),
            val_accuracy=accuracy(model, run.val_loader, amp_dtype=run.amp_dtype) if run.val_loader else None,
            test_accuracy=accuracy(model, test_loader, amp_dtype=run.amp_dtype) if test_loader else None)

    def before() -> Iterator[Event]:
        for name, dataset in datasets.items():
            if dataset.n_truncated:
                yield WarningEvent(f"{dataset.n_truncated} {name} messages were longer than {max_length} "
                                   f"tokens; only their first {max_length} tokens are read.")
        yield quick_accuracy(0, 0.0)  # the random head: about 50%
        if config.final_accuracy:
            yield full_accuracy()

    def epoch_end(step: int, epoch: int) -> Iterator[Event]:
        yield quick_accuracy(step, run.epoch)

    def after() -> Iterator[Event]:
        if config.final_accuracy:
            yield full_accuracy()
        if test_loader is not None:
            yield ConfusionEvent(step=run.step, matrix=confusion_matrix(model, test_loader))

    return run.events(epoch_end=epoch_end, before=before, after=after)
