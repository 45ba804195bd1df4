#!/usr/bin/env bash
# One-time set-up: PyTorch, deepres with its dev tools, and (where apt is usable) the
# Fashion-MNIST files that the README's training example reads.
set -euo pipefail
cd "$(dirname "$0")"
# Debian packages: Fashion-MNIST's official files, and Chromium for the web demo's browser test.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver; } \
    || echo "setup: could not install the Debian packages (the tests that need them will skip)"
fi
python3 -m pip install torch==2.14.1 torchvision==0.29.1
python3 -m pip install -e ".[dev]"
