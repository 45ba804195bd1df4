"""The command line starts without torch: ``deepres --help``, every ``deepres COMMAND --help``
and ``deepres recipes`` import neither torch nor torchvision (read from ``python -X
importtime``, which names every module a process imports; nothing here is timed)."""

import subprocess
import sys

import pytest

from deepres.cli import COMMANDS

HEAVY = ("torch", "torchvision")


def imported(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deepres", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if "--help" in args:
        assert "usage: deepres" in result.stdout, result.stdout[-500:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "python -X importtime printed nothing"
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


def test_importtime_sees_torch_when_it_is_imported():
    """The check below can fail: a command that runs a model does import torch."""
    assert "torch" in imported("info", "resnet20")


COMMAND_NAMES = [command.__name__.rsplit(".", 1)[-1] for command in COMMANDS]


@pytest.mark.parametrize(
    "args", [("--help",), ("recipes",), *((c, "--help") for c in COMMAND_NAMES)]
)
def test_help_does_not_import_torch(args):
    modules = imported(*args)
    assert not [m for m in modules if m.split(".")[0] in HEAVY], f"deepres {' '.join(args)}"
