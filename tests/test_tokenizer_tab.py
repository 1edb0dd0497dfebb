"""The Tokenizer tab through the running app (gradio_client) and in a browser (Playwright)."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from ui import tokenizer_tab

pytestmark = pytest.mark.app

SPAN = re.compile(r'<span class="tok"')


# ----- section 1: text -> tokens --------------------------------------------------------------------------------


def test_tokenize_gpt2(client):
    spans, stats, parity = client.predict("Hello world", "GPT-2", api_name="/tokenize")
    assert len(SPAN.findall(spans)) == 2
    assert 'title="id 15496 · b&#x27;Hello&#x27;"' in spans
    assert 'title="id 995 · b&#x27; world&#x27;">·world</span>' in spans
    assert stats == "**2 tokens** · 11 characters · 5.50 characters per token · tokenizer: gpt2 (50,257 ids)"
    assert parity == "✓ identical to tiktoken (2 ids)"


def test_tokenize_default_text(client):
    spans, stats, parity = client.predict(tokenizer_tab.DEFAULT_TEXT, "GPT-2", api_name="/tokenize")
    n_tokens = int(re.match(r"\*\*(\d+) tokens", stats).group(1))
    assert n_tokens == len(SPAN.findall(spans)) == 31
    assert parity == "✓ identical to tiktoken (31 ids)"
    assert "&lt;" not in spans and "🤖" not in spans  # the emoji is split into byte tokens: \xf0\x9f...


def test_tokenize_special_token_and_markup(client):
    spans, stats, parity = client.predict("<script>x</script><|endoftext|>", "GPT-2", api_name="/tokenize")
    assert "<script" not in spans and ">&lt;</span>" in spans  # "<" is its own token, escaped
    assert 'title="id 50256 · b&#x27;&lt;|endoftext|&gt;&#x27;"' in spans
    assert parity.startswith("✓ identical to tiktoken")


def test_tokenize_empty_text_is_a_note(client):
    spans, stats, parity = client.predict("", "GPT-2", api_name="/tokenize")
    assert spans == '<p class="lab-note">Type or paste some text above to see its tokens.</p>'
    assert (stats, parity) == ("0 tokens", "")


def test_tokenize_long_text_caps_the_drawing(client):
    text = " the quick brown fox" * 1000  # 4,000 tokens
    spans, stats, parity = client.predict(text, "GPT-2", api_name="/tokenize")
    assert len(SPAN.findall(spans)) == tokenizer_tab.MAX_DRAWN_TOKENS == 2000
    assert "Drawing the first 2,000 of 4,000 tokens" in spans
    assert stats.startswith("**4,000 tokens** · 20,000 characters · 5.00 characters per token")
    assert parity == "✓ identical to tiktoken (4,000 ids)"


def test_tokenize_one_token_is_singular(client):
    _, stats, _ = client.predict("Hello", "GPT-2", api_name="/tokenize")
    assert stats.startswith("**1 token** · 5 characters · ")


def test_trained_choice_before_training_is_a_note_in_section_1(app_url):
    fresh = Client(app_url, verbose=False)  # a new session: no tokenizer trained yet
    spans, stats, parity = fresh.predict("Hello", "Your trained BPE", api_name="/tokenize")
    assert spans.startswith('<p class="lab-note">Train your own BPE in section 2 first')
    assert (stats, parity) == ("0 tokens", "")


# ----- section 2: train your own BPE -----------------------------------------------------------------------------


def test_train_on_shakespeare_then_tokenize_and_replay(client):
    status, table, choice = client.predict(1000, "Shakespeare (packaged)", "", None, api_name="/train_bpe")
    assert status.startswith("Learned **743 merges** from 500,000 characters of Shakespeare in **")
    assert "a vocabulary of 1,000 ids (256 bytes + 743 merges + `<|endoftext|>`)" in status
    assert table.count("<tr>") == 2 * (1 + 20)  # two tables: header + first 20, header + last 20
    assert "<tr><td>1</td>" in table and "<tr><td>743</td>" in table
    assert choice == {"value": "Your trained BPE", "__type__": "update"}

    spans, stats, parity = client.predict("Hello world", "Your trained BPE", api_name="/tokenize")
    assert stats.endswith("tokenizer: BPE 1000 (1,000 ids)")
    assert parity == f"✓ identical to tiktoken ({len(SPAN.findall(spans))} ids)"

    replay, slider = client.predict("understanding", 2, api_name="/replay_merge")
    assert "with your trained BPE: step 2 of" in replay
    assert replay.count('<tr class="step') == 3
    assert slider["value"] == 2 and slider["maximum"] >= 3


def test_train_on_text_above_exact(client):
    status, table, _ = client.predict(260, "The text above", "aaabdaaabac", None, api_name="/train_bpe")
    assert status.startswith("Learned **3 merges** from 11 characters of the text above")
    assert "a vocabulary of 260 ids" in status
    assert table.count("<tr>") == 4 and table.count("<table") == 1
    assert "<td>256</td><td>4</td></tr>" in table  # merge 1: (a, a) -> id 256, seen 4 times


def test_train_vocab_below_257_is_refused(client):
    with pytest.raises(AppError, match="The vocabulary size must be a whole number from 257 to 16,384; got 100"):
        client.predict(100, "Shakespeare (packaged)", "", None, api_name="/train_bpe")


def test_train_handler_message_below_257():
    with pytest.raises(Exception, match="The vocabulary size must be a whole number from 257 to 16,384; got 256"):
        tokenizer_tab.friendly(tokenizer_tab.train_bpe)(256, "The text above", "abc", None, progress=lambda *a, **k: None)


def test_train_upload_not_utf8(client, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café crème".encode("latin-1"))
    with pytest.raises(AppError, match=r"latin.txt is not UTF-8 text \(byte 0xe9 at position 3"):
        client.predict(300, "An uploaded .txt file", "", handle_file(str(path)), api_name="/train_bpe")


def test_train_upload_utf8(client, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("héllo héllo héllo world", encoding="utf-8")
    status, _, _ = client.predict(270, "An uploaded .txt file", "", handle_file(str(path)), api_name="/train_bpe")
    assert "characters of notes.txt" in status


def test_train_empty_text_above(client):
    with pytest.raises(AppError, match="The text box in section 1 is empty"):
        client.predict(300, "The text above", "", None, api_name="/train_bpe")


def test_replay_with_gpt2_when_nothing_trained(app_url):
    fresh = Client(app_url, verbose=False)
    replay, slider = fresh.predict("hello", 11, api_name="/replay_merge")  # clamped to its 4 steps
    # GPT-2: h e l l o -> ll -> ell -> hell -> hello (see BPETokenizer.trace)
    assert "Replaying &#x27;hello&#x27; with GPT-2" in replay or "Replaying 'hello' with GPT-2" in replay
    assert replay.count('<tr class="step') == 5
    assert slider == {"maximum": 4, "value": 4, "__type__": "update"}


# ----- section 3: training pairs ---------------------------------------------------------------------------------


def test_training_pairs(client):
    text = "Hello world, this is a test of windows"  # 9 GPT-2 tokens
    view, summary = client.predict(text, 4, 2, api_name="/training_pairs")
    assert summary == "9 tokens → **3 windows** of 4 tokens (stride 2: windows overlap by 2 tokens). Showing them all."
    assert view.count("<caption>window") == 3
    assert view.count('<td class="tok"') == 3 * 2 * 4
    _, summary = client.predict(tokenizer_tab.DEFAULT_TEXT, 8, 4, api_name="/training_pairs")
    assert summary == "31 tokens → **6 windows** of 8 tokens (stride 4: windows overlap by 4 tokens). Showing the first 4."


def test_training_pairs_one_window_is_singular(client):
    view, summary = client.predict("Hello world, this is a test of windows", 8, 4, api_name="/training_pairs")
    assert summary == "9 tokens → **1 window** of 8 tokens (stride 4: windows overlap by 4 tokens). Showing it."
    assert view.count("<caption>window") == 1
    _, summary = client.predict("Hello world, this is a test of windows", 3, 4, api_name="/training_pairs")
    assert "(stride 4: 1 token between windows are never used)" not in summary
    assert "**2 windows** of 3 tokens (stride 4: 1 token between windows is never used)" in summary


def test_training_pairs_stride_0_is_a_note_in_section_3(client):
    view, summary = client.predict("Hello world, this is a test", 4, 0, api_name="/training_pairs")
    assert view == ""
    assert summary.startswith("⚠ No windows: the stride is 0")


def test_a_short_text_is_a_note_in_section_3_not_an_error(client):
    """Typing "Hello world" in section 1 redraws section 3 too: it says there why it has no windows."""
    view, summary = client.predict("Hello world", 8, 4, api_name="/training_pairs")
    assert view == ""
    assert summary == ("⚠ No windows yet: the text above has 2 tokens, and a window of 8 tokens needs 9 (8 inputs, "
                       "and 1 more for the last target). Type a longer text in section 1 or lower the context length.")
    _, summary = client.predict("", 8, 4, api_name="/training_pairs")
    assert summary.startswith("⚠ No windows yet: the text above has 0 tokens")


def test_every_section_that_follows_the_text_box_answers_a_short_text_without_an_error():
    """Section 1's text box drives sections 1 and 3 (sections 2 and 4 read it only on their own button)."""
    for text in ("Hello world", "", "a", "\n"):
        spans, stats, parity = tokenizer_tab.tokenize_text(text, tokenizer_tab.GPT2_CHOICE)
        assert "span" in spans or "lab-note" in spans
        view, summary = tokenizer_tab.training_pairs(text, 8, 4)
        assert summary.startswith("⚠ No windows yet") and view == ""
    spans, _, _ = tokenizer_tab.tokenize_text("Hello world", tokenizer_tab.TRAINED_CHOICE, None)
    assert "Train your own BPE in section 2 first" in spans


def test_bad_numbers_from_an_api_client_are_still_refused(client):
    with pytest.raises(AppError, match="The context length must be a whole number from 1 to 64; got 0"):
        client.predict("Hello world", 0, 2, api_name="/training_pairs")


# ----- section 4: embeddings -------------------------------------------------------------------------------------


def test_embeddings(client):
    summary, heatmaps, cosine = client.predict(tokenizer_tab.DEFAULT_EMBED_TEXT, api_name="/embeddings")
    assert summary.startswith(
        "**token embeddings (13, 16) + positional embeddings (13, 16) = input embeddings (13, 16)**"
    )
    assert "**'·the'** is at positions 4 and 7: the same token vector (cosine 1.00)" in summary
    assert heatmaps["type"] == "plotly" and cosine["type"] == "plotly"


def test_embeddings_empty_text(client):
    with pytest.raises(AppError, match="Type a few words to embed"):
        client.predict("", api_name="/embeddings")


# ----- in a browser ----------------------------------------------------------------------------------------------


def test_examples_cover_code_numbers_and_other_languages():
    labels = [label for label, _ in tokenizer_tab.EXAMPLE_TEXTS]
    assert {"Python code", "Numbers", "Other languages"} <= set(labels)
    for _, text in tokenizer_tab.EXAMPLE_TEXTS:  # every example tokenizes, identical to tiktoken
        _, _, parity = tokenizer_tab.tokenize_text(text, tokenizer_tab.GPT2_CHOICE)
        assert parity.startswith("✓ identical to tiktoken")


@pytest.mark.browser
def test_a_short_text_gives_no_popup_and_section_3_says_why(page):
    page.locator("#tok-text textarea").fill("Hello world")
    page.wait_for_function("() => document.querySelectorAll('#tok-spans span.tok').length === 2", timeout=20_000)
    page.wait_for_selector("text=No windows yet: the text above has 2 tokens", timeout=20_000)
    page.wait_for_timeout(500)  # an error popup would be on its way by now
    assert page.locator(".toast-body").count() == 0


@pytest.mark.browser
def test_typing_redraws_token_spans(page):
    box = page.locator("#tok-text textarea")
    box.fill("Hello world, it's 2025!")  # Hello | ·world | , | ·it | 's | ·2025 | !
    page.wait_for_function(
        "() => document.querySelectorAll('#tok-spans span.tok').length === 7", timeout=20_000
    )
    spans = page.locator("#tok-spans span.tok")
    assert spans.count() == 7
    assert spans.nth(1).get_attribute("title") == "id 995 · b' world'"
    assert "identical to tiktoken (7 ids)" in page.locator("#tok-parity").inner_text()


@pytest.mark.browser
def test_a_clicked_example_is_drawn_at_once(page):
    # The text's change event draws sections 1 and 3 (in class mode the page skips it when the class's view brought
    # the text already drawn: ui/follow.py); an example sets the text, so it is drawn at once.
    page.locator("#tok-examples").get_by_text("Repeated words", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#tok-spans span.tok').length === 12", timeout=20_000)
    assert page.locator("#tok-text textarea").input_value().startswith("the the the The THE")
    assert page.locator("#tok-spans span.tok").nth(3).get_attribute("title") == "id 383 · b' The'"


@pytest.mark.browser
def test_picking_the_trained_tokenizer_redraws_section_1(page):
    # The menu's change event presses the hidden redraw button (ui/follow.py redraw_unless_drawn), as the text's does.
    page.wait_for_selector("#tok-spans span.tok", timeout=30_000)
    page.get_by_label("Your trained BPE").check()
    page.wait_for_selector("#tok-spans >> text=Train your own BPE in section 2 first", timeout=20_000)
    page.get_by_label("GPT-2").check()
    page.wait_for_selector("#tok-spans span.tok", timeout=20_000)
    assert "identical to tiktoken" in page.locator("#tok-parity").inner_text()
