"""What a class follows: each tab names the inputs of its view that students take over from the teacher.

A tab calls ``followed(tab_id, {"text": text_box, ...}, views=[event, ...])`` while it is built. Class mode
(``ui.classroom``) reads the teacher's values of those inputs and, in one update per change, puts them into each
following student's page together with the tab's views drawn with them: each ``event`` is the dict the tab wires
its own button with (``fn``, ``inputs``, ``outputs``), called in order, so the explore views a class shares are
drawn by the same code as a student's own click (and come from the view caches). Settings that only take effect
on Start (Pretrain's) are followed without views: a student's run stays a student's run.

Class mode draws a tab's views once per change for the whole class (``ui.classroom.ViewCache``) and each
following page sets them, with the inputs, in the browser. A followed input's own ``.change`` listeners fire when
class mode sets it: a listener that would draw the very views a class view brought goes through
``redraw_unless_drawn(button_id)``, a browser-only listener that presses the hidden button carrying the redraw,
except for a value the page just took with a class's views (so the page sends no event for it). Gradio's ``.input``
would not do: in Gradio 6.31 it fires for keys typed, not for a paste; and a throwing js pre-function stops the
request but leaves an "Error" badge on the views.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.context import Context


def redraw_unless_drawn(button_id: str) -> str:
    """The js of a browser-only ``.change`` listener: press ``#button_id`` (the hidden button whose click draws the
    views) unless the page script (ui.common PAGE_JS, ``window.labClassDrew``) says this value just came with the
    class's views, already drawn.

    >>> "#tok-redraw" in redraw_unless_drawn("tok-redraw")
    True
    """
    return (f'(value) => {{ if (!(window.labClassDrew && window.labClassDrew(value))) '
            f'document.querySelector("#{button_id}")?.click(); return []; }}')


@dataclass
class FollowedTab:
    tab_id: str
    inputs: dict[str, gr.components.Component]  # key -> the input component, in a stable order
    views: list[dict]  # the tab's events ({"fn", "inputs", "outputs", ...}) that draw its views, in order


def followed(tab_id: str, inputs: dict, views: list[dict] | tuple = ()) -> None:
    """Register a tab's followed inputs, and the events that draw its views, on the Blocks being built."""
    root = Context.root_block
    if root is None:
        raise RuntimeError("followed() must be called while building a gr.Blocks.")
    registry = getattr(root, "_llm_lab_followed", None)
    if registry is None:
        registry = root._llm_lab_followed = []
    if any(tab.tab_id == tab_id for tab in registry):
        raise ValueError(f"The tab {tab_id!r} registered its followed inputs twice.")
    registry.append(FollowedTab(tab_id, dict(inputs), [dict(view) for view in views]))


def followed_tabs(root: gr.Blocks) -> list[FollowedTab]:
    """Every tab's followed inputs, in the order the tabs were built."""
    return list(getattr(root, "_llm_lab_followed", []))
