"""The ``deepres`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from deepres.errors import DeepresError

if TYPE_CHECKING:
    from deepres.train import TrainConfig


# Argument types: each refuses a bad value at parse time and says what is allowed.


def _int_in(text: str, low: int, high: int | None, allowed: str) -> int:
    try:
        value = int(text)
        ok = value >= low and (high is None or value <= high)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _int_in(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    return _int_in(text, 0, None, "an integer >= 0")


def port_number(text: str) -> int:
    return _int_in(text, 0, 65535, "a port number from 0 to 65535 (0: any free port)")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def node_count(text: str) -> str:
    """torchrun's ``--nnodes``: N, or MIN:MAX for an elastic job."""
    try:
        counts = [int(part) for part in text.split(":")]
    except ValueError:
        counts = []
    if len(counts) not in (1, 2) or counts[0] < 1 or counts[0] > counts[-1]:
        raise argparse.ArgumentTypeError(f"must be N or MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return text


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N, where this machine has that device."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise argparse.ArgumentTypeError(
            f"{text}: this machine has {count} CUDA device(s); use auto or cpu"
        )
    return text


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text}")
    return text


def existing_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return text


def add_checkpoint(
    parser: argparse.ArgumentParser, what: str = "a run folder, .safetensors file or .pt2 program"
) -> None:
    """The ``--checkpoint`` option of the commands that read a trained model."""
    parser.add_argument("--checkpoint", required=True, type=existing_path, help=what)


def cmd_info(args: argparse.Namespace) -> None:
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


def train_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``deepres train``; each default None means: the recipe's, else the
    built-in default (see ``deepres.train.config.TrainConfig``)."""
    from deepres.train.config import AMP_MODES, AUGMENTS, SCHEDULES

    add = parser.add_argument
    add("--model", help="a name from deepres.list_models() (default resnet20)")
    add(
        "--data",
        help="cifar10-jpeg, cifar10, cifar100, fashion-mnist, imagenette-224, "
        "synthetic:CxHxW:CLASSES[:N], or a folder path",
    )
    add(
        "--data-root",
        type=existing_folder,
        help="folder holding the named data sets (default $DEEPRES_DATA, then ../shared/data)",
    )
    add("--recipe", help="he2016-cifar, he2016-imagenet or fast-cpu")
    add("--epochs", type=positive_int)
    add("--iters", type=positive_int, help="train this many iterations (overrides --epochs)")
    add("--batch-size", type=positive_int, help="global batch size")
    add("--lr", type=float)
    add(
        "--scale-lr",
        type=positive_int,
        dest="lr_scale_batch",
        metavar="REF_BATCH",
        help="linear scaling rule (Goyal et al. 2017): lr x global batch / REF_BATCH",
    )
    add("--momentum", type=float)
    add("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    add("--weight-decay", type=float)
    add("--schedule", choices=SCHEDULES)
    add("--milestones", type=float, nargs="+", help="step schedule: fractions of training")
    add("--warmup", type=float, help="linear warm-up in epochs (onecycle: fraction)")
    add("--label-smoothing", type=float)
    add("--grad-accum-steps", type=positive_int)
    add("--num-classes", type=positive_int, help="default: the data set's class count")
    add("--shortcut", choices=["A", "B", "C", "none"])
    add("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None)
    add(
        "--init-from",
        type=existing_path,
        help="start from the weights in this file (safetensors or torch)",
    )
    add("--augment", choices=AUGMENTS)
    add("--image-size", type=positive_int, help="crop size for image-folder data (224)")
    add("--train-subset", type=positive_int, help="use only the first K images of each class")
    add("--test-subset", type=positive_int, help="test on the first K images of each class")
    add("--val-split", type=positive_int, help="hold out N training images as the test set")
    add(
        "--workers",
        type=non_negative_int,
        help="DataLoader workers for image folders of large images",
    )
    add("--amp", choices=AMP_MODES)
    add("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    add("--compile", action=argparse.BooleanOptionalAction, default=None)
    add(
        "--grad-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep one activation per block and recompute the rest in the backward pass",
    )
    add("--device", type=device_name, help="auto, cpu, cuda, cuda:N")
    add("--threads", type=positive_int)
    add("--sync-bn", action=argparse.BooleanOptionalAction, default=None)
    add("--seed", type=non_negative_int)
    add("--eval-every", type=positive_int, help="evaluate every N epochs")
    add("--checkpoint-every", type=positive_int, help="also checkpoint every N iterations")
    add("--progress", choices=["auto", "bar", "lines", "off"])
    add("--detect-anomaly", action=argparse.BooleanOptionalAction, default=None)
    add("--out", help="run folder (default runs/MODEL-DATA)")
    add("--resume", metavar="RUN", help="continue the run in this folder")
    launch = parser.add_argument_group(
        "launching through torchrun (one process per device; see train/distributed.py)"
    )
    launch.add_argument("--nproc", type=positive_int, help="processes per machine")
    launch.add_argument(
        "--nnodes", type=node_count, help="machines, N or MIN:MAX (torchrun --nnodes)"
    )
    launch.add_argument(
        "--node-rank", type=non_negative_int, help="this machine's rank (static rendezvous)"
    )
    launch.add_argument("--rdzv-endpoint", help="HOST:PORT that every machine can reach")
    launch.add_argument("--rdzv-backend", help="c10d (default with an endpoint) or static")
    launch.add_argument("--rdzv-id", help="a job id, the same on every machine")
    launch.add_argument(
        "--max-restarts",
        type=non_negative_int,
        help="restart all workers up to N times after a failure",
    )


RESUME_OVERRIDABLE = {"progress", "threads", "workers", "device", "grad_checkpointing"}


def cmd_train(args: argparse.Namespace) -> None:
    import json

    from deepres.train import TrainConfig, resolve_config, train

    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "run", "resume", "recipe", *LAUNCH_OPTIONS) and v is not None
    }
    if args.resume:
        saved = Path(args.resume) / "config.json"
        if not saved.is_file():
            raise DeepresError(
                f"nothing to resume in {args.resume}: it has no config.json (a run stopped "
                "before it wrote one: start it again with its original command)"
            )
        values = json.loads(saved.read_text())
        given = {**options, "recipe": args.recipe} if args.recipe else options
        for key, value in given.items():
            if key not in RESUME_OVERRIDABLE and value != values.get(key):
                raise DeepresError(
                    f"--{key.replace('_', '-')} {value} differs from the run's {values.get(key)}"
                    f" (in {saved}); resume with the run's own settings or start a new run"
                )
        values.update(options, out=args.resume)
        cfg = TrainConfig(**values).validate()
    else:
        if "out" not in options:
            model = options.get("model", TrainConfig.model)
            data = str(options.get("data", TrainConfig.data)).replace(":", "-").replace("/", "-")
            options["out"] = f"runs/{model}-{data.strip('-.')}"
        cfg = resolve_config(args.recipe, **options)
    check_inputs(cfg)
    launching = {k: getattr(args, k) for k in LAUNCH_OPTIONS if getattr(args, k) is not None}
    if launching and (launching.keys() != {"nproc"} or args.nproc > 1):
        launch_torchrun(args)
        return
    train(cfg, resume=bool(args.resume))


def check_inputs(cfg: TrainConfig) -> None:
    """The names that ``train`` would find wrong only after taking the run folder."""
    from deepres.data import check_data
    from deepres.models.registry import get_builder

    get_builder(cfg.model)
    check_data(cfg.data, cfg.data_root)


LAUNCH_OPTIONS = (
    "nproc",
    "nnodes",
    "node_rank",
    "rdzv_endpoint",
    "rdzv_backend",
    "rdzv_id",
    "max_restarts",
)


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``deepres train --nproc N [--nnodes ...] OPTIONS`` as the torchrun command that runs
    ``python -m deepres train OPTIONS`` in every process. One machine: ``--standalone`` (a
    free port, a fresh job id); several: the rendezvous options pass through."""
    import os

    if "TORCHELASTIC_RUN_ID" in os.environ:
        raise DeepresError(
            "--nproc and the rendezvous options launch torchrun; this process already runs "
            "under torchrun: drop them"
        )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"]
    command.append(str(args.nproc or 1))
    if args.nnodes is None and args.rdzv_endpoint is None:
        command.append("--standalone")
    else:
        backend = args.rdzv_backend or ("c10d" if args.rdzv_endpoint else "static")
        command += ["--nnodes", args.nnodes or "1", "--rdzv-backend", backend]
        for flag, value in (
            ("--node-rank", args.node_rank),
            ("--rdzv-endpoint", args.rdzv_endpoint),
            ("--rdzv-id", args.rdzv_id),
        ):
            if value is not None:
                command += [flag, str(value)]
    if args.max_restarts is not None:
        command += ["--max-restarts", str(args.max_restarts)]
    return [*command, "-m", "deepres", "train", *worker_options(args)]


def worker_options(args: argparse.Namespace) -> list[str]:
    """The parsed training options back as command-line flags, without the launcher's."""
    flags: list[str] = []
    for key, value in vars(args).items():
        if key in ("command", "run", *LAUNCH_OPTIONS) or value is None:
            continue
        flag = "--" + ("scale-lr" if key == "lr_scale_batch" else key.replace("_", "-"))
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def launch_torchrun(args: argparse.Namespace) -> None:
    """Run ``torchrun_command(args)``; its exit status becomes ours. The c10d rendezvous gets
    a fresh store in every round, so that restarted workers never read a failed attempt's
    addresses (pytorch/pytorch#135712)."""
    import os
    import subprocess

    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **os.environ}
    code = subprocess.call(torchrun_command(args), env=env)
    if code:
        raise DeepresError(f"torchrun exited with status {code}")


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from deepres.data import check_data, load_split, resolve
    from deepres.data.augment import BatchLoader
    from deepres.data.dataset import TensorData
    from deepres.plots import plot_confusion
    from deepres.train.checkpoint import load_model, resolve_weights
    from deepres.train.data import FolderBatches, default_workers
    from deepres.train.evaluate import evaluate

    if args.data:
        check_data(args.data, args.data_root, args.split)
    model, meta = load_model(args.checkpoint)
    data_name = args.data or meta.get("data")
    if not data_name:
        raise DeepresError(f"{args.checkpoint} names no data set: give --data NAME or a folder")
    if args.ten_crop:
        source = resolve(data_name, args.data_root)
        if source.kind != "folder" or source.in_memory:
            raise DeepresError(
                f"--ten-crop is for image folders of large images; {data_name} has small "
                "images held in memory: drop --ten-crop"
            )
    split = load_split(
        data_name,
        args.split,
        args.data_root,
        subset=args.subset,
        image_size=meta.get("input_size", 224),
        ten_crop=args.ten_crop,
        stats=(meta["mean"], meta["std"]),
    )
    if list(split.classes) != list(meta["classes"]):
        raise DeepresError(
            f"{data_name} has classes {split.classes[:5]}..., the checkpoint "
            f"{meta['classes'][:5]}...: evaluate on the data it was trained for"
        )
    if isinstance(split, TensorData):
        batches = BatchLoader(
            split, args.batch_size, mean=meta["mean"], std=meta["std"], shuffle=False
        ).iter_epoch(0)
    else:
        batches = FolderBatches(
            split,
            args.batch_size,
            shuffle=False,
            drop_last=False,
            seed=0,
            rank=0,
            world_size=1,
            workers=default_workers(1),
        ).iter_epoch(0)
    result = evaluate(model, batches, len(meta["classes"])).result()
    weights = resolve_weights(args.checkpoint)
    print(
        f"{weights}: {meta['model']} on {data_name} ({args.split}, {result.count} images"
        f"{', ten-crop' if args.ten_crop else ''})"
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
    out = Path(args.out) if args.out else (weights.parent)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(
        result.confusion,
        meta["classes"],
        out / "confusion.png",
        f"{meta['model']} on {data_name}: top-1 {100 * result.top1:.2f}%",
    )
    report = {
        "checkpoint": str(weights),
        "data": data_name,
        "split": args.split,
        **result.as_dict(),
        "count": result.count,
        "per_class": dict(zip(meta["classes"], result.per_class.tolist(), strict=True)),
        "confusion": result.confusion.tolist(),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    print(f"saved {png} and {out / 'eval.json'}")


def cmd_predict(args: argparse.Namespace) -> None:
    import json

    from deepres.inference import Predictor, expand_inputs

    paths = expand_inputs(args.images)
    if not paths:
        raise DeepresError("no image files found in " + ", ".join(args.images))
    predictor = Predictor(args.checkpoint)
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


def _size(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}, {shape[0]}"
    return f"{shape[0]}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepres", description="Deep residual networks: train, evaluate, ship."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameters, multiply-adds and stage output sizes")
    info.add_argument("model")
    info.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="image side in pixels (default 224, or 32 for CIFAR nets)",
    )
    info.set_defaults(run=cmd_info)

    train = sub.add_parser("train", help="train a model (see --recipe)")
    train_options(train)
    train.set_defaults(run=cmd_train)

    ev = sub.add_parser("eval", help="top-1/top-5 error, per-class accuracy, confusion matrix")
    add_checkpoint(ev)
    ev.add_argument("--data", help="default: the data set the checkpoint was trained on")
    ev.add_argument("--data-root", type=existing_folder)
    ev.add_argument("--split", default="test", choices=["train", "test", "val"])
    ev.add_argument("--subset", type=positive_int, help="first K images of each class")
    ev.add_argument("--batch-size", type=positive_int, default=250)
    ev.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing")
    ev.add_argument("--out", help="folder for confusion.png and eval.json (default: the run)")
    ev.set_defaults(run=cmd_eval)

    pr = sub.add_parser("predict", help="top classes of image files")
    add_checkpoint(pr)
    pr.add_argument("images", nargs="+", type=existing_path, help="image files or folders")
    pr.add_argument("--top-k", type=positive_int, default=5)
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.set_defaults(run=cmd_predict)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


# Subcommands that live beside the code they run: each module has ``register(sub)``.
COMMAND_MODULES: list[str] = ["deepres.bench", "deepres.experiments.cli", "deepres.deploy.cli"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except DeepresError as err:
        print(f"deepres: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepres: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
