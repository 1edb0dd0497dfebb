"""The Pretrain tab's section "Inside the model across training": a run's snapshots, one step at a time.

The run photographs its model at log-spaced steps (``gpt_core.snapshots``; ``TrainConfig.snapshot_steps``)
and ``RunHistory.snapshots`` collects the photos. A slider picks one; the views redraw from its lists (no
model is run here): the head scores across all snapshots, every head's attention on the probe line, the 2-D
map of token embeddings, the next-token bars, the logit lens and the greedy sample.

Wiring (the tab owns the run; this module owns the section)::

    section = build_snapshot_section(history)       # inside the tab's layout, after its history State
    # in the tab's poll views:  *section.refresh(history)  for the outputs  *section.refresh_outputs

``refresh`` only moves the slider's range and a snapshot count; the count's change redraws the views, so a
poll without a new snapshot costs nothing, and the student's chosen snapshot stays chosen.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import numpy as np

from gpt_core.snapshots import snapshot_steps
from ui.api import tool
from ui.common import SliderBox, friendly, number_input
from ui.run_tab import RunHistory
from visualizations.lens import knockout_figure, lens_figure
from visualizations.model import attention_grid_figure
from visualizations.snapshots import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    embedding_map_figure,
    head_scores_figure,
    note_figure,
    parse_labels,
    steps_line,
)
from visualizations.training import samples_html

DEFAULT_MAX_STEPS = 1000  # the Pretrain tab's default run: photos at steps 0, 10, 30, 100, 300, 1000
DEFAULT_LABELS = "ROMEO JULIET I you my the king . , : ! ? and to of"  # names, pronouns, punctuation, little words
NO_TEXT = "This run has no tokenizer, so there is no probe text: only the map of token embeddings."

EXPLANATION = """
The run photographs its model at a few steps, close together at the start (when most changes) and further
apart later. Move the slider to see the model at each one. The probe is one line said twice:
**ROMEO: / I will go to the king.**, then the same again.
- **Head scores**: a *previous-token* head looks at the token just before; an *induction* head, in the second
  line, looks at the token that followed the same token in the first line: the trick that lets a model copy.
  Watch which heads take on which job: a one-minute run usually grows a previous-token head; induction heads
  come later, in longer runs of models with two layers or more.
- **Attention grid**: every head's weights on the probe (rows: layers, columns: heads; within a tile, each row
  is a token looking back at the earlier ones).
- **Map of token embeddings**: the 1,000 most frequent tokens flattened to 2-D (PCA). Tokens used alike
  (punctuation, names, little words) drift together. Type the tokens to label below.
- **Next token** and **logit lens**: what the model expects after the sample prompt, and what each layer would
  say at each probe position if it were the last one.
"""


def before_any_run(max_steps: int = DEFAULT_MAX_STEPS) -> str:
    """The section's note before a run has sent its first snapshot.

    >>> before_any_run(1000)
    'Start a run: the model is photographed at steps 0, 10, 30, 100, 300 and 1000.'
    """
    steps = [str(step) for step in snapshot_steps(max_steps)]
    return f"Start a run: the model is photographed at steps {', '.join(steps[:-1])} and {steps[-1]}."


@dataclass
class SnapshotSection:
    """The section's components; ``refresh`` keeps the slider in step with the run's snapshots."""

    index: gr.Slider  # which snapshot: 0 is the untrained model
    labels: gr.Textbox  # tokens to label on the map
    count: gr.State  # how many snapshots the views know of: its change redraws them
    heading: gr.Markdown
    scores: gr.Plot
    attention: gr.Plot
    embedding_map: gr.Plot
    next_tokens: gr.Plot
    sample: gr.HTML
    lens: gr.Plot

    @property
    def view_outputs(self) -> list:
        return [self.heading, self.scores, self.attention, self.embedding_map, self.next_tokens, self.sample,
                self.lens]

    @property
    def refresh_outputs(self) -> list:
        """What ``refresh`` returns values for, in its order."""
        return [self.index, self.count]

    @staticmethod
    def refresh(history: RunHistory | None, index: float | None = None, known: int | None = None) -> tuple:
        """(slider update, snapshot count) for the tab's poll: the slider's range grows as snapshots arrive.

        A student who is on the newest snapshot (``index`` of the ``known`` ones: the slider's value and the
        count the page has) follows the run to each new one; one who went back to an earlier snapshot stays
        there. A new run, with no snapshot yet, puts the slider back at 0.
        """
        steps = [snapshot.step for snapshot in (history.snapshots if history else [])]
        info = f"steps {' · '.join(map(str, steps))}" if steps else "no snapshot yet"
        slider = gr.update(maximum=max(len(steps) - 1, 1), interactive=len(steps) > 1, info=info)
        if not steps:
            slider["value"] = 0
        elif known is not None and len(steps) > known and following(index, known):
            slider["value"] = len(steps) - 1
        return slider, len(steps)


def following(index, known: int) -> bool:
    """True when the slider is on the newest of the ``known`` snapshots (or on none yet).

    >>> following(2, 3), following(0, 3), following(0, 0)
    (True, False, True)
    """
    try:
        return int(number_input(index, "The snapshot", minimum=0)) >= known - 1
    except ValueError:
        return True


def build_snapshot_section(history: gr.State, max_steps: int = DEFAULT_MAX_STEPS,
                           open: bool = True) -> SnapshotSection:  # noqa: A002 - gr.Accordion's own name
    """The accordion "Inside the model across training" and its events (redraw: api_name "pretrain_snapshots").

    ``max_steps``: the tab's default run length, for the note shown before any run.
    """
    with gr.Accordion("Inside the model across training", open=open, elem_id="pretrain-snapshots"):
        gr.Markdown(EXPLANATION, elem_classes=["lab-explain"])
        heading = gr.Markdown(before_any_run(max_steps), label="snapshot steps", elem_id="pretrain-snapshot-heading")
        with gr.Row():
            index = SliderBox(0, 1, value=0, step=1, label="snapshot (0 = the untrained model)",
                              info="no snapshot yet", interactive=False, scale=3, elem_id="pretrain-snapshot-index")
            labels = gr.Textbox(DEFAULT_LABELS, label="tokens to label on the map (separated by spaces; Enter)",
                                max_length=MAX_LABELS * (MAX_LABEL_CHARS + 1), scale=2,
                                elem_id="pretrain-snapshot-labels")
        scores = gr.Plot(label="what each head does", show_label=False, elem_id="pretrain-snapshot-scores")
        attention = gr.Plot(label="attention grid", show_label=False, elem_id="pretrain-snapshot-attention")
        with gr.Row():
            embedding_map = gr.Plot(label="embedding map", show_label=False, scale=3, elem_id="pretrain-snapshot-map")
            with gr.Column(scale=2):
                next_tokens = gr.Plot(label="next-token guesses", show_label=False, elem_id="pretrain-snapshot-next")
                sample = gr.HTML(label="sample", elem_id="pretrain-snapshot-sample")
        lens = gr.Plot(label="logit lens", show_label=False, elem_id="pretrain-snapshot-lens")
        count = gr.State(0)
    section = SnapshotSection(index, labels, count, heading, scores, attention, embedding_map, next_tokens, sample,
                              lens)
    inputs = [index, labels, history]
    index.change(tool(snapshot_views, "pretrain_snapshots"), inputs, section.view_outputs, api_name="pretrain_snapshots",
                 trigger_mode="always_last", show_progress="hidden")
    labels.submit(friendly(snapshot_views), inputs, section.view_outputs, api_name=False, show_progress="hidden")
    count.change(friendly(snapshot_views), inputs, section.view_outputs, api_name=False, show_progress="hidden")
    return section


def snapshot_views(index: float = 0, labels: str = DEFAULT_LABELS, history: RunHistory | None = None) -> tuple:
    """The views of one snapshot of the model inside this session's pretraining run (0 = the untrained model).

    Args:
        index: which snapshot (0 = the untrained model; the run takes them at log-spaced steps).
        labels: tokens to label on the embedding map, separated by spaces.
        history: the page's run (kept by the page; a script's session has its own).

    Returns:
        The snapshot steps (Markdown), what each head does, the attention grid, the embedding map, the
        next-token guesses (figures), a sample (HTML) and the logit lens (figure). Before any snapshot: a note.
    """
    snapshots = history.snapshots if history is not None else []
    if not snapshots:
        note = before_any_run(history.max_steps if history is not None else DEFAULT_MAX_STEPS)
        return note, None, None, None, None, "", None
    index = number_input(index, "The snapshot", minimum=0, whole=True, default=0)
    index = min(index, len(snapshots) - 1)  # the slider can be ahead of a new run's first snapshots
    snapshot = snapshots[index]
    steps = [s.step for s in snapshots]
    heading = steps_line(steps, index, snapshot_steps(max(history.max_steps, 1)))
    map_title = f"Token embeddings at step {snapshot.step}, flattened to 2-D (PCA)"
    embedding_map = embedding_map_figure(snapshot.map_tokens, snapshot.map_xy, snapshot.map_variance,
                                         parse_labels(labels), title=map_title)
    if not snapshot.probe_tokens:
        empty = note_figure(NO_TEXT)
        return heading, empty, empty, embedding_map, empty, "", empty
    scores = head_scores_figure(steps, [s.previous_token for s in snapshots], [s.induction for s in snapshots],
                                index, title="What each head does, snapshot by snapshot")
    attention = attention_grid_figure(np.asarray(snapshot.attention, dtype=np.float32), snapshot.probe_tokens,
                                      title=f"Every head's attention on the probe at step {snapshot.step}")
    next_tokens = (knockout_figure(snapshot.next_tokens, snapshot.next_probs,
                                   title=f"After “{html.escape(snapshot.prompt)}” at step {snapshot.step}")
                   if snapshot.next_tokens else note_figure("No sample prompt: no next-token guesses."))
    sample = samples_html([(snapshot.step, snapshot.sample)], snapshot.prompt, 1) if snapshot.sample else ""
    lens = lens_figure(snapshot.lens_tokens, np.asarray(snapshot.lens_probs), snapshot.probe_tokens,
                       next_tokens=snapshot.probe_tokens[1:] + [None],
                       title=f"Logit lens at step {snapshot.step}: each layer's guess for the next token "
                             "(bold: right)")
    return heading, scores, attention, embedding_map, next_tokens, sample, lens

