"""What a class follows: each tab names the inputs of its view that students take over from the teacher.

A tab calls ``followed(tab_id, {"text": text_box, ...})`` while it is built and gets back a signal (a ``gr.State``
counter). Class mode (``ui.classroom``) reads the teacher's values of those inputs, puts them into each following
student's page and bumps the signal; a tab that wants its view redrawn then (an explore view, cached for the
whole class) listens to ``signal.change`` with the same handler as its own button. Settings that only take effect
on Start (Pretrain's) are followed without a signal: a student's run stays a student's run.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.context import Context


@dataclass
class FollowedTab:
    tab_id: str
    inputs: dict[str, gr.components.Component]  # key -> the input component, in a stable order
    signal: gr.State | None  # bumped after the teacher's values arrive; None: nothing is redrawn


def followed(tab_id: str, inputs: dict, redraw: bool = True) -> gr.State | None:
    """Register a tab's followed inputs on the Blocks being built; returns the redraw signal (None without one)."""
    root = Context.root_block
    if root is None:
        raise RuntimeError("followed() must be called while building a gr.Blocks.")
    registry = getattr(root, "_llm_lab_followed", None)
    if registry is None:
        registry = root._llm_lab_followed = []
    if any(tab.tab_id == tab_id for tab in registry):
        raise ValueError(f"The tab {tab_id!r} registered its followed inputs twice.")
    signal = gr.State(0) if redraw else None
    registry.append(FollowedTab(tab_id, dict(inputs), signal))
    return signal


def followed_tabs(root: gr.Blocks) -> list[FollowedTab]:
    """Every tab's followed inputs, in the order the tabs were built."""
    return list(getattr(root, "_llm_lab_followed", []))
