"""Classify tab (chapter 6): turn the chosen GPT into a spam classifier, watch it learn, then try it.

The run starts from a copy of the model in the shared picker (the cached model is never changed), swaps its
vocabulary-sized output layer for a 2-way one (ham, spam), and trains in the background through the server's
job manager; a timer polls only the events that arrived since the last poll. Before Start the tab shows its
plan: the data, the new head's size for the chosen model, and the accuracy a random head starts from.
"""

from __future__ import annotations

import copy
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import gradio as gr

from gpt_core.classify import (
    CLASSIFY_PRESETS,
    ClassifyConfig,
    classification_loss,
    classify,
    finetune_classifier,
    last_token_logits,
    prepare_classifier,
    save_classifier,
)
from gpt_core.device import device_in_words, pick_device
from gpt_core.fast import speed_up_for_training
from gpt_core.finetune_loop import FinetuneRun, set_trainable
from gpt_core.spam_data import CLASS_NAMES, load_sms_spam, spam_splits
from ui import models
from ui.api import (
    SYNC_RUN_QUEUE,
    RunTimer,
    Stopwatch,
    current_job_id,
    finite,
    kept_by_run,
    model_zip,
    run_summary,
    sync_run_limit,
    tool,
    wait_for_run,
    zip_or_note,
)
from ui.budgets import BudgetStore, env_number, register_store
from ui.common import (
    NumberBox,
    SliderBox,
    cap_text,
    explain,
    friendly,
    learning_rate,
    number_input,
    show_source,
)
from ui.jobs import JobView
from ui.models import LoadedModel, load_choice, model_bytes
from ui.run_tab import RunHistory, RunTab, with_note
from ui.runs import (
    browser_id_state,
    job_manager,
    latest_job,
    owner_of,
    pin_torch_threads,
    run_threads,
    sharing_cores,
)
from ui.zerogpu import on_cpu_on_zero_gpu
from visualizations.finetune import accuracy_curves_figure, class_probability_figure, confusion_figure
from visualizations.training import training_figure

JOB_LABEL = "classify"
MAX_MESSAGE_CHARS = 5_000
MAX_KEPT_CLASSIFIERS = 8  # trained classifiers kept in memory (the most recent browsers)
N_EXAMPLES = 6
SPLIT_NAMES = ("train", "val", "test")

INTRO = """
### Classify: fine-tune the GPT into a spam filter
A GPT ends in a layer that scores every token of its vocabulary. For classification that layer is replaced by
a tiny new one with **2 outputs: ham (a normal message) and spam**. The class is read at the **last real
token** of each message: with causal attention, only that position has seen the whole message. Choose which
parts may learn, press **Start**, and watch the loss fall and the accuracy rise. The run starts from a copy
of the model chosen at the top of the page; then type your own message to test the classifier.
"""

PRESET_LABELS = [
    ("classroom: small model, offline, about 20 s on a CPU", "classroom"),
    ("the book: GPT-2 small (pick it at the top; online)", "book-gpt2-small"),
]


def head_weights(width: int, n_classes: int = 2) -> str:
    """The new head's size, written out.

    >>> head_weights(192)
    '2 × 192 + 2 = 386 weights'
    """
    return f"{n_classes} × {width:,} + {n_classes} = {n_classes * width + n_classes:,} weights"


def trainable_labels(width: int | None) -> list[tuple[str, str]]:
    """The choices of which parts learn; the head's size when the model's width is known."""
    head = f"the new head only ({head_weights(width)})" if width else "the new head only (2 outputs)"
    return [(head, "head"), ("last block + final norm + head (the book's choice)", "last_block"),
            ("everything", "all")]


def model_shape(choice: str | None) -> tuple[int, int] | None:
    """(vocabulary size, width) of the model in the picker, when it is built in or already loaded, else None
    (a GPT-2 that has not been downloaded yet is not loaded just to describe it)."""
    if not choice:
        return None
    if choice not in models.built_in_labels() and choice not in models._loaded:
        return None
    try:
        cfg = load_choice(choice).cfg
    except ValueError:
        return None
    return cfg.vocab_size, cfg.emb_dim


def model_markdown(choice: str | None) -> str:
    """What changes in the chosen model, with its own numbers."""
    shape = model_shape(choice)
    if shape is None:
        return ("The chosen model's output layer (one score per token of its vocabulary) is replaced by a new "
                "2-way head; its size shows here once the model is loaded (press Start).")
    vocab, width = shape
    return (f"**The chosen model** ({choice}) ends in a layer that turns each position's {width:,}-wide vector "
            f"into a score for all **{vocab:,} tokens** of its vocabulary ({width:,} × {vocab:,} weights). "
            f"Fine-tuning replaces it by a new head with 2 outputs: **{head_weights(width)}** (a weight per "
            f"input and class, plus a bias per class), started at random.")


def model_views(choice: str | None):
    """The model description and the trainable choices (their labels name the head's size) for the picker's model."""
    shape = model_shape(choice)
    return model_markdown(choice), gr.update(choices=trainable_labels(shape[1] if shape else None))


# ---------------------------------------------------------------------------------------------------------------
# The data preview
# ---------------------------------------------------------------------------------------------------------------


def data_preview(examples_seed: float = 0) -> tuple[str, list[list[str]]]:
    """Show the packaged SMS spam data: its counts, its balanced 70/10/20 split and a few training messages of each class.

    Args:
        examples_seed: which random few messages to show (another number, other messages).

    Returns:
        The counts and the split (Markdown) and a table of (label, message) rows.
    """
    rows = load_sms_spam()
    n_spam = sum(label == "spam" for label, _ in rows)
    splits = spam_splits()
    lines = [
        f"**The SMS Spam Collection** (packaged, works offline): {len(rows):,} messages, "
        f"{len(rows) - n_spam:,} ham and {n_spam:,} spam. Ham is {(len(rows) - n_spam) / n_spam:.1f}× more common, "
        f"so a model that always says *ham* would already be right {1 - n_spam / len(rows):.0%} of the time. "
        f"To make accuracy mean something, ham is **undersampled to {n_spam} + {n_spam} = {2 * n_spam:,}** "
        f"messages, then split 70% / 10% / 20%:",
        "",
        "| split | messages | ham | spam |",
        "|---|---:|---:|---:|",
    ]
    for name, (texts, labels) in splits.items():
        n_split_spam = sum(labels)
        lines.append(f"| {name} | {len(texts):,} | {len(texts) - n_split_spam:,} | {n_split_spam:,} |")
    rng = random.Random(number_input(examples_seed, "The examples seed", minimum=0, maximum=2**32 - 1, whole=True,
                                     default=0))
    train_texts, train_labels = splits["train"]
    examples = []
    for label in (1, 0):
        texts = [text for text, y in zip(train_texts, train_labels) if y == label]
        examples += [[CLASS_NAMES[label], text] for text in rng.sample(texts, N_EXAMPLES // 2)]
    rng.shuffle(examples)
    return "\n".join(lines), examples


# ---------------------------------------------------------------------------------------------------------------
# The run: a copy of the shared model, trained in a background job
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainedClassifier:
    model: object  # GPTModel with a 2-way head, eval mode
    tokenizer: object
    max_length: int  # messages are cut to this many tokens, as in training
    label: str  # the model it started from
    job_id: str = ""  # the run that trained it


# Each browser's latest classifier, under a count and memory budget (least recently used go first).
CLASSIFIERS = register_store(BudgetStore(
    "classifier", int(env_number("LLM_LAB_KEPT_CLASSIFIERS", 30)),
    env_number("LLM_LAB_CLASSIFIERS_MEMORY_GB", 3) * 1e9))
CLASSIFIER_ZIP_LABEL = "fine-tuned classifier (zip: model.safetensors + config.json + lab_tokenizer.json)"
NO_CLASSIFIER = ("There is no classifier yet: press Start fine-tuning above, wait until the run finishes, "
                 "then classify your message.")


def keep_classifier(owner: str, trained: TrainedClassifier) -> None:
    """Remember this browser's latest classifier (it replaces the one before)."""
    CLASSIFIERS.put(owner, "latest", trained, size_bytes=model_bytes(trained.model))


def classifier_of(owner: str) -> TrainedClassifier:
    """This browser's classifier; a message when there is none or it was cleared to make room."""
    return CLASSIFIERS.get(owner, "latest", missing=NO_CLASSIFIER)


def classifier_zip(trained: TrainedClassifier) -> str:
    """The classifier as a zip: model.safetensors, config.json (its GPTConfig, classes and message length, read
    back by gpt_core.classify.load_classifier) and lab_tokenizer.json."""
    return model_zip(trained.model, trained.tokenizer, f"llm-lab-spam-classifier-{trained.label}", save=save_classifier,
                     class_names=CLASS_NAMES, max_length=trained.max_length,
                     extra={"fine_tuned_from": trained.label, "job_id": trained.job_id})


def classify_config(preset: str, trainable: str, epochs: float, lr: float) -> tuple[ClassifyConfig, str | None]:
    """The preset with the student's choices, its steps clamped to the server's cap (note says so)."""
    if preset not in CLASSIFY_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(CLASSIFY_PRESETS)}.")
    epochs = number_input(epochs, "The number of epochs", minimum=1, maximum=10, whole=True)
    config = replace(CLASSIFY_PRESETS[preset], trainable=trainable, epochs=epochs, lr=learning_rate(lr))
    steps_per_epoch = len(spam_splits(config.seed)["train"][0]) // config.batch_size
    steps, note = job_manager().clamp_steps(config.epochs * steps_per_epoch)
    return (replace(config, max_steps=steps) if note else config), note


def classify_job(loaded: LoadedModel, config: ClassifyConfig, owner: str):
    """The job body: copy the model, measure, train (engine events), then the confusion matrix; keep the result."""
    config = on_cpu_on_zero_gpu(config)  # ZeroGPU: fine-tuning does not train in GPU calls yet (ui.zerogpu)

    def run(stop: threading.Event) -> Iterator:
        pin_torch_threads()
        model = copy.deepcopy(loaded.model)  # the shared, cached model is never modified
        speed_up_for_training(model, pick_device(config.device))
        context_length = model.cfg.context_length
        max_length = min(config.max_length or context_length, context_length)
        for event in sharing_cores(finetune_classifier(model, loaded.tokenizer, config, stop)):
            if event.kind == "done" and event.reason != "nan":  # diverged weights would answer nonsense
                model.eval()
                keep_classifier(owner, TrainedClassifier(model, loaded.tokenizer, max_length, loaded.label,
                                                         current_job_id()))
            yield event

    return run


# ---------------------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------------------


RUN = RunTab(JOB_LABEL, "classification run", n_views=4)


def start_run(choice: str | None, preset: str, trainable: str, epochs: float, lr: float,
              history: RunHistory | None, browser_id: str | None, request: gr.Request = None):
    """Start fine-tuning a copy of the chosen model into a spam classifier in the background (poll it with classify_poll).

    Scripts that want one call use classify_run instead.

    Args:
        choice: the model to start from (a label of the model menu).
        preset: the run's preset (classroom, or the book's settings).
        trainable: which parts learn (the last block and the head, or all).
        epochs: passes over the training messages (1 to 10).
        lr: learning rate.
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A status line with the job id, and the poll timer.
    """
    if not choice:
        raise ValueError("No model is loaded: pick a model in the menu at the top of the page first.")
    owner = RUN.owner_for_start(history, browser_id, request)
    loaded = load_choice(choice)  # a clear message when, say, GPT-2 cannot be downloaded
    config, note = classify_config(preset, trainable, epochs, lr)
    history = RUN.start(owner, classify_job(loaded, config, owner), loaded.label, start_note=note)
    started = f"Started fine-tuning a copy of **{loaded.label}** ({history.job_id})."
    return with_note(started, note), history, gr.Timer(active=True)


def classify_run(choice: str | None, preset: str, trainable: str, epochs: float, lr: float,
                 request: gr.Request = None) -> tuple[dict, str | None]:
    """Fine-tune a copy of a model into an SMS spam classifier and wait until the run ends (for scripts and agents).

    The run goes through the server's job queue and caps (steps, minutes per run). It belongs to the caller's
    session, so classify_text in the same session then uses the new classifier; no browser state is needed.

    Args:
        choice: the model to start from (a label of the model menu).
        preset: the run's preset (classroom, or the book's settings).
        trainable: which parts learn (the last block and the head, or all).
        epochs: passes over the training messages (1 to 10).
        lr: learning rate.

    Returns:
        A summary dict: job id, status, steps, final train and validation loss, accuracy on the train, validation
        and test messages before and after training, the test confusion matrix, seconds and settings; and the
        fine-tuned classifier as a zip file (model.safetensors, config.json with its classes, lab_tokenizer.json;
        gpt_core.classify.load_classifier reads it), or None when the run kept no classifier (notes say why).
    """
    clock = Stopwatch()
    _, history, _ = start_run(choice, preset, trainable, epochs, lr, None, None, request)
    owner = owner_of(None, request)
    history = wait_for_run(owner, history)
    if history.status == "failed":
        raise ValueError(f"The run failed: {history.error}")

    def accuracy(values) -> dict | None:
        return dict(zip(SPLIT_NAMES, map(finite, values))) if values else None

    config, _ = classify_config(preset, trainable, epochs, lr)
    settings = {"model": choice, "preset": preset, "trainable": config.trainable, "epochs": config.epochs,
                "lr": config.lr, "batch_size": config.batch_size}
    summary = run_summary(history, clock.seconds, settings, accuracy_before=accuracy(history.baseline),
                          accuracy_after=accuracy(history.final), confusion=history.confusion,
                          classes=list(CLASS_NAMES))
    return summary, zip_or_note(lambda: classifier_zip(kept_by_run(CLASSIFIERS, owner, history.job_id, "classifier")),
                                summary["notes"])


def download_classifier_file(browser_id: str | None, request: gr.Request = None) -> str:
    """This session's fine-tuned classifier as a zip file (model.safetensors, config.json, lab_tokenizer.json).

    Args:
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The zip file; gpt_core.classify.load_classifier reads the unzipped folder back.
    """
    return classifier_zip(classifier_of(owner_of(browser_id, request)))


def stop_run(history: RunHistory | None, browser_id: str | None, request: gr.Request = None) -> str:
    """Stop this session's classification run after its current step.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A line saying whether a run was stopped.
    """
    return RUN.stop(history, browser_id, request)


def results_markdown(history: RunHistory | None = None) -> str:
    """Accuracy on every message of each split, before and after training. Without a run: the plan, a random
    head on balanced classes is right about half of the time."""
    sizes = {name: len(texts) for name, (texts, _) in spam_splits().items()}
    header = "| | " + " | ".join(f"{name} ({sizes[name]:,})" for name in SPLIT_NAMES) + " |"
    lines = ["**Accuracy on every message of each split**", "", header, "|---|---:|---:|---:|"]
    if history is None:
        lines += ["| before training | ≈ 50% | ≈ 50% | ≈ 50% |", "| after training | … | … | … |", "",
                  "Before training the new head is random and every split is about half spam, so it starts near "
                  "a coin flip (≈ 50%). The run measures it on every message, trains, then measures again."]
        return "\n".join(lines)
    for title, values in (("before training", history.baseline), ("after training", history.final)):
        cells = [f"{value:.1%}" if value is not None else "…" for value in values or (None,) * len(SPLIT_NAMES)]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The engine warns once per split about messages cut to max_length; the status says it once for all of them.
CUT_MESSAGES = re.compile(r"(\d+) (\w+) messages were longer than (\d+) tokens; only their first \d+ tokens are read\.")


def merged_warnings(warnings: list[str]) -> list[str]:
    """The run's warnings, each once, with the per-split warnings about cut messages as one line.

    >>> merged_warnings(["3 train messages were longer than 64 tokens; only their first 64 tokens are read.",
    ...                  "1 test messages were longer than 64 tokens; only their first 64 tokens are read.",
    ...                  "Slow.", "Slow."])
    ['4 messages (3 train, 1 test) are longer than 64 tokens: the classifier reads only their first 64.', 'Slow.']
    """
    cut = [match.groups() for match in map(CUT_MESSAGES.fullmatch, warnings) if match]
    kept = list(dict.fromkeys(warning for warning in warnings if not CUT_MESSAGES.fullmatch(warning)))
    if cut:
        splits = ", ".join(f"{int(count):,} {split}" for count, split, _ in cut)
        total, limit = sum(int(count) for count, _, _ in cut), cut[0][2]
        kept.insert(0, f"{total:,} messages ({splits}) are longer than {limit} tokens: the classifier reads only "
                       f"their first {limit}.")
    return kept


def run_status(history: RunHistory, view: JobView) -> str:
    device = device_in_words(history.device, run_threads()) if history.device else None
    status = replace(history, device=device, warnings=merged_warnings(history.warnings)).status_line(view)
    if view.done and history.confusion is not None:
        status += "\n\nThe classifier is ready: type a message below and press **Classify**."
    return status


def planned_steps(config: ClassifyConfig) -> int:
    """The optimizer steps of a run with this config: a step per batch of every epoch, or the server's cap."""
    steps_per_epoch = len(spam_splits(config.seed)["train"][0]) // config.batch_size
    return config.max_steps or config.epochs * steps_per_epoch


def plan_figures(config: ClassifyConfig) -> tuple:
    """Empty loss and accuracy plots over the planned steps (the accuracy plot marks the coin flip, 50%)."""
    steps = planned_steps(config)
    return (training_figure([], [], steps, title="loss while training (lower is better): appears after Start"),
            accuracy_curves_figure([], steps, title="accuracy on the first batches of train and validation"))


def run_views(history: RunHistory, view: JobView, owner: str) -> tuple:
    """The loss and accuracy curves, the accuracy table and (once computed) the confusion matrix."""
    loss_plot = training_figure(history.step_losses, history.evals, history.max_steps)
    accuracy_plot = accuracy_curves_figure(history.accuracy, history.max_steps,
                                           title="accuracy on the first batches of train and validation")
    confusion_plot = confusion_figure(history.confusion, CLASS_NAMES) if history.confusion else gr.skip()
    return loss_plot, accuracy_plot, results_markdown(history), confusion_plot


def poll_run(history: RunHistory | None, browser_id: str | None, request: gr.Request = None):
    """Follow this session's classification run: its status, loss and accuracy curves, accuracy table and confusion matrix.

    Args:
        history: the run the page follows (kept by the page; a script's session finds its latest run).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        The status line, the loss figure, the accuracy figure, the accuracy before and after training (Markdown),
        the confusion matrix figure and the poll timer (inactive once the run has ended).
    """
    return RUN.poll(history, browser_id, request, run_status, run_views)


reattach = RUN.reattach  # on page load: follow this browser's classification run again


def classify_message(text: str, browser_id: str | None, request: gr.Request = None):
    """Classify one SMS message as spam or not spam with the classifier this session fine-tuned.

    Nothing to classify yet (no classifier, an empty box) is said in the note, in place: an error would
    leave a red badge on the views until the next answer.

    Args:
        text: the message (cut to the server's limit).
        browser_id: the page's signed browser id; leave it empty in a script (the caller's session owns its runs).

    Returns:
        A bar chart of the two classes' probabilities and a verdict line such as "spam 97.1% · not spam 2.9%".
    """
    text, char_note = cap_text(text, MAX_MESSAGE_CHARS, "message")
    if not text.strip():
        return None, "⚠ Type a message first: the box is empty."
    owner = owner_of(browser_id, request)
    try:
        trained = classifier_of(owner)
    except ValueError as error:
        training = latest_job(owner, JOB_LABEL)
        if training is not None and not training.done:
            return None, ("⚠ Your classifier is still training: press Classify again when the run above has "
                          "finished.")
        return None, f"⚠ {error}"
    n_tokens = len(trained.tokenizer.encode_ordinary(text))  # as classify() reads it
    probs = classify(trained.model, trained.tokenizer, text, max_length=trained.max_length)
    notes = [char_note] if char_note else []
    if n_tokens > trained.max_length:
        notes.append(f"Your message has {n_tokens:,} tokens; the classifier reads only the first "
                     f"{trained.max_length} (the length it was trained with), so the rest is ignored.")
    verdict = " · ".join(f"{name} {prob:.1%}" for name, prob in probs.items())
    summary = f"**{verdict}** (classifier fine-tuned from {trained.label}, {n_tokens:,} tokens read"
    summary += f", cut to {trained.max_length})" if n_tokens > trained.max_length else ")"
    return class_probability_figure(probs), "\n\n".join([summary, *[f"⚠ {note}" for note in notes]])


def preset_settings(preset: str):
    """Moving to another preset sets its epochs, learning rate and trainable parts."""
    config = CLASSIFY_PRESETS[preset]
    return gr.update(value=config.trainable), gr.update(value=config.epochs), gr.update(value=config.lr)


# ---------------------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------------------


def build_tab(model_choice: gr.Dropdown) -> None:
    browser_id = browser_id_state()
    explain(INTRO)
    shape = model_shape(models.DEFAULT_CHOICE)
    model_md = gr.Markdown(model_markdown(models.DEFAULT_CHOICE), label="the model", elem_classes=["lab-note"],
                           elem_id="classify-model")
    counts, examples = data_preview(0)
    with gr.Row():
        with gr.Column(scale=3):
            data_md = gr.Markdown(counts, label="the data")
        with gr.Column(scale=4):
            examples_table = gr.Dataframe(examples, headers=["label", "message"], label="a few training messages",
                                          interactive=False, wrap=True, column_widths=["12%", "88%"],
                                          max_height=260)
            more = gr.Button("Show other examples", size="sm")
    examples_seed = NumberBox(0, visible=False)

    classroom = CLASSIFY_PRESETS["classroom"]
    plan_loss, plan_accuracy = plan_figures(classify_config("classroom", classroom.trainable, classroom.epochs,
                                                            classroom.lr)[0])
    with gr.Row():
        preset = gr.Dropdown(PRESET_LABELS, value="classroom", label="preset", scale=3)
        trainable = gr.Radio(trainable_labels(shape[1] if shape else None), value=classroom.trainable,
                             label="which parts learn", scale=4)
    with gr.Row():
        epochs = SliderBox(1, 10, value=classroom.epochs, step=1, label="epochs (passes over the training messages)")
        lr = NumberBox(classroom.lr, label="learning rate", minimum=0)
        with gr.Column():
            start = gr.Button("Start fine-tuning", variant="primary", elem_id="classify-start")
            stop = gr.Button("Stop")
    status = gr.Markdown("Press **Start fine-tuning**: the run uses a copy of the model chosen at the top.",
                         label="status", elem_classes=["lab-note"], elem_id="classify-status")
    with gr.Row():
        loss_plot = gr.Plot(plan_loss, label="loss curves", show_label=False, elem_id="classify-loss")
        accuracy_plot = gr.Plot(plan_accuracy, label="accuracy curves", show_label=False, elem_id="classify-accuracy")
    with gr.Row():
        results = gr.Markdown(results_markdown(), label="accuracy before and after", elem_id="classify-results")
        confusion_plot = gr.Plot(label="confusion matrix", show_label=False, elem_id="classify-confusion")

    gr.Markdown("#### Try the classifier")
    with gr.Row():
        with gr.Column(scale=3):
            message = gr.Textbox("Congratulations! You have won a free cruise. Text WIN to 80082 to claim now!",
                                 label="a message", lines=3, max_length=MAX_MESSAGE_CHARS)
            classify_button = gr.Button("Classify", variant="primary", elem_id="classify-button")
            verdict = gr.Markdown(label="verdict", elem_classes=["lab-note"], elem_id="classify-verdict")
        probs_plot = gr.Plot(label="spam or not: probabilities", show_label=False, scale=2, elem_id="classify-probs")
    with gr.Row():
        download = gr.Button("Download the fine-tuned model", elem_id="classify-download")
        download_file = gr.File(label=CLASSIFIER_ZIP_LABEL, interactive=False, visible=False, height=90,
                                elem_id="classify-download-file")  # shown once there is a file
    history = gr.State(None)
    timer = RunTimer(1.0, active=False)
    show_source(FinetuneRun.train_step, classification_loss, last_token_logits, finetune_classifier, prepare_classifier,
                set_trainable, classify)

    more.click(lambda seed: seed + 1, examples_seed, examples_seed, api_name=False, queue=False).then(
        tool(data_preview, "classify_data"), examples_seed, [data_md, examples_table], api_name="classify_data")
    preset.change(friendly(preset_settings), preset, [trainable, epochs, lr], api_name=False, queue=False)
    model_choice.change(friendly(model_views), model_choice, [model_md, trainable], api_name=False,
                        show_progress="hidden")
    start.click(tool(start_run, "classify_start"), [model_choice, preset, trainable, epochs, lr, history, browser_id],
                [status, history, timer], api_name="classify_start", concurrency_limit=4).then(
        friendly(model_views), model_choice, [model_md, trainable], api_name=False, show_progress="hidden")
    stop.click(tool(stop_run, "classify_stop"), [history, browser_id], status, api_name="classify_stop")
    timer.tick(tool(poll_run, "classify_poll"), [history, browser_id],
               [status, loss_plot, accuracy_plot, results, confusion_plot, history, timer],
               api_name="classify_poll", show_progress="hidden", concurrency_limit=None)
    classify_button.click(tool(classify_message, "classify_text"), [message, browser_id], [probs_plot, verdict],
                          api_name="classify_text", concurrency_limit=4)
    message.submit(friendly(classify_message), [message, browser_id], [probs_plot, verdict], api_name=False,
                   concurrency_limit=4)
    download.click(tool(download_classifier_file, "classify_download"), browser_id, download_file,
                   api_name="classify_download", concurrency_limit=2).success(
        lambda: gr.File(visible=True), None, download_file, api_name=False, queue=False)
    # One call for scripts and agents: start, wait until the run ends (within the server's caps), the summary
    # and the fine-tuned classifier's zip.
    run_summary_json = gr.JSON(label="run summary", visible=False)
    run_zip = gr.File(label=CLASSIFIER_ZIP_LABEL, visible=False)
    gr.Button(visible=False).click(tool(classify_run, "classify_run"), [model_choice, preset, trainable, epochs, lr],
                                   [run_summary_json, run_zip], api_name="classify_run",
                                   concurrency_limit=sync_run_limit(), concurrency_id=SYNC_RUN_QUEUE)
    gr.context.Context.root_block.load(friendly(reattach), browser_id, [history, timer], api_name=False)
