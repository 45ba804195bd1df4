"""``deepres average RUN_OR_FILE... --out DIR``: one model from the mean of several
checkpoints' weights (SWA, model soups), BatchNorm statistics recomputed on training data."""

from __future__ import annotations

import argparse

from deepres.cli.options import (
    RUN_FOLDER_WEIGHTS,
    existing_folder,
    existing_path,
    non_negative_int,
    positive_int,
)
from deepres.train.config import DEFAULT_BN_BATCH_SIZE, DEFAULT_BN_BATCHES


def register(sub: argparse._SubParsersAction) -> None:
    av = sub.add_parser(
        "average",
        help="average checkpoints' weights into one model (SWA / model soups)",
        description="Average the weights of checkpoints of one model (snapshots of a run, or "
        "fine-tunes of one pre-trained model), recompute the BatchNorm statistics on training "
        "images (not augmented) and write OUT/model.safetensors.",
    )
    av.add_argument(
        "checkpoints",
        nargs="+",
        type=existing_path,
        metavar="RUN_OR_FILE",
        help="run folders or .safetensors files of the same model and classes; "
        f"{RUN_FOLDER_WEIGHTS}",
    )
    av.add_argument("--out", required=True, help="folder for the averaged model.safetensors")
    av.add_argument(
        "--bn-batches",
        type=non_negative_int,
        default=DEFAULT_BN_BATCHES,
        help=f"training batches to recompute BatchNorm statistics on ({DEFAULT_BN_BATCHES}); "
        "0 keeps the averaged statistics",
    )
    av.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BN_BATCH_SIZE,
        help=f"images per batch for the statistics ({DEFAULT_BN_BATCH_SIZE})",
    )
    av.add_argument("--data", help="default: the data set the checkpoints were trained on")
    av.add_argument("--data-root", type=existing_folder, help="folder holding the named data sets")
    av.add_argument("--threads", type=positive_int, help="CPU threads")
    av.add_argument("--no-eval", action="store_true", help="skip testing the averaged model")
    av.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from deepres.train.average import average_checkpoints
    from deepres.train.evaluate import evaluate_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    result = average_checkpoints(
        args.checkpoints,
        args.out,
        bn_batches=args.bn_batches,
        batch_size=args.batch_size,
        data=args.data,
        data_root=args.data_root,
    )
    print(f"averaged {len(result.sources)} checkpoints of {result.meta['model']}:")
    for source in result.sources:
        print(f"  {source}")
    if result.bn_images:
        print(f"BatchNorm statistics recomputed on {result.bn_images} training images")
    else:
        print("BatchNorm statistics: the averaged ones (none recomputed)")
    print(f"saved {result.path}")
    if args.no_eval:
        return
    evaluation = evaluate_checkpoint(result.path, data=args.data, data_root=args.data_root)
    test = evaluation.result
    print(
        f"test ({evaluation.data}, {test.count} images): top-1 error {100 * (1 - test.top1):.2f}%"
        f"   top-5 error {100 * (1 - test.top5):.2f}%"
    )
