#!/usr/bin/env bash
# One-time set-up: PyTorch, deepres with its dev tools, and (where apt is usable) the
# Fashion-MNIST files that the README's training example reads.
set -euo pipefail
cd "$(dirname "$0")"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
    || echo "setup: could not install dataset-fashion-mnist (Fashion-MNIST examples will say so)"
fi
python3 -m pip install torch==2.14.1 torchvision==0.29.1
python3 -m pip install -e ".[dev]"
