"""The shared UI helpers: errors become short messages, long text is capped with a note."""

import gradio as gr
import pytest

from ui.common import cap_text, friendly, source_of, student_message


def test_friendly_turns_value_error_into_gr_error_with_the_same_message():
    @friendly
    def handler(text):
        raise ValueError(f"Type some text first (got {text!r}).")

    with pytest.raises(gr.Error) as caught:
        handler("")
    assert caught.value.message == "Type some text first (got '')."


def test_friendly_wraps_generators_and_keeps_their_values():
    @friendly
    def counter(n):
        yield from range(n)
        raise RuntimeError("boom")

    seen = []
    with pytest.raises(gr.Error) as caught:
        for value in counter(3):
            seen.append(value)
    assert seen == [0, 1, 2]
    assert caught.value.message == (
        "Something went wrong (RuntimeError: boom). The server is still running; try again."
    )


def test_student_message_for_expected_and_unexpected_errors():
    assert student_message(FileNotFoundError("No such checkpoint: runs/x")) == "No such checkpoint: runs/x"
    assert student_message(ZeroDivisionError("division by zero")).startswith("Something went wrong (ZeroDivisionError")


def test_cap_text_cuts_and_says_so():
    assert cap_text("abcdef", 4) == ("abcd", "Showing the first 4 of 6 characters of the text.")
    assert cap_text("abc", 4) == ("abc", None)
    assert cap_text(None, 4) == ("", None)


def test_source_of_names_the_module():
    code = source_of(cap_text)
    assert code.splitlines()[0] == "# ui.common"
    assert "def cap_text" in code
