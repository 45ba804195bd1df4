"""``deepres publish RUN FOLDER``: a run as a shareable deepres folder (``model.safetensors``
and ``config.json``) that ``--pretrained FOLDER``, ``--init-from FOLDER`` and
``create_model(name, pretrained=FOLDER)`` read; uploaded to a Hugging Face model repository,
it is the name ``hf-hub:ORG/REPO``. Nothing is uploaded here."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepres.cli.options import RUN_FOLDER_WEIGHTS, add_ema, existing_path
from deepres.errors import DeepresError

OWN_FILES = ("model.safetensors", "config.json")  # deepres.models.pretrained's folder


def register(sub: argparse._SubParsersAction) -> None:
    pb = sub.add_parser(
        "publish", help="a run as a shareable weights folder (model.safetensors + config.json)"
    )
    pb.add_argument(
        "source",
        metavar="RUN",
        type=existing_path,
        help=f"a run folder or its .safetensors file; {RUN_FOLDER_WEIGHTS}",
    )
    pb.add_argument(
        "folder", metavar="FOLDER", help="the folder to write (new, or one written by publish)"
    )
    add_ema(pb)
    pb.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():
        raise DeepresError(f"{folder} is a file: give a folder to write")
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    others = [name for name in present if name not in OWN_FILES]
    if others:
        raise DeepresError(
            f"{folder} holds other files ({', '.join(others[:5])}): publish writes a folder of "
            f"its own ({' and '.join(OWN_FILES)}); give a new one"
        )
    from deepres.checkpoints.published import save_pretrained

    out = save_pretrained(args.source, folder, ema=args.ema)
    print(f"wrote {out / OWN_FILES[0]} and {out / OWN_FILES[1]}")
    print(
        f"use it with --pretrained {out} (predict, serve), --init-from {out} (train) or "
        f"create_model(name, pretrained={str(out)!r}); uploaded to a Hugging Face model "
        "repository ORG/REPO, it is --pretrained hf-hub:ORG/REPO"
    )
