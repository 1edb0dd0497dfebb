#!/usr/bin/env bash
# Publish the committed tree to a Hugging Face Space with `hf upload` (huggingface_hub), which sends the binary
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
hf repos create "$space" --type space --sdk gradio --exist-ok
hf upload "$space" "$tree" . --type space --delete "*" \
  --commit-message "LLM Lab $(git rev-parse --short "$commit")"
