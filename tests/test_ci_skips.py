"""tests/conftest.py in CI: with ``CI=true`` every skip (a missing dev dependency, a missing
../shared/data, a skipif mark) fails with its reason; without it, the skips stay skips and the
summary names each reason. Checked on a small suite run by a real pytest in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

SUITE = """
import pytest

def test_passes():
    pass

def test_data_is_missing():
    pytest.skip("../shared/data/some-set is not here")

@pytest.mark.skipif(True, reason="a skipif mark")
def test_marked():
    pass

def test_dev_dependency_is_missing():
    pytest.importorskip("a_dev_dependency_that_is_not_installed")

@pytest.mark.xfail(reason="an expected failure", strict=True)
def test_expected_failure():
    assert False
"""


def run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        "from pathlib import Path\n"
        f"exec(compile(Path({str(CONFTEST)!r}).read_text(), 'conftest', 'exec'))\n"
    )
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "test_suite.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_in_ci_every_skip_fails_and_names_its_reason(tmp_path):
    done = run_suite(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    summary = done.stdout.splitlines()[-1]
    assert "1 passed" in summary and "skipped" not in summary, summary
    assert "2 failed" in summary and "1 error" in summary and "1 xfailed" in summary, summary
    for reason in (
        "../shared/data/some-set is not here",
        "a skipif mark",
        "could not import 'a_dev_dependency_that_is_not_installed'",
    ):
        assert f"CI=true: a skip is a failure here: {reason}" in done.stdout, done.stdout


def test_locally_skips_stay_skips_with_their_reasons(tmp_path):
    for ci in (None, "false"):
        done = run_suite(tmp_path, ci)
        assert done.returncode == 0, done.stdout
        assert "1 passed, 3 skipped, 1 xfailed" in done.stdout.splitlines()[-1]
        for reason in ("../shared/data/some-set is not here", "a skipif mark"):
            assert "SKIPPED [1] test_suite.py" in done.stdout and reason in done.stdout
