#!/usr/bin/env bash
# Publish the committed tree to a Hugging Face Space with huggingface_hub's upload_folder, which sends the binary
# files (the bundled model, the screenshot) through LFS/Xet itself: no git-lfs needed, and this repository's
# history stays as it is (its binaries are ordinary git blobs, which a plain `git push` to a Space is refused).
#
#   hf auth login                                      # once, with a token that may write
#   bash scripts/push_to_space.sh USER/llm-lab         # the current commit (HEAD)
#   bash scripts/push_to_space.sh USER/llm-lab v1.2    # another commit, tag or branch
#
# A Space that does not exist yet is created (Gradio SDK, CPU basic); pick other hardware, variables and secrets
# in its Settings (README, "Deploy to Spaces"). Files the Space has but the commit has not are deleted.
set -euo pipefail
cd "$(dirname "$0")/.."

space="${1:?usage: bash scripts/push_to_space.sh USER/SPACE [COMMIT]}"
commit="${2:-HEAD}"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT

git archive "$commit" | tar -x -C "$tree"  # exactly the committed files: no caches, runs or local settings
python3 - "$space" "$tree" "LLM Lab $(git rev-parse --short "$commit")" <<'PY'
import sys

from huggingface_hub import HfApi

space, tree, message = sys.argv[1:]
api = HfApi()  # the token of `hf auth login` (or HF_TOKEN)
api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True)
commit = api.upload_folder(repo_id=space, repo_type="space", folder_path=tree, commit_message=message,
                           delete_patterns="*")  # binaries go through LFS/Xet; .gitattributes is never deleted
print(commit.commit_url)
PY
