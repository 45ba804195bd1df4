"""The registry is a leaf: names and name patterns are registered by the family modules, and
``create_model`` (in ``deepres.models.factory``) finds them all."""

import ast
import re
import sys
from pathlib import Path

import pytest

import deepres
from deepres import DeepresError
from deepres.models import cifar_resnet, create_model, list_models, options, registry
from deepres.models.factory import get_builder

REGISTRY = Path(registry.__file__)

LISTED = [
    *("plain18", "plain20", "plain32", "plain34", "plain44", "plain56", "plain110"),
    *("preact_resnet18", "preact_resnet20", "preact_resnet34", "preact_resnet50"),
    *("preact_resnet56", "preact_resnet101", "preact_resnet110", "preact_resnet152"),
    *("preact_resnet164", "preact_resnet200", "preact_resnet1001"),
    *("resnet18", "resnet20", "resnet32", "resnet34", "resnet44", "resnet50", "resnet50d"),
    *("resnet56", "resnet101", "resnet101d", "resnet110", "resnet152", "resnet1202"),
    *("resnext29_8x64d", "resnext29_16x64d", "resnext50_32x4d", "resnext101_32x8d"),
    *("resnext101_64x4d", "seresnet50", "seresnext50_32x4d", "wide_resnet50_2"),
    *("wide_resnet101_2", "wrn16_8", "wrn28_10", "wrn40_4"),
]


@pytest.fixture
def patterns(monkeypatch):
    """Patterns registered in a test are gone after it."""
    monkeypatch.setattr(registry, "_PATTERNS", list(registry._PATTERNS))


def test_a_pattern_registered_from_outside_is_found(patterns):
    def tiny(match: re.Match[str]):
        classes = int(match[1])
        if not classes:
            return None
        return lambda **kwargs: cifar_resnet(8, num_classes=classes, **kwargs)

    registry.register_pattern(re.compile(r"tiny(\d+)"), tiny)
    model = create_model("tiny7", shortcut="B")
    assert model.fc.out_features == 7 and model.shortcut == "B" and len(model.blocks) == 3
    assert get_builder("tiny3")().fc.out_features == 3
    assert "tiny7" not in list_models()
    with pytest.raises(DeepresError, match="unknown model 'tiny0'"):  # the factory said None
        create_model("tiny0")
    with pytest.raises(DeepresError, match="unknown model 'tiny7x'"):  # a full match only
        create_model("tiny7x")


def test_exact_names_come_before_patterns(patterns):
    registry.register_pattern(r"resnet(\d+)", lambda match: pytest.fail("pattern asked"))
    assert get_builder("resnet56") is deepres.models.resnet56


def test_list_models_is_unchanged():
    assert list_models() == LISTED
    assert list_models("plain*") == LISTED[:7]
    assert list_models("nothing*") == []


def test_create_model_is_the_same_everywhere():
    assert deepres.create_model is create_model is deepres.models.factory.create_model
    assert deepres.list_models is list_models is registry.list_models
    assert deepres.models.register_model is registry.register_model


def test_bad_on_demand_depths_give_the_rule():
    with pytest.raises(DeepresError, match=r"6n\+2 below 164 .* 9n\+2 from 164 .* got 170"):
        get_builder("preact_resnet170")
    with pytest.raises(DeepresError, match=r"d = 6n\+4 .* got d=20, k=2"):
        create_model("wrn20_2")
    with pytest.raises(DeepresError, match="unknown model 'resnet9'. Did you mean: resnet56"):
        create_model("resnet9")  # not 6n+2: not a CIFAR depth, so an unknown name


def imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Modules imported anywhere in ``tree``, and those imported only for type checking."""
    every: set[str] = set()
    typing_only: set[str] = set()
    for node in ast.walk(tree):
        names = set()
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in registry.py"
            names = {node.module}
        elif isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            typing_only |= imports(ast.Module(body=node.body, type_ignores=[]))[0]
        every |= names
    return every, typing_only


def test_the_registry_imports_no_model_module():
    every, typing_only = imports(ast.parse(REGISTRY.read_text()))
    assert "deepres.errors" in every
    assert [m for m in every if m.startswith("deepres.models")] == []
    runtime = every - typing_only
    allowed = set(sys.stdlib_module_names) | {"__future__", "deepres"}
    assert {m for m in runtime if m.split(".")[0] not in allowed} == set()
    assert {m for m in runtime if m.startswith("deepres")} == {"deepres.errors"}


def test_one_tuple_of_shortcut_kinds():
    assert options.SHORTCUTS == ("A", "B", "C", "none")
    with pytest.raises(DeepresError, match=", ".join(repr(s) for s in options.SHORTCUTS)):
        create_model("resnet20", shortcut="D")
