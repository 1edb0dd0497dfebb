"""Downloaded corpora: a local http.server on 127.0.0.1 stands in for the internet (no test uses the network)."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from gpt_core import corpora

PAYLOAD = b"I HAD always thought Jack Gisburn rather a cheap genius--" * 10


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LLM_LAB_CACHE", str(folder))
    return folder


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on a free local port; yields (base_url, counter of GET requests)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "story.txt").write_bytes(PAYLOAD)
    hits = {"count": 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits["count"] += 1
            super().do_GET()

        def log_message(self, *args):  # keep pytest output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits, www
    finally:
        httpd.shutdown()
        httpd.server_close()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_with_right_checksum_is_cached_once(cache, server):
    base, hits, _ = server
    digest = corpora.sha256_of(PAYLOAD)
    path = corpora.download_cached(f"{base}/story.txt", "story.txt", sha256=digest)
    assert path == cache / "story.txt"
    assert path.read_bytes() == PAYLOAD
    again = corpora.download_cached(f"{base}/story.txt", "story.txt", sha256=digest)
    assert again == path
    assert hits["count"] == 1  # the second call read the cache


def test_checksum_mismatch_raises_and_caches_nothing(cache, server):
    base, _, _ = server
    with pytest.raises(ValueError, match="does not match its expected sha256"):
        corpora.download_cached(f"{base}/story.txt", "story.txt", sha256="0" * 64)
    assert not (cache / "story.txt").exists()
    assert [p.name for p in cache.iterdir()] == []  # no temporary leftovers either


def test_too_large_download_is_refused(cache, server):
    base, _, _ = server
    with pytest.raises(ValueError, match="larger than the limit of 100 bytes"):
        corpora.download_cached(f"{base}/story.txt", "story.txt", max_bytes=100)
    assert not (cache / "story.txt").exists()


def test_offline_gives_a_clear_connection_error(cache):
    url = f"http://127.0.0.1:{unused_port()}/instruction-data.json"
    with pytest.raises(ConnectionError, match="Could not download .* Check the internet connection"):
        corpora.download_cached(url, "instruction-data.json")


def test_the_verdict_is_bundled_and_checked(monkeypatch, tmp_path):
    text = corpora.the_verdict_text()
    assert (len(text), text[:20], corpora.sha256_of(text.encode())) == (
        20479, "I HAD always thought", corpora.VERDICT_SHA256)
    assert corpora.load_corpus("verdict") == text
    damaged = tmp_path / "the-verdict.txt"
    damaged.write_bytes(b"x" * corpora.VERDICT_SIZE)
    monkeypatch.setattr(corpora, "VERDICT_PATH", damaged)
    with pytest.raises(ValueError, match="is damaged"):
        corpora.the_verdict_text()


def test_load_corpus_by_name_or_path(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Once upon a time", encoding="utf-8")
    assert corpora.load_corpus(str(story)) == "Once upon a time"
    assert corpora.load_corpus("shakespeare").startswith("A Mid")
    with pytest.raises(ValueError, match="Unknown corpus 'nope': use shakespeare, verdict or the path"):
        corpora.load_corpus("nope")
