"""The command line, run as a user runs it."""

import subprocess
import sys


def deepres(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepres", *args], capture_output=True, text=True, timeout=300
    )


def test_info_resnet50_prints_the_stage_table():
    result = deepres("info", "resnet50")
    assert result.returncode == 0, result.stderr
    assert "25,557,032 parameters" in result.stdout
    assert "4.089 G multiply-adds" in result.stdout
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert "112x112" in lines["conv1"] and "56x56" in lines["layer1"]
    assert "7x7, 2048" in lines["layer4"] and "1x1" in lines["avgpool"]


def test_info_unknown_model_is_a_clear_error():
    result = deepres("info", "resnet5")
    assert result.returncode == 2
    assert "unknown model 'resnet5'" in result.stderr and "Did you mean" in result.stderr
    assert "Traceback" not in result.stderr
