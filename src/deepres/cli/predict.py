"""``deepres predict --checkpoint RUN IMAGE...``: the top classes of image files (several
``--checkpoint``s: their ensemble; ``--tta``: test-time augmentation; ``--ema``: EMA weights;
``--runtime``: what runs the model, default ``auto``, see ``deepres.deploy.runtime``).
``deepres predict --model resnet50 --pretrained torchvision IMAGE...``: published weights
with their class names and preprocessing instead of a run."""

from __future__ import annotations

import argparse
import json
import sys

from deepres.cli.options import (
    add_checkpoint,
    add_ema,
    add_pretrained,
    add_runtime,
    add_tta,
    checkpoint_or_pretrained,
    existing_path,
    positive_int,
)
from deepres.errors import DeepresError


def register(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="top classes of image files")
    add_checkpoint(pr, several=True, required=False)
    add_pretrained(pr)
    pr.add_argument("images", nargs="+", type=existing_path, help="image files or folders")
    pr.add_argument("--top-k", type=positive_int, default=5)
    pr.add_argument("--json", action="store_true", help="print JSON")
    add_tta(pr)
    add_ema(pr)
    add_runtime(pr)
    pr.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    checkpoint_or_pretrained(args)
    from deepres.deploy.runtime import load_predictor
    from deepres.inference import expand_inputs

    paths = expand_inputs(args.images)
    if not paths:
        raise DeepresError("no image files found in " + ", ".join(args.images))
    predictor = load_predictor(
        args.checkpoint,
        tta=args.tta,
        ema=args.ema,
        runtime=args.runtime,
        model=args.model,
        pretrained=args.pretrained,
    )
    results, failures = [], 0
    for path in paths:
        try:
            prediction = predictor.predict_file(path, args.top_k)
        except DeepresError as err:
            failures += 1
            results.append({"path": str(path), "error": str(err)})
            if not args.json:
                print(f"{path}: error: {err}", file=sys.stderr)
            continue
        results.append(prediction.as_dict())
        if not args.json:
            print(f"{path}")
            for name, prob in prediction.top:
                print(f"  {100 * prob:6.2f}%  {name}")
    if args.json:
        print(json.dumps(results, indent=2))
    if failures:
        raise DeepresError(f"{failures} of {len(paths)} file(s) could not be predicted")
