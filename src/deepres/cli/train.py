"""``deepres train``: one process, or N through torchrun (``--nproc``, rendezvous options).

The training flags are made from the fields of ``TrainConfig`` (``train_config_options``):
each field's ``option`` declares its help, group, choices and check; only the options that
are not fields (``--resume``, the launcher's) are written here."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from deepres.cli.options import (
    device_name,
    existing_folder,
    existing_path,
    node_count,
    non_negative_int,
    positive_int,
    weights_spec,
)
from deepres.errors import DeepresError
from deepres.train.config import (
    GROUPS,
    OptionSpec,
    TrainConfig,
    option_specs,
    resolve_config,
    resume_config,
)

# the parse-time check of each ``option(check=...)`` name
CHECKS: dict[str, Callable[[str], Any]] = {
    "positive": positive_int,
    "non_negative": non_negative_int,
    "folder": existing_folder,
    "path": existing_path,
    "device": device_name,
    "weights": weights_spec,
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (see --recipe)")
    train_options(parser)
    parser.set_defaults(run=run)


def train_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``deepres train``; each default None means: the recipe's, else the
    built-in default (see ``deepres.train.config.TrainConfig``)."""
    groups = train_config_options(parser)
    groups["runtime"].add_argument(
        "--resume", metavar="RUN", help="continue the run in this folder"
    )
    launch_options(parser)


def train_config_options(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A flag for every ``TrainConfig`` field, in the argument group its ``option`` names
    (the field's group "" is the command's own); returns the groups by name."""
    groups: dict[str, Any] = {"": parser}
    groups.update((name, parser.add_argument_group(name)) for name in GROUPS if name)
    for spec in option_specs():
        groups[spec.group].add_argument(spec.flag, *spec.aliases, **flag_settings(spec))
    return groups


def flag_settings(spec: OptionSpec) -> dict[str, Any]:
    """``add_argument``'s settings for the option ``spec``: default None (the recipe's, else
    the field's default), ``--x/--no-x`` for a boolean, the check of ``CHECKS`` (else the
    field's type), choices, ``nargs="+"`` for a list."""
    settings: dict[str, Any] = {
        "dest": spec.name,
        "default": None,
        "help": spec.help.replace("%", "%%"),
    }
    if spec.kind is bool:
        return {**settings, "action": argparse.BooleanOptionalAction}
    if spec.check or spec.kind is not str:
        settings["type"] = CHECKS[spec.check] if spec.check else spec.kind
    if spec.choices is not None:
        settings["choices"] = spec.choices
    if spec.many:
        settings["nargs"] = "+"
    if spec.metavar:
        settings["metavar"] = spec.metavar
    return settings


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
    from deepres.train.loop import train

    options = {
        spec.name: getattr(args, spec.name)
        for spec in option_specs()
        if spec.name != "recipe" and getattr(args, spec.name) is not None
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
    from deepres.data import check_data
    from deepres.models.factory import get_builder

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
        flag = "--" + key.replace("_", "-")
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
