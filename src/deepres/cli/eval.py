"""``deepres eval --checkpoint RUN``: top-1/top-5 error, per-class accuracy, confusion.

Several ``--checkpoint``s evaluate their ensemble (and each member); ``--tta`` adds
test-time augmentation (and prints the single-view numbers beside); ``--ema`` reads each
run's EMA weights; ``--runtime`` chooses what runs the model (default ``auto``: the fastest
exact runtime, see ``deepres.deploy.runtime``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from deepres.cli.options import (
    add_checkpoint,
    add_ema,
    add_runtime,
    add_tta,
    existing_folder,
    positive_int,
    renamed_from,
)

if TYPE_CHECKING:
    from deepres.train.evaluate import CheckpointEval, EvalResult

ENSEMBLE_FOLDER = "ensemble-eval"


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="top-1/top-5 error, per-class accuracy, confusion matrix")
    add_checkpoint(ev, several=True)
    ev.add_argument("--data", help="default: the data set the checkpoint was trained on")
    ev.add_argument("--data-root", type=existing_folder)
    ev.add_argument("--split", default="test", choices=["train", "test", "val"])
    ev.add_argument(
        "--test-subset",
        "--subset",
        type=positive_int,
        action=renamed_from("--subset"),
        help="first K images of each class of the split (as in train; --subset: its old name)",
    )
    ev.add_argument("--batch-size", type=positive_int, default=250)
    ev.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    add_tta(ev)
    add_ema(ev)
    add_runtime(ev)
    ev.add_argument(
        "--out",
        help="folder for confusion.png and eval.json (default: the run; for an ensemble, "
        f"{ENSEMBLE_FOLDER}/ in the first member's folder)",
    )
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.deploy.evaluate import evaluate_checkpoints
    from deepres.train.evaluate import save_eval_report

    evaluation = evaluate_checkpoints(
        args.checkpoint,
        data=args.data,
        split=args.split,
        data_root=args.data_root,
        subset=args.test_subset,
        batch_size=args.batch_size,
        ten_crop=args.ten_crop,
        tta=args.tta,
        ema=args.ema,
        runtime=args.runtime,
    )
    print_header(evaluation)
    print_scores(evaluation)
    result, meta = evaluation.result, evaluation.meta
    which = describe(evaluation)
    print(f"per-class accuracy{f' ({which})' if which else ''}:")
    for name, acc in zip(meta["classes"], result.per_class.tolist(), strict=True):
        print(f"  {name:<20} {100 * acc:6.2f}%")
    print(
        f"confusion matrix{f' ({which})' if which else ''} (rows: true class, columns: predicted):"
    )
    for row in result.confusion.tolist():
        print("  " + " ".join(f"{v:5d}" for v in row))
    out = Path(args.out) if args.out else default_out(evaluation)
    png, report = save_eval_report(evaluation, out)
    print(f"saved {png} and {report}")


def default_out(evaluation: CheckpointEval) -> Path:
    folder = evaluation.weights.parent
    return folder / ENSEMBLE_FOLDER if evaluation.members else folder


def describe(evaluation: CheckpointEval) -> str:
    """What the main numbers are of: '', 'TTA flip', 'ensemble', 'ensemble, TTA flip'."""
    parts = ["ensemble"] if evaluation.members else []
    if evaluation.tta:
        parts.append(f"TTA {evaluation.tta}")
    return ", ".join(parts)


def print_header(evaluation: CheckpointEval) -> None:
    result, meta = evaluation.result, evaluation.meta
    where = f"{evaluation.data} ({evaluation.split}, {result.count} images"
    where += ", ten-crop)" if evaluation.ten_crop else ")"
    if not evaluation.members:
        print(f"{evaluation.weights}: {meta['model']} on {where}")
        return
    print(f"ensemble of {len(evaluation.members)} checkpoints on {where}")
    for index, member in enumerate(evaluation.members, 1):
        print(f"  member {index}: {member.weights} ({member.model})")


def scores(result: EvalResult) -> str:
    return (
        f"top-1 error {100 * (1 - result.top1):.2f}%   top-5 error {100 * (1 - result.top5):.2f}%"
        f"   (top-1 accuracy {100 * result.top1:.2f}%)"
    )


def print_scores(evaluation: CheckpointEval) -> None:
    """One line per member, then the ensemble's (or the checkpoint's) numbers, each labelled
    with its TTA and followed by its single-view numbers."""
    rows: list[tuple[str, EvalResult | None]] = []
    for index, member in enumerate(evaluation.members, 1):
        rows += labelled(f"member {index}", evaluation.tta, member.result, member.single_view)
    name = "ensemble" if evaluation.members else ""
    rows += labelled(name, evaluation.tta, evaluation.result, evaluation.single_view)
    if rows == [("", evaluation.result)]:  # one checkpoint without TTA: the line it printed
        print(scores(evaluation.result))
        return
    width = max(len(label) for label, _ in rows) + 1
    for label, result in rows:
        if result is not None:
            print(f"{label + ':':<{width}}  {scores(result)}")


def labelled(
    name: str, tta: str | None, result: EvalResult, single_view: EvalResult | None
) -> list[tuple[str, EvalResult | None]]:
    """``name``'s rows: 'name, TTA flip' and 'name, single view', or just 'name'."""
    if not tta:
        return [(name, result)]
    prefix = f"{name}, " if name else ""
    return [(f"{prefix}TTA {tta}", result), (f"{prefix}single view", single_view)]
