"""``deepres info MODEL``: parameters, multiply-adds and the output size of each stage, then
the published weights of the model (the names ``--pretrained`` and ``--init-from`` take)."""

from __future__ import annotations

import argparse

from deepres.cli.options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="parameters, multiply-adds and stage output sizes")
    info.add_argument("model")
    info.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="image side in pixels (default 224, or 32 for CIFAR nets)",
    )
    info.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from deepres.models import count_macs, count_params, create_model, stage_table

    model = create_model(args.model)
    size = args.input_size or model.default_input_size
    rows = stage_table(model, size)
    params, macs = count_params(model), count_macs(model, size)
    print(f"{args.model}: {params:,} parameters, {macs / 1e9:.3f} G multiply-adds at {size}x{size}")
    print(f"{'stage':<10} {'output':>16} {'params':>12}")
    print(f"{'input':<10} {_size((model.in_chans, size, size)):>16} {'':>12}")
    for row in rows:
        print(f"{row.name:<10} {_size(row.output_size):>16} {row.params:>12,}")
    _print_published(args.model)


def _print_published(name: str) -> None:
    """The published weights of ``name``: torchvision's (with their ImageNet top-1) first."""
    from deepres.models.pretrained import published_weights, torchvision_meta

    names = published_weights(name)
    if not names:
        print(f"published weights: none for {name} (train it, or --init-from a file or URL)")
        return
    print(f"published weights ({len(names)}; --pretrained / --init-from NAME):")
    for i, spec in enumerate(names):
        note = " (default: torchvision)" if i == 0 and spec.startswith("torchvision:") else ""
        if spec.startswith("torchvision:"):
            top1 = torchvision_meta(name, spec.partition(":")[2])[1]["metrics"]
            top1 = top1.get("ImageNet-1K", {}).get("acc@1")
            note = (f"  ImageNet top-1 {top1:.2f}%" if top1 else "") + note
        print(f"  {spec}{note}")


def _size(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}, {shape[0]}"
    return f"{shape[0]}"
