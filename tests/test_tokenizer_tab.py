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


def test_trained_choice_before_training_is_an_error(app_url):
    fresh = Client(app_url, verbose=False)  # a new session: no tokenizer trained yet
    with pytest.raises(AppError, match="Train your own BPE in section 2 first"):
        fresh.predict("Hello", "Your trained BPE", api_name="/tokenize")


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
    assert summary == "9 tokens → **3 windows** of 4 tokens (stride 2: windows overlap by 2 tokens). Showing the first 3."
    assert view.count("<caption>window") == 3
    assert view.count('<td class="tok"') == 3 * 2 * 4


def test_training_pairs_stride_0(client):
    with pytest.raises(AppError, match="The stride must be at least 1 token"):
        client.predict("Hello world, this is a test", 4, 0, api_name="/training_pairs")


def test_training_pairs_context_too_long(client):
    with pytest.raises(AppError, match="A context length of 8 needs at least 9 tokens, has 2"):
        client.predict("Hello world", 8, 2, api_name="/training_pairs")


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
