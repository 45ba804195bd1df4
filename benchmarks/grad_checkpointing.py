"""Peak memory and speed of a training step with and without ``--grad-checkpointing``.

Peak resident memory is a per-process figure, so each setting runs in its own
``deepres bench --mode train`` process; the two are run back to back and printed side by
side. Usage::

    python benchmarks/grad_checkpointing.py [--model resnet152 --batch-size 8 --input-size 224]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def bench(args: argparse.Namespace, checkpointing: bool, out: Path) -> dict:
    flag = "--grad-checkpointing" if checkpointing else "--no-grad-checkpointing"
    command = [
        sys.executable, "-m", "deepres", "bench", "--mode", "train", "--model", args.model,
        "--batch-size", str(args.batch_size), "--input-size", str(args.input_size),
        "--steps", str(args.steps), "--rounds", "1", flag, "--json", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["train"]["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet152")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {flag: bench(args, flag, Path(tmp) / f"{flag}.json") for flag in (False, True)}
    print(f"{args.model}, training step, batch {args.batch_size}, {args.input_size} px")
    print(f"{'':24}{'peak RSS (MB)':>15}{'img/s':>10}")
    for flag, row in rows.items():
        name = "grad checkpointing" if flag else "normal"
        print(f"{name:24}{row['peak_rss_mb']:15.0f}{row['images_per_s']:10.2f}")
    normal, checkpointed = rows[False], rows[True]
    print(
        f"memory x{checkpointed['peak_rss_mb'] / normal['peak_rss_mb']:.2f}, "
        f"speed x{checkpointed['images_per_s'] / normal['images_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
