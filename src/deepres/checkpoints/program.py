"""Exported programs (``.pt2``) that carry deepres metadata, read without unpickling.

``deepres export --format exported-program`` and ``deepres quantize`` both write a
``torch.export`` archive with the checkpoint's metadata (model name, classes, mean, std,
input size, data set) as an extra JSON file, so ``load_model``, ``deepres eval`` and
``deepres predict`` take a ``.pt2`` file wherever they take a ``.safetensors`` one.

``torch.export.load`` unpickles tensor subclasses and custom objects when an archive asks
for it. A deepres program holds only plain tensors, so the archive's index is checked first
and a file that asks for unpickling is refused before anything in it is loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepres.errors import DeepresError, first_line
from deepres.runtime import atomic_write

META_FILE = "deepres.json"
PROGRAM_SUFFIX = ".pt2"


@contextlib.contextmanager
def quiet_torchao() -> Iterator[None]:
    """torchao's import logs a deprecation note of torch's pytree; hide it."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def save_program(path: Path, program: torch.export.ExportedProgram, meta: dict[str, Any]) -> None:
    """Write ``program`` with ``meta`` (JSON) to ``path``, atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.export.save(program, f, extra_files={META_FILE: json.dumps(meta)})

    atomic_write(Path(path), write)


def check_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that would make ``torch.export.load`` unpickle objects:
    payloads marked ``use_pickle``, custom/opaque objects, or ``.pt`` members (sample inputs,
    legacy weights) that do not load with ``weights_only=True``."""
    import io

    def refuse(what: str) -> DeepresError:
        return DeepresError(
            f"refusing to load {path}: {what}, which could run code when unpickled. deepres "
            "programs hold plain tensors only; re-create the file with `deepres export "
            "--format exported-program` or `deepres quantize`."
        )

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name in names:
                if name.endswith(("_weights_config.json", "_constants_config.json")):
                    config = json.loads(archive.read(name)).get("config", {})
                    for key, entry in config.items():
                        if entry.get("use_pickle"):
                            raise refuse(f"it stores {key!r} as a pickle")
                elif "/constants/custom_obj" in name or "/constants/opaque" in name:
                    raise refuse(f"it holds a pickled object ({name})")
                elif name.endswith(".pt"):
                    try:
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                    except Exception:  # any failure means torch would retry unsafely
                        raise refuse(f"{name} is not plain tensor data") from None
            if not any(n.endswith(f"extra/{META_FILE}") for n in names):
                raise DeepresError(
                    f"{path} has no deepres metadata ({META_FILE}); export it with "
                    "`deepres export --format exported-program` or `deepres quantize`."
                )
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DeepresError(f"{path} is not a readable .pt2 archive: {err}") from None


class ProgramModel(nn.Module):
    """A loaded exported program as a module that ``eval()``/``train(False)`` accept.

    An exported module cannot switch modes (it was captured in eval mode); this wrapper
    keeps the flag and refuses training mode instead of failing deep inside torch.
    """

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        self.program = program
        self.module_ = program.module()

    def train(self, mode: bool = True) -> ProgramModel:
        if mode:
            raise DeepresError(
                "an exported or quantized program runs in inference mode only; "
                "train from the .safetensors checkpoint instead"
            )
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module_(x)

    def compile(self) -> ProgramModel:  # type: ignore[override]
        """Compile with Inductor and weight freezing: int8 programs then run as fused
        int8 kernels (oneDNN) instead of quantize/dequantize around fp32 ones."""
        import torch._inductor.config as inductor_config

        try:  # importing the quantizer registers its int8 fusion passes with Inductor
            with quiet_torchao():
                import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
        except ImportError:
            pass
        inductor_config.freezing = True
        self.module_ = torch.compile(self.module_)
        return self


def load_program(path: str | Path) -> tuple[ProgramModel, dict[str, Any]]:
    """A deepres ``.pt2`` file as (model in eval mode, metadata)."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (int8 ops of quantized programs)

    path = Path(path)
    if not path.is_file():
        raise DeepresError(f"program not found: {path}")
    check_archive(path)
    extra = {META_FILE: ""}
    try:
        with open(path, "rb") as f:  # a file object: any name, no fallback to older formats
            program = torch.export.load(f, extra_files=extra)
    except Exception as err:  # torch raises many types for damaged or foreign archives
        first = first_line(err)
        raise DeepresError(f"{path} could not be loaded as an exported program: {first}") from None
    meta = json.loads(extra[META_FILE])
    return ProgramModel(program).eval(), meta
