"""Pieces every tab uses: the explanation block, the source viewer and friendly error handling."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import math
import numbers
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


FAST_LAYER_NOTE = ("# The book layer below is what computes this view. The app also applies the fast layer\n"
                   "# (gpt_core.fast: fused kernels, memory layouts, caches): same maths, tested equal.\n\n")


def show_source(*objects: object, title: str = "The gpt_core code this tab runs") -> gr.Code:
    """A collapsed accordion that shows the engine code behind a view, so students can read what runs.

    When the fast layer is on (the default; ``LLM_LAB_PLAIN=1`` turns it off), a first comment says so.
    """
    from gpt_core.fast.settings import plain_mode

    note = "" if plain_mode() else FAST_LAYER_NOTE
    with gr.Accordion(title, open=False):
        return gr.Code(value=note + source_of(*objects), language="python", interactive=False, max_lines=60)


# Errors that mean "your input cannot be used": their message is written for the student.
EXPECTED_ERRORS = (ValueError, KeyError, FileNotFoundError, ConnectionError, PermissionError)


def student_message(error: Exception) -> str:
    """The message a student sees for an error raised while handling their input.

    Gradio's popup renders HTML, and messages can quote the student's own data, so the text is escaped:

    >>> student_message(ValueError("bad field <img src=x>"))
    'bad field &lt;img src=x&gt;'
    """
    if isinstance(error, EXPECTED_ERRORS):
        message = str(error) or error.__class__.__name__
    else:
        detail = str(error)[:300]
        message = f"Something went wrong ({error.__class__.__name__}: {detail}). The server is still running; try again."
    return html.escape(message, quote=False)


def _report(handler: Callable, error: Exception) -> gr.Error:
    """Log the error (one line for a student's mistake, a traceback only for the unexpected ones) and turn it
    into a gr.Error that Gradio shows without printing a traceback of its own."""
    if isinstance(error, EXPECTED_ERRORS):
        log.info("%s: %s", handler.__name__, error)
    else:
        log.exception("handler %s failed", handler.__name__)
    return gr.Error(student_message(error), print_exception=False)


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


# ---------------------------------------------------------------------------------------------------------------
# Numbers from sliders, number boxes and API clients
# ---------------------------------------------------------------------------------------------------------------


def _as_sent(payload):
    return payload


def NumberBox(*args, **kwargs) -> gr.Number:  # noqa: N802 - used like the component it makes
    """A gr.Number whose value reaches the handler as sent, for ``number_input`` to check.

    Gradio's own check runs before the handler and answers NaN, infinity or a string from an API client in
    Python's words ("cannot convert float NaN to integer"); the handler's check answers in a student's.
    (A subclass would do the same, but Gradio writes a .pyi stub next to every component subclass.)
    """
    box = gr.Number(*args, **kwargs)
    box.preprocess = _as_sent
    return box


def SliderBox(*args, **kwargs) -> gr.Slider:  # noqa: N802
    """A gr.Slider whose value reaches the handler as sent, for ``number_input`` to check (see NumberBox)."""
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = _as_sent
    return slider


def describe_value(value) -> str:
    """How a bad value is named in a message: short, and never the whole of a huge input."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN (not a number)"
    if isinstance(value, float) and math.isinf(value):
        return "infinity" if value > 0 else "minus infinity"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def number_input(value, what: str, *, minimum: float | None = None, maximum: float | None = None,
                 whole: bool = False, default: float | None = None) -> float | int:
    """A number from an input, checked: finite, in [minimum, maximum], whole when asked; else a ValueError
    whose message names the input (``what``) and the allowed range in plain words.

    ``None`` and an empty string give ``default`` when there is one. Strings holding a number are accepted
    (API clients send them); booleans, lists and other types are refused.

    >>> number_input(8.0, "The batch size", minimum=1, whole=True)
    8
    >>> number_input(float("nan"), "The temperature", minimum=0, maximum=2)
    Traceback (most recent call last):
    ...
    ValueError: The temperature must be a number from 0 to 2; got NaN (not a number).
    >>> number_input(10**30, "The seed", minimum=0, maximum=2**32 - 1, whole=True)
    Traceback (most recent call last):
    ...
    ValueError: The seed must be a whole number from 0 to 4,294,967,295; got 1000000000000000000000000000000.
    """
    kind = "a whole number" if whole else "a number"
    if minimum is not None and maximum is not None:
        allowed = f"{kind} from {minimum:,g} to {maximum:,g}" if not whole else f"{kind} from {int(minimum):,} to {int(maximum):,}"
    elif minimum is not None:
        allowed = f"{kind} of at least {minimum:,g}"
    elif maximum is not None:
        allowed = f"{kind} of at most {maximum:,g}"
    else:
        allowed = kind
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise ValueError(f"{what} is empty: it must be {allowed}.")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not value.strip().lstrip("+-").isdigit() else int(value.strip())
        except ValueError:
            raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
    number = float(value) if not isinstance(value, numbers.Integral) else value
    too_low = minimum is not None and number < minimum
    too_high = maximum is not None and number > maximum
    if isinstance(number, float) and not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
    if whole:
        if number != int(number):
            raise ValueError(f"{what} must be {allowed}; got {describe_value(value)}.")
        return int(number)
    return float(number)


def learning_rate(value) -> float:
    """The peak learning rate: above 0 and at most 10 (a huge one then stops the run at the first NaN loss)."""
    try:
        rate = number_input(value, "The learning rate", minimum=0, maximum=10)
    except ValueError:
        rate = 0.0
    if rate == 0:
        raise ValueError(f"The learning rate must be a number above 0 and at most 10, such as 0.003; "
                         f"got {describe_value(value)}.")
    return rate
