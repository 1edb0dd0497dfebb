"""Classification fine-tuning: SMS data, padding invariance, trainable parts, the loop's events, metrics."""

from __future__ import annotations

import threading

import pytest
import torch

from gpt_core.classify import (
    CLASSIFY_PRESETS,
    ClassifyConfig,
    accuracy,
    add_classification_head,
    classify,
    confusion_matrix,
    finetune_classifier,
    last_token_logits,
)
from gpt_core.data import make_loader
from gpt_core.events import AccuracyEvent, DoneEvent, EvalEvent, StartEvent, StepEvent
from gpt_core.finetune_loop import set_trainable
from gpt_core.model import GPTConfig, GPTModel
from gpt_core.spam_data import (
    SpamDataset,
    balance_by_undersampling,
    classification_collate,
    load_sms_spam,
    spam_splits,
)
from gpt_core.tokenizer import BPETokenizer
from gpt_core.tokenizer_choice import ByteTokenizer

EMB, LAYERS = 32, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest




def tiny_model(vocab_size=256, context_length=64, seed=0, drop_rate=0.0) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=vocab_size, context_length=context_length, emb_dim=EMB, n_heads=2,
                    n_layers=LAYERS, drop_rate=drop_rate)
    return GPTModel(cfg)


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return BPETokenizer.gpt2()


# ----- data ---------------------------------------------------------------------------------------------------


def test_sms_data_counts():
    rows = load_sms_spam()
    assert len(rows) == 4862
    assert sum(label == "spam" for label, _ in rows) == 642
    assert rows[1][0] == "spam" and rows[1][1].startswith("Free entry in 2 a wkly comp")


def test_balance_and_split_sizes():
    balanced = balance_by_undersampling(load_sms_spam(), seed=123)
    assert len(balanced) == 1284
    assert sum(label == "spam" for label, _ in balanced) == 642
    assert sum(label == "ham" for label, _ in balanced) == 642
    splits = spam_splits(seed=123)
    assert {name: len(texts) for name, (texts, _) in splits.items()} == {"train": 898, "val": 128, "test": 258}
    assert sum(sum(labels) for _, labels in splits.values()) == 642  # every spam message is used once
    assert spam_splits(seed=123) == splits  # seeded
    assert spam_splits(seed=7)["train"] != splits["train"]


def test_spam_dataset_pads_truncates_and_counts(gpt2_tokenizer):
    texts = ["hello world", "a b c d e f g h", "short"]
    dataset = SpamDataset(texts, [0, 1, 0], gpt2_tokenizer, max_length=5)
    assert dataset.n_truncated == 1
    assert dataset.max_length == 5
    ids, label, length = dataset[0]
    assert ids.tolist() == [31373, 995, 50256, 50256, 50256]
    assert (int(label), int(length)) == (0, 2)
    assert dataset[1][0].tolist() == gpt2_tokenizer.encode("a b c d e")
    assert SpamDataset(texts, [0, 1, 0], gpt2_tokenizer).n_truncated == 0
    with pytest.raises(ValueError, match="3 messages but 2 labels"):
        SpamDataset(texts, [0, 1], gpt2_tokenizer)


def test_collate_trims_padding_columns():
    dataset = SpamDataset(["abc", "abcdefgh", "ab"], [0, 1, 0], ByteTokenizer())
    input_ids, labels, lengths = classification_collate([dataset[0], dataset[2]])
    assert input_ids.tolist() == [[97, 98, 99], [97, 98, 0]]
    assert labels.tolist() == [0, 0] and lengths.tolist() == [3, 2]


# ----- the head, padding, trainable parts ---------------------------------------------------------------------


def test_padding_never_changes_the_prediction():
    model = add_classification_head(tiny_model(seed=3)).eval()
    ids = torch.tensor([[5, 17, 99, 42, 7, 8]])
    padded = torch.cat([ids, torch.zeros(1, 20, dtype=torch.long)], dim=1)  # 20 end-of-text (id 0) pads
    with torch.no_grad():
        plain = last_token_logits(model, ids, torch.tensor([6]))
        with_padding = last_token_logits(model, padded, torch.tensor([6]))
        at_padding = last_token_logits(model, padded)  # the book's mistake: read at the last (pad) position
    diff = (plain - with_padding).abs().max().item()
    print("largest difference with 20 pad tokens:", diff)
    assert plain.shape == (1, 2)
    assert diff < 1e-5
    assert (plain - at_padding).abs().max().item() > 1e-4


def test_classify_gives_both_probabilities(gpt2_tokenizer):
    model = add_classification_head(tiny_model(vocab_size=gpt2_tokenizer.vocab_size, seed=1))
    probs = classify(model, gpt2_tokenizer, "Free entry! Text WIN to 80082")
    assert list(probs) == ["ham", "spam"]
    assert abs(sum(probs.values()) - 1.0) < 1e-6
    assert model.training  # mode restored


def test_trainable_parts_counts():
    model = add_classification_head(tiny_model())
    head = EMB * 2 + 2
    block = 4 * (EMB * EMB + EMB) + (EMB * 4 * EMB + 4 * EMB) + (4 * EMB * EMB + EMB) + 4 * EMB
    final_norm = 2 * EMB
    total = 256 * EMB + 64 * EMB + LAYERS * block + final_norm + head
    assert model.num_parameters() == total
    assert set_trainable(model, "head") == head == 66
    assert set_trainable(model, "last_block") == head + block + final_norm == 12_834
    assert set_trainable(model, "all") == total == 35_778
    assert [p.requires_grad for p in model.tok_emb.parameters()] == [True]
    set_trainable(model, "last_block")
    assert not model.trf_blocks[0].att.W_query.weight.requires_grad
    assert model.trf_blocks[-1].att.W_query.weight.requires_grad
    with pytest.raises(ValueError, match="trainable must be one of head, last_block, all"):
        set_trainable(model, "everything")


def test_add_head_unties_from_embedding():
    model = add_classification_head(tiny_model())
    assert model.out_head.weight.shape == (2, EMB)
    assert model.out_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    assert model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 2)


# ----- metrics ------------------------------------------------------------------------------------------------


class FixedClassifier(torch.nn.Module):
    """Predicts spam exactly when the message's last real token is the byte 'S'."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        is_s = (ids == ord("S")).float()
        return torch.stack([1 - is_s, is_s], dim=-1) + self.weight  # (B, T, 2)


def test_accuracy_and_confusion_matrix():
    texts = ["aS", "bS", "ab", "cc", "dS", "xx"]  # predicted: spam spam ham ham spam ham
    labels = [1, 0, 0, 1, 1, 0]
    loader = make_loader(SpamDataset(texts, labels, ByteTokenizer()), 4, shuffle=False, drop_last=False,
                         collate_fn=classification_collate)
    model = FixedClassifier()
    assert accuracy(model, loader) == pytest.approx(4 / 6)
    assert accuracy(model, loader, max_batches=1) == pytest.approx(2 / 4)
    assert confusion_matrix(model, loader) == [[2, 1], [1, 2]]  # [[ham kept, ham flagged], [missed, caught]]


# ----- the loop -----------------------------------------------------------------------------------------------


def separable_datasets(n_per_class=48, seed=0):
    """Spam ends with '!!' and a digit, ham ends with a lowercase word: trivially separable messages."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(2 * n_per_class):
        words = " ".join(rng.choice(["see", "you", "at", "home", "ok", "later"]) for _ in range(rng.randint(2, 6)))
        spam = i % 2
        texts.append(f"{words} WIN!! {rng.randint(0, 9)}" if spam else f"{words} bye")
        labels.append(spam)
    tokenizer = ByteTokenizer()
    parts = {"train": slice(0, 64), "val": slice(64, 80), "test": slice(80, 96)}
    return {name: SpamDataset(texts[s], labels[s], tokenizer) for name, s in parts.items()}


def run_classifier(config, stop=None):
    model = tiny_model(seed=0)
    events = list(finetune_classifier(model, ByteTokenizer(), config, stop, datasets=separable_datasets()))
    return model, events


def test_short_run_learns_a_separable_task():
    config = ClassifyConfig(epochs=3, lr=2e-3, batch_size=8, eval_every=8, eval_batches=2, trainable="all",
                            device="cpu", autocast="off", seed=5)
    model, events = run_classifier(config)
    kinds = [event.kind for event in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert isinstance(events[0], StartEvent) and events[0].max_steps == 24
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 25))
    assert steps[-1].epoch == 3.0
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [8, 16, 24]
    accuracies = [e for e in events if isinstance(e, AccuracyEvent)]
    # every message before training (the random head) and at the end; the first batches after each epoch
    assert [(e.step, e.final) for e in accuracies] == [(0, False), (0, True), (8, False), (16, False), (24, False),
                                                       (24, True)]
    assert kinds[-2] == "confusion" and sum(map(sum, events[-2].matrix)) == 16  # the test split, last before done
    before, final = accuracies[0], accuracies[-1]
    print("val accuracy before/after:", before.val_accuracy, final.val_accuracy,
          "val loss first/last eval:", evals[0].val_loss, evals[-1].val_loss)
    assert final.val_accuracy == 1.0 and final.test_accuracy == 1.0
    assert before.val_accuracy <= 0.75
    assert evals[-1].val_loss < evals[0].val_loss
    assert isinstance(events[-1], DoneEvent) and events[-1].reason == "max_steps"


def test_run_is_reproducible_and_respects_max_steps():
    config = ClassifyConfig(epochs=2, lr=1e-3, batch_size=8, eval_every=0, eval_batches=1, trainable="head",
                            device="cpu", autocast="off", max_steps=5, final_accuracy=False)
    model_a, events_a = run_classifier(config)
    model_b, events_b = run_classifier(config)
    losses_a = [e.train_loss for e in events_a if isinstance(e, StepEvent)]
    losses_b = [e.train_loss for e in events_b if isinstance(e, StepEvent)]
    assert len(losses_a) == 5 and losses_a == losses_b
    assert torch.equal(model_a.out_head.weight, model_b.out_head.weight)
    assert torch.equal(model_a.trf_blocks[0].ff.layers[0].weight, tiny_model(seed=0).trf_blocks[0].ff.layers[0].weight)
    assert events_a[-1].reason == "max_steps" and events_a[-1].step == 5


def test_stop_flag_ends_after_the_current_step():
    stop = threading.Event()
    config = ClassifyConfig(epochs=3, batch_size=8, device="cpu", autocast="off", final_accuracy=False)
    model = tiny_model()
    events = finetune_classifier(model, ByteTokenizer(), config, stop, datasets=separable_datasets())
    seen = []
    for event in events:
        seen.append(event)
        if isinstance(event, StepEvent) and event.step == 2:
            stop.set()
    assert seen[-1].reason == "stopped" and seen[-1].step == 3
    assert seen[-1].message == "Stopped at step 3, as asked."


def test_bad_settings_and_tiny_data_raise_clear_errors():
    with pytest.raises(ValueError, match="trainable must be one of"):
        ClassifyConfig(trainable="top")
    with pytest.raises(ValueError, match="learning rate must be a number above 0"):
        ClassifyConfig(lr=0)
    with pytest.raises(ValueError, match="fewer than one batch of 128"):
        run_classifier(ClassifyConfig(batch_size=128, device="cpu"))


def test_presets():
    book = CLASSIFY_PRESETS["book-gpt2-small"]
    assert (book.epochs, book.lr, book.weight_decay, book.batch_size, book.trainable) == (5, 5e-5, 0.1, 8,
                                                                                          "last_block")
    assert (book.eval_every, book.eval_batches) == (50, 5)
    assert CLASSIFY_PRESETS["classroom"].trainable == "all"
