#!/usr/bin/env bash
# One-time set-up: a virtual environment in .venv with PyTorch and deepres (editable, with its
# dev tools), and (where apt is usable) the Fashion-MNIST files that the README's example reads.
# A virtual environment works on a stock Debian/Ubuntu Python too, which refuses system-wide
# pip installs (PEP 668). DEEPRES_VENV=DIR puts the environment elsewhere.
set -euo pipefail
cd "$(dirname "$0")"
venv="${DEEPRES_VENV:-.venv}"
as_root() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
if as_root; then
  # Fashion-MNIST's official files; Chromium for the web demo's browser test; venv support
  # for a stock Python (Debian ships ensurepip separately).
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver; } \
    || echo "setup: could not install the Debian packages (the tests that need them will skip)"
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    as_root && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -m pip install -e ".[dev]"
echo "setup: done. Tests: $venv/bin/python -m pytest; the command: $venv/bin/deepres (or: source $venv/bin/activate)"
