"""Argument types shared by the commands: each refuses a bad value at parse time and says
what is allowed, so no command starts work on a bad argument."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from deepres.deploy.options import RUNTIMES
from deepres.errors import DeepresError
from deepres.inference.options import TTA_MODES


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
    if text == "auto":
        return text
    import torch  # here, not at the top: the command line starts without torch

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


# the published-name forms of ``deepres.models.pretrained.resolve_pretrained`` (torch-free)
WEIGHT_NAMES = ("torchvision", "torchvision:", "timm:", "hf-hub:", "http://", "https://")


def weights_spec(text: str) -> str:
    """Weights to start from: an existing file or folder, an http(s) URL or a published name
    (``torchvision[:TAG]``, ``timm:ARCH.TAG``, ``hf-hub:ORG/REPO``); resolved when used."""
    if text == "torchvision" or text.startswith(WEIGHT_NAMES[1:]) or Path(text).exists():
        return text
    raise argparse.ArgumentTypeError(
        f"no such file or folder: {text} (nor an http(s) URL or a published name: "
        "torchvision[:TAG], timm:ARCH.TAG, hf-hub:ORG/REPO)"
    )


def existing_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return text


# what every command that reads a run folder takes from it
RUN_FOLDER_WEIGHTS = (
    "a run folder means its final weights, model.safetensors (give best-val.safetensors, "
    "which --val-split runs keep, by its file name)"
)


def add_checkpoint(
    parser: argparse.ArgumentParser,
    what: str = "a run folder, .safetensors file or .pt2 program",
    several: bool = False,
    required: bool = True,
) -> None:
    """The ``--checkpoint`` option of the commands that read a trained model; ``several``:
    repeatable (a list of one or more), for an ensemble; not ``required`` where
    ``add_pretrained``'s pair can replace it."""
    what = f"{what}; {RUN_FOLDER_WEIGHTS}"
    if several:
        parser.add_argument(
            "--checkpoint",
            required=required,
            action="append",
            type=existing_path,
            help=f"{what}; repeat it for an ensemble (probabilities averaged)",
        )
    else:
        parser.add_argument("--checkpoint", required=True, type=existing_path, help=what)


def add_pretrained(parser: argparse.ArgumentParser) -> None:
    """``--model NAME --pretrained SPEC``: published weights instead of ``--checkpoint``
    (``checkpoint_or_pretrained`` checks the choice)."""
    parser.add_argument(
        "--model", help="with --pretrained: the model to build (default: the one the weights name)"
    )
    parser.add_argument(
        "--pretrained",
        metavar="SPEC",
        type=weights_spec,
        help="instead of --checkpoint: weights with class names, by published name "
        "(torchvision, torchvision:IMAGENET1K_V2, timm:ARCH.TAG, hf-hub:ORG/REPO) or a "
        "deepres folder (deepres publish) or run folder",
    )


def checkpoint_or_pretrained(args: argparse.Namespace) -> None:
    """Refuse ``--checkpoint`` with ``--model``/``--pretrained``, and neither of them."""
    if args.checkpoint and (args.model or args.pretrained):
        raise DeepresError(
            "--checkpoint and --model/--pretrained exclude each other: give a trained run "
            "with --checkpoint, or published weights with --model NAME --pretrained SPEC"
        )
    if not args.checkpoint and not args.pretrained:
        hint = f" (--pretrained torchvision, say, for {args.model})" if args.model else ""
        raise DeepresError(
            f"give --checkpoint RUN, or --pretrained SPEC{hint}: a model needs weights"
        )
    if args.pretrained and getattr(args, "ema", False):
        raise DeepresError("--ema reads a run's EMA weights: use it with --checkpoint")


def add_tta(parser: argparse.ArgumentParser) -> None:
    """``--tta flip|flip-crop``: test-time augmentation."""
    parser.add_argument(
        "--tta",
        choices=list(TTA_MODES),
        help="test-time augmentation: average the image and its mirror (flip), or those "
        "and their 2-pixel shifts up/down/left/right (flip-crop, 10 views)",
    )


def add_ema(parser: argparse.ArgumentParser) -> None:
    """``--ema``: a run's EMA weights."""
    parser.add_argument(
        "--ema",
        action="store_true",
        help="use the run's EMA weights (ema.safetensors in the run folder)",
    )


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """``--runtime auto|torch|eager|onnxruntime|openvino``: what runs the model (all exact
    in fp32)."""
    parser.add_argument(
        "--runtime",
        choices=list(RUNTIMES),
        default="auto",
        help="what runs the model, every choice exact in fp32: eager (as loaded), torch "
        "(BatchNorm folded, channels-last), onnxruntime, openvino, or auto (default: the fastest "
        "exact one, measured once on this machine and remembered in the cache)",
    )


def renamed_from(old: str) -> type[argparse.Action]:
    """A store action for a flag with a new name that still takes its ``old`` one for a
    release, with a warning on stderr when the old name is used."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            if option_string == old:
                new = self.option_strings[0]
                print(
                    f"deepres: warning: {old} is now {new}; {old} goes in the next release",
                    file=sys.stderr,
                )
            setattr(namespace, self.dest, values)

    return Renamed
