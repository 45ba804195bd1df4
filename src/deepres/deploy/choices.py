"""The remembered choices of ``--runtime auto``: one JSON file in the cache folder
(``runtime-choices.json`` in ~/.cache/deepres or $DEEPRES_CACHE), one record per machine
and model shape, so a second ``eval``/``predict``/``serve`` picks without measuring.

A record is used only when the facts it was measured under are the same now: the model
(name, arguments, input shape), the batch size, the thread count, the torch and ONNX
Runtime versions, the processor (its name and torch's CPU capability, e.g. AVX512) and the
runtimes that were candidates. The file is JSON (never pickled) and never trusted blindly:
a file that does not parse, or a record of the wrong form, is ignored (with a warning) and
written anew after measuring again."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from deepres.errors import DeepresError
from deepres.runtime import atomic_write

log = logging.getLogger(__name__)

CHOICES_FILE = "runtime-choices.json"
FORMAT_VERSION = 1


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """What a measured speed depends on besides the model: versions and processor."""
    return {
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_name(),
    }


def key_of(facts: dict[str, Any]) -> str:
    """A record's name in the file: the hash of its facts."""
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ChoiceFile:
    """The file of remembered choices: ``get`` a valid record's runtime, ``put`` a new one."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / CHOICES_FILE

    def read(self) -> dict[str, Any]:
        """The records by key; {} (and a warning) when the file is missing or malformed."""
        if not self.path.is_file():
            return {}
        try:
            content = json.loads(self.path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return self.malformed(f"not readable JSON: {err}")
        if not isinstance(content, dict) or content.get("version") != FORMAT_VERSION:
            return self.malformed(f"not a version-{FORMAT_VERSION} runtime-choice file")
        records = content.get("choices")
        if not isinstance(records, dict):
            return self.malformed("it has no 'choices' object")
        return records

    def malformed(self, why: str) -> dict[str, Any]:
        log.warning("ignoring %s (%s); measuring again and rewriting it", self.path, why)
        return {}

    def get(self, facts: dict[str, Any], allowed: list[str]) -> str | None:
        """The remembered runtime for ``facts``, if its record is well formed, was made
        under the same facts and names one of ``allowed``."""
        record = self.read().get(key_of(facts))
        if not isinstance(record, dict):
            return None
        runtime = record.get("runtime")
        if record.get("facts") != json.loads(json.dumps(facts, default=str)):
            return None
        return runtime if isinstance(runtime, str) and runtime in allowed else None

    def put(self, facts: dict[str, Any], runtime: str, details: dict[str, Any]) -> None:
        """Remember ``runtime`` for ``facts`` (with what was measured); a cache folder that
        cannot be written costs a warning, not the command."""
        records = self.read()
        records[key_of(facts)] = {
            "facts": facts,
            "runtime": runtime,
            **details,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        content = {"version": FORMAT_VERSION, "choices": records}
        text = json.dumps(content, indent=2, sort_keys=True, default=str) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, text.encode())
        except (OSError, DeepresError) as err:
            log.warning("could not remember the runtime choice in %s: %s", self.path, err)
