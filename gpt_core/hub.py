"""Downloads from the Hugging Face Hub that fail in seconds with no internet, and remember that they failed.

huggingface_hub on its own retries an unreachable hub for about 24 seconds (measured; longer when the server
accepts the connection but never answers). A class cannot wait that long, so before downloading anything, this
module:

1. uses the local Hugging Face cache when every file is already there (no network at all);
2. honours HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1): then only the cache is used, nothing is sent;
3. answers at once with the remembered failure if the hub could not be reached in the last few minutes
   (LLM_LAB_OFFLINE_RETRY_S, default 300 s);
4. asks the hub for one file's metadata and gives up after PROBE_TIMEOUT_S (1.5 s; HF_HUB_ETAG_TIMEOUT
   overrides it);
5. only then downloads, with huggingface_hub's own timeouts.

Every "cannot reach the hub" ends as a ConnectionError with a plain message.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PROBE_TIMEOUT_S = 1.5  # how long the hub may take to answer one metadata request
DEFAULT_RETRY_S = 300.0  # how long a failure is remembered before the hub is tried again
TRUE_WORDS = {"1", "ON", "YES", "TRUE"}

_clock = time.monotonic  # tests replace this to move time forward
_failures: dict[str, tuple[float, str]] = {}  # endpoint -> (when it failed, why)
_failures_guard = threading.Lock()


# ---------------------------------------------------------------- settings, read on every call
def hub_endpoint() -> str:
    """The hub's address: HF_ENDPOINT if set, else huggingface_hub's endpoint (https://huggingface.co)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: then the network is never used."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    return env in TRUE_WORDS or constants.is_offline_mode()


def retry_after_s() -> float:
    """Seconds a failure to reach the hub is remembered: LLM_LAB_OFFLINE_RETRY_S, default 300 (0: never)."""
    try:
        return max(0.0, float(os.environ.get("LLM_LAB_OFFLINE_RETRY_S", DEFAULT_RETRY_S)))
    except ValueError:
        return DEFAULT_RETRY_S


def probe_timeout_s() -> float:
    """Seconds the hub may take to answer: HF_HUB_ETAG_TIMEOUT if set, else PROBE_TIMEOUT_S."""
    try:
        return float(os.environ["HF_HUB_ETAG_TIMEOUT"])
    except (KeyError, ValueError):
        return PROBE_TIMEOUT_S


# ---------------------------------------------------------------- remembering a failure
def remembered_failure(endpoint: str) -> str | None:
    """Why `endpoint` could not be reached, if that was less than LLM_LAB_OFFLINE_RETRY_S ago; else None."""
    with _failures_guard:
        failure = _failures.get(endpoint)
    if failure is None:
        return None
    when, reason = failure
    age = _clock() - when
    if age >= retry_after_s():
        return None
    wait = retry_after_s() - age
    return f"{reason} (noticed {age:.0f} s ago; the server tries the hub again in {wait:.0f} s)"


def remember_failure(endpoint: str, reason: str) -> None:
    """Note that `endpoint` could not be reached just now, and why."""
    with _failures_guard:
        _failures[endpoint] = (_clock(), reason)


def forget_failures() -> None:
    """Forget every remembered failure (the next download tries the network again)."""
    with _failures_guard:
        _failures.clear()


# ---------------------------------------------------------------- is the hub there?
def hub_answers(repo_id: str, filename: str, endpoint: str, seconds: float) -> Exception | None:
    """Ask the hub for one file's metadata; None if it answered within `seconds`, else the reason it did not.

    The request runs in a background thread, so that even a name lookup (DNS) that hangs cannot keep us
    waiting. An answer such as 404 "no such repository" still counts: the hub is there, and the download
    then says what is wrong.
    """
    import huggingface_hub
    from huggingface_hub.utils import HfHubHTTPError

    outcome: list[Exception | None] = []

    def ask() -> None:
        try:
            url = huggingface_hub.hf_hub_url(repo_id, filename, endpoint=endpoint)
            # the join below decides how long we wait; this timeout only ends the thread soon after
            huggingface_hub.get_hf_file_metadata(url, timeout=seconds + 1)
            outcome.append(None)
        except Exception as err:  # any failure is an answer to report
            outcome.append(err)

    thread = threading.Thread(target=ask, name="hub-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return TimeoutError(f"no answer within {seconds:g} s")
    error = outcome[0]
    response = getattr(error, "response", None)
    if isinstance(error, HfHubHTTPError) and response is not None and response.status_code < 500:
        return None
    return error


def offline_message(repo_id: str, endpoint: str, reason: str) -> str:
    """The plain message for 'these weights cannot be downloaded now'."""
    return (f"Could not download {repo_id!r}: GPT-2 weights need the internet (Hugging Face Hub at "
            f"{endpoint}) the first time, and {reason}. The other models still work offline.")


def describe(error: Exception) -> str:
    """A short reason for a network error: its first line, without huggingface_hub's long request details."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.split(" thrown while requesting")[0].strip("'\" ")
    return f"this server cannot reach it: {text[:120]}"


NETWORK_ERROR_NAMES = {"ConnectionError", "TimeoutError", "Timeout", "TransportError",
                       "LocalEntryNotFoundError"}


def is_network_error(error: Exception) -> bool:
    """True for 'could not talk to the hub' (no connection, timeout, hub down), False for 'the hub said no'.

    Checked by class names so that it works whichever HTTP library huggingface_hub uses (requests or httpx).
    """
    from huggingface_hub.utils import HfHubHTTPError

    response = getattr(error, "response", None)
    if isinstance(error, HfHubHTTPError) and response is not None:
        return response.status_code >= 500
    return any(cls.__name__ in NETWORK_ERROR_NAMES for cls in type(error).__mro__)


# ---------------------------------------------------------------- downloading
def fetch_files(repo_id: str, config_file: str, weight_files: tuple[str, ...], *, local_only: bool,
                endpoint: str) -> Path:
    """hf_hub_download the config, then the first of `weight_files` the repository has; returns their folder.

    With local_only, only the local Hugging Face cache is read (no network).
    """
    import huggingface_hub
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    def get(filename: str) -> Path:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, local_files_only=local_only,
                                                    endpoint=endpoint))

    folder = get(config_file).parent
    for weights in weight_files[:-1]:
        try:
            get(weights)
            return folder
        except EntryNotFoundError as err:  # older repos only have the last one (pytorch_model.bin)
            if isinstance(err, LocalEntryNotFoundError) != local_only:
                raise  # online, "not in the cache" means the hub could not be reached
    get(weight_files[-1])
    return folder


def download_model(repo_id: str, config_file: str, weight_files: tuple[str, ...]) -> Path:
    """Folder holding `config_file` and the first of `weight_files` the repository has; fails fast offline.

    Raises ConnectionError (plain message) when the files are not in the local cache and the hub cannot be
    reached; other hub errors (no such repository, ...) are raised as huggingface_hub raised them.
    """
    from huggingface_hub.utils import LocalEntryNotFoundError

    endpoint = hub_endpoint()
    try:  # 1 and 2: the local cache, no network
        return fetch_files(repo_id, config_file, weight_files, local_only=True, endpoint=endpoint)
    except LocalEntryNotFoundError as err:
        if offline_mode():
            reason = "HF_HUB_OFFLINE=1 is set on this server and they are not in its local cache"
            raise ConnectionError(offline_message(repo_id, endpoint, reason)) from err
    reason = remembered_failure(endpoint)  # 3
    if reason is not None:
        raise ConnectionError(offline_message(repo_id, endpoint, reason))
    problem = hub_answers(repo_id, config_file, endpoint, probe_timeout_s())  # 4
    if problem is not None:
        raise _offline(repo_id, endpoint, problem)
    try:  # 5
        return fetch_files(repo_id, config_file, weight_files, local_only=False, endpoint=endpoint)
    except Exception as err:
        if is_network_error(err):
            raise _offline(repo_id, endpoint, err) from err
        raise


def _offline(repo_id: str, endpoint: str, error: Exception) -> ConnectionError:
    """Remember that `endpoint` cannot be reached and return the ConnectionError to raise."""
    reason = describe(error)
    remember_failure(endpoint, reason)
    failure = ConnectionError(offline_message(repo_id, endpoint, reason))
    failure.__cause__ = error
    return failure
