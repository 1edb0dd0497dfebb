#!/usr/bin/env bash
# Install everything the test suite needs, then run it. This is the README's test command.
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -m "not browser"   # extra pytest arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -r requirements-dev.txt

# Browser tests drive Debian's Chromium through Playwright (playwright cannot download its own browser offline).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

python3 -m pytest "$@"
