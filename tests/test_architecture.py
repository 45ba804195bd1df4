"""The shape of the code, checked: layers import only downwards (the import-linter contracts
in pyproject.toml), argparse lives in ``deepres.cli`` only, and every function fits on a
screen."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "deepres"
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_import_only_downwards():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.is_file():
        pytest.fail(f"{lint_imports} is missing: install the dev extra (bash setup.sh)")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_command_layer_uses_argparse():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if "cli" not in path.relative_to(PACKAGE).parts[:1]
        and "argparse" in imported_modules(ast.parse(path.read_text()))
    ]
    assert offenders == [], f"argparse outside deepres.cli: {offenders}"


def test_every_function_fits_on_a_screen():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The scanners are not blind: a long function and an argparse import are found."""
    source = "import argparse\n\ndef f():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES + 1)
    tree = ast.parse(source)
    assert "argparse" in imported_modules(tree)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert function.end_lineno - function.lineno + 1 > MAX_FUNCTION_LINES


def test_no_package_exports_a_name_of_its_own_submodules():
    """A package's names load on first use; one named like a submodule would become that
    module once anything imports the submodule (``deepres.train.evaluate``)."""
    clashes = []
    for init in PACKAGE.rglob("__init__.py"):
        package = ".".join(init.parent.relative_to(PACKAGE.parent).parts)
        submodules = {path.stem for path in init.parent.glob("*.py")} | {
            path.parent.name for path in init.parent.glob("*/__init__.py")
        }
        exported = set(importlib.import_module(package).__all__)
        clashes += [f"{package}.{name}" for name in exported & submodules]
    assert clashes == []
