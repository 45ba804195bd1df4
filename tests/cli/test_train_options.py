"""``deepres train``'s flags are made from the ``TrainConfig`` fields: one flag per field,
named after it, with the field's help, choices and check; recipes are checked against the
same fields."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepres.cli import build_parser, main
from deepres.train.config import TrainConfig, option_specs, resolve_config

CLI = Path(__file__).resolve().parents[2] / "src" / "deepres" / "cli"


def train_parser():
    sub = build_parser()._subparsers._group_actions[0]
    return sub.choices["train"]


def test_every_field_has_a_flag_named_after_it_that_sets_it():
    flags = {s: a for a in train_parser()._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in flags, flag
        assert flags[flag].dest == f.name and flags[flag].default is None, flag
        assert f.metadata["help"], f"{f.name} has no help text"


def test_each_fields_help_text_is_in_deepres_train_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside a help text
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--help"])
    assert stopped.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for spec in option_specs():
        assert " ".join(spec.help.split()) in out, spec.name
    for title in ("optimisation:", "model and data:", "runtime:", "launching through torchrun"):
        assert title in out


def test_choices_and_checks_come_from_the_fields():
    flags = {s: a for a in train_parser()._actions for s in a.option_strings}
    schedules = ["step", "cosine", "onecycle", "constant", "flat-cos"]
    assert list(flags["--schedule"].choices) == schedules
    assert list(flags["--shortcut"].choices) == ["A", "B", "C", "none"]
    assert flags["--progress"].choices == ("auto", "bar", "lines", "off")
    assert flags["--batch-size"].type.__name__ == "positive_int"
    assert flags["--seed"].type.__name__ == "non_negative_int"
    assert flags["--lr"].type is float and flags["--milestones"].nargs == "+"


def test_every_check_a_field_may_name_has_a_parser():
    from deepres.cli.train import CHECKS
    from deepres.train import config

    assert set(CHECKS) == set(config.CHECKS)
    assert {spec.check for spec in option_specs()} - {None} <= set(CHECKS)


@pytest.mark.parametrize("flag", ["--scale-lr", "--lr-scale-batch"])
def test_scale_lr_is_an_alias_of_lr_scale_batch(flag):
    args = build_parser().parse_args(["train", flag, "256", "--batch-size", "512"])
    assert args.lr_scale_batch == 256
    cfg = resolve_config(lr_scale_batch=args.lr_scale_batch, batch_size=args.batch_size)
    assert cfg.lr_scale_batch == 256


def test_the_new_flags_set_their_fields():
    argv = ["train", "--gamma", "0.2", "--warmup-lr", "0.01", "--warmup-until-error", "0.5"]
    argv += ["--warmup-min-depth", "56", "--description", "a try"]
    args = build_parser().parse_args(argv)
    assert (args.gamma, args.warmup_lr, args.warmup_until_error) == (0.2, 0.01, 0.5)
    assert (args.warmup_min_depth, args.description) == (56, "a try")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batchsize": 64}, "unknown option(s) batchsize (did you mean batch_size?)"),
        (
            {"schedule": "cosin"},
            "schedule must be one of step, cosine, onecycle, constant, flat-cos",
        ),
        ({"shortcut": "D"}, "shortcut must be one of A, B, C, none; got 'D'"),
    ],
)
def test_deepres_train_refuses_a_bad_recipe_naming_it(tmp_path, capsys, values, message):
    recipe = tmp_path / "mine.json"
    recipe.write_text(json.dumps(values))
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "mine.json" in err
    assert not (tmp_path / "run").exists()


def test_deepres_recipes_options_lists_every_field(capsys):
    assert main(["recipes", "--options"]) == 0
    out = capsys.readouterr().out
    for spec in option_specs():
        assert f"{spec.name}: " in out
    assert 'schedule: one of step, cosine, onecycle, constant, flat-cos (default "step"' in out


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", ["train.py", "recipes.py"])
def test_the_train_and_recipes_commands_import_no_torch_at_module_level(name):
    heavy = ("torch", "torchvision", "deepres.data", "deepres.models", "deepres.train.loop")
    imports = top_level_imports(CLI / name)
    assert not [m for m in imports if m.startswith(heavy)], imports


def test_the_config_module_needs_no_torch():
    code = "import sys, deepres.train.config as c; c.option_specs(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
