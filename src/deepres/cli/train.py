"""``deepres train``: one process, or N through torchrun (``--nproc``, rendezvous options)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from deepres.cli.options import (
    device_name,
    existing_folder,
    existing_path,
    node_count,
    non_negative_int,
    positive_int,
)
from deepres.data import check_data
from deepres.errors import DeepresError
from deepres.models.factory import get_builder
from deepres.train import TrainConfig, resolve_config, train
from deepres.train.config import AMP_MODES, AUGMENTS, SCHEDULES, resume_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (see --recipe)")
    train_options(parser)
    parser.set_defaults(run=run)


def train_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``deepres train``; each default None means: the recipe's, else the
    built-in default (see ``deepres.train.config.TrainConfig``)."""
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
    add(
        "--recipe",
        help="a built-in recipe (deepres recipes lists them) or a JSON/YAML file of "
        "options, such as a run's config.json",
    )
    optimisation_options(parser)
    model_and_data_options(parser)
    runtime_options(parser)
    launch_options(parser)


def optimisation_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
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
    add(
        "--norm-weight-decay",
        type=float,
        help="weight decay of the BatchNorm weights and biases (default: --weight-decay)",
    )
    add("--schedule", choices=SCHEDULES)
    add("--milestones", type=float, nargs="+", help="step schedule: fractions of training")
    add("--warmup", type=float, help="linear warm-up in epochs (onecycle: fraction)")
    add("--label-smoothing", type=float)
    add("--grad-accum-steps", type=positive_int)
    add(
        "--ema",
        type=float,
        metavar="DECAY",
        help="also keep an exponential moving average of the weights (and BatchNorm "
        "statistics), such as 0.999; evaluated beside them, saved as ema.safetensors",
    )
    add(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the EMA's decay grow as min(DECAY, (1 + t) / (10 + t)) over the steps t "
        "(default), so the initial weights fade out; --no-ema-warmup: a plain EMA",
    )
    add("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA); 0 = off")
    add("--cutmix", type=float, metavar="ALPHA", help="cutmix with Beta(ALPHA, ALPHA); 0 = off")
    add("--mix-prob", type=float, metavar="P", help="mix this share of the batches (default 1)")


def model_and_data_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--num-classes", type=positive_int, help="default: the data set's class count")
    add("--shortcut", choices=["A", "B", "C", "none"])
    add("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None)
    add(
        "--init-from",
        type=existing_path,
        help="start from the weights in this file (safetensors or torch)",
    )
    add(
        "--augment",
        choices=AUGMENTS,
        help="randaugment / trivial: the data's crops and flips, then RandAugment or "
        "TrivialAugmentWide on each image; auto: the data set's own (flips for "
        "Fashion-MNIST, padded crops and flips for other small images)",
    )
    add(
        "--crop-padding",
        type=non_negative_int,
        metavar="PIXELS",
        help="small in-memory images: zero padding before the random crop (4, as in §4.2)",
    )
    add(
        "--random-erasing",
        type=float,
        metavar="P",
        help="erase a random rectangle of each training image with probability P",
    )
    add("--image-size", type=positive_int, help="crop size for image-folder data (224)")
    add("--train-subset", type=positive_int, help="use only the first K images of each class")
    add("--test-subset", type=positive_int, help="test on the first K images of each class")
    add("--val-split", type=positive_int, help="hold out N training images as the test set")
    add(
        "--workers",
        type=non_negative_int,
        help="DataLoader workers for image folders of large images",
    )


def runtime_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
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
    add(
        "--progress",
        choices=["auto", "bar", "lines", "off"],
        help="auto: a bar on a terminal, else lines (step, loss, img/s, ETA) every "
        "--progress-every seconds",
    )
    add("--progress-every", type=float, metavar="SECONDS", help="between progress lines (30)")
    add("--detect-anomaly", action=argparse.BooleanOptionalAction, default=None)
    add("--out", help="run folder (default runs/MODEL-DATA)")
    add("--resume", metavar="RUN", help="continue the run in this folder")


def launch_options(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> None:
    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "run", "resume", "recipe", *LAUNCH_OPTIONS) and v is not None
    }
    if args.resume:
        given = {**options, "recipe": args.recipe} if args.recipe else options
        cfg = resume_config(args.resume, given)
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
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **os.environ}
    code = subprocess.call(torchrun_command(args), env=env)
    if code:
        raise DeepresError(f"torchrun exited with status {code}")
