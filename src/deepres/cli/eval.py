"""``deepres eval --checkpoint RUN``: top-1/top-5 error, per-class accuracy, confusion."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepres.cli.options import add_checkpoint, existing_folder, positive_int
from deepres.train.evaluate import evaluate_checkpoint, save_eval_report


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="top-1/top-5 error, per-class accuracy, confusion matrix")
    add_checkpoint(ev)
    ev.add_argument("--data", help="default: the data set the checkpoint was trained on")
    ev.add_argument("--data-root", type=existing_folder)
    ev.add_argument("--split", default="test", choices=["train", "test", "val"])
    ev.add_argument("--subset", type=positive_int, help="first K images of each class")
    ev.add_argument("--batch-size", type=positive_int, default=250)
    ev.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    ev.add_argument("--out", help="folder for confusion.png and eval.json (default: the run)")
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    evaluation = evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        split=args.split,
        data_root=args.data_root,
        subset=args.subset,
        batch_size=args.batch_size,
        ten_crop=args.ten_crop,
    )
    result, meta = evaluation.result, evaluation.meta
    print(
        f"{evaluation.weights}: {meta['model']} on {evaluation.data} ({args.split}, "
        f"{result.count} images{', ten-crop' if args.ten_crop else ''})"
    )
    print(
        f"top-1 error {100 * (1 - result.top1):.2f}%   top-5 error {100 * (1 - result.top5):.2f}%"
        f"   (top-1 accuracy {100 * result.top1:.2f}%)"
    )
    print("per-class accuracy:")
    for name, acc in zip(meta["classes"], result.per_class.tolist(), strict=True):
        print(f"  {name:<20} {100 * acc:6.2f}%")
    print("confusion matrix (rows: true class, columns: predicted):")
    for row in result.confusion.tolist():
        print("  " + " ".join(f"{v:5d}" for v in row))
    out = Path(args.out) if args.out else evaluation.weights.parent
    png, report = save_eval_report(evaluation, out)
    print(f"saved {png} and {report}")
