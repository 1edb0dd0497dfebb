"""Pieces every tab uses: the explanation block, the source viewer and friendly error handling."""

from __future__ import annotations

import functools
import inspect
import logging
import textwrap
from collections.abc import Callable

import gradio as gr

log = logging.getLogger("llm_lab")

# Text pasted into any tab is cut to this many characters before the heavy work starts.
MAX_INPUT_CHARS = 1_000_000


def explain(markdown: str) -> gr.Markdown:
    """A short plain-language explanation at the top of a tab."""
    return gr.Markdown(textwrap.dedent(markdown).strip(), elem_classes=["lab-explain"])


def source_of(*objects: object) -> str:
    """The source code of functions, classes or modules, joined for the viewer.

    >>> "def source_of" in source_of(source_of)
    True
    """
    parts = []
    for obj in objects:
        module = inspect.getmodule(obj)
        where = f"# {module.__name__}" if module else ""
        parts.append(f"{where}\n{inspect.getsource(obj)}".strip())
    return "\n\n\n".join(parts)


def show_source(*objects: object, title: str = "The gpt_core code this tab runs") -> gr.Code:
    """A collapsed accordion that shows the engine code behind a view, so students can read what runs."""
    with gr.Accordion(title, open=False):
        return gr.Code(value=source_of(*objects), language="python", interactive=False, max_lines=60)


# Errors that mean "your input cannot be used": their message is written for the student.
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ConnectionError, PermissionError)


def student_message(error: Exception) -> str:
    """The message a student sees for an error raised while handling their input."""
    if isinstance(error, EXPECTED_ERRORS):
        return str(error) or error.__class__.__name__
    return f"Something went wrong ({error.__class__.__name__}: {error}). The server is still running; try again."


def _report(handler: Callable, error: Exception) -> gr.Error:
    """Log the error (a traceback only for the unexpected ones) and turn it into a gr.Error."""
    if isinstance(error, EXPECTED_ERRORS):
        log.info("%s: %s", handler.__name__, error)
    else:
        log.exception("handler %s failed", handler.__name__)
    return gr.Error(student_message(error))


def friendly(handler: Callable) -> Callable:
    """Wrap an event handler so any exception reaches the browser as a short gr.Error, never a stack trace.

    Works for plain functions and for generators (streamed updates).
    """
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def wrapped_generator(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - every error becomes a message for the student
                raise _report(handler, error) from None

        return wrapped_generator

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001
            raise _report(handler, error) from None

    return wrapped


def cap_text(text: str | None, limit: int, what: str = "text") -> tuple[str, str | None]:
    """Cut `text` to `limit` characters; return it with a note for the user when it was cut.

    >>> cap_text("abcdef", 4)
    ('abcd', 'Showing the first 4 of 6 characters of the text.')
    """
    text = text or ""
    if len(text) <= limit:
        return text, None
    return text[:limit], f"Showing the first {limit:,} of {len(text):,} characters of the {what}."
