"""Recipes as files: JSON/YAML recipes, a run's config.json as a recipe, ``deepres recipes``."""

import json

import pytest
import torch

from deepres import DeepresError
from deepres.cli import main
from deepres.train import TrainConfig, list_recipes, load_recipe, resolve_config, train


def test_a_json_recipe_file_sets_options_and_the_command_line_wins(tmp_path):
    recipe = tmp_path / "mine.json"
    recipe.write_text(json.dumps({"lr": 0.3, "batch_size": 64, "schedule": "cosine"}))
    cfg = resolve_config(str(recipe), batch_size=32)
    assert (cfg.lr, cfg.batch_size, cfg.schedule) == (0.3, 32, "cosine")
    assert cfg.recipe == str(recipe)


def test_a_yaml_recipe_file_is_read_as_plain_data(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("lr: 0.25\nmilestones: [0.3, 0.6]\nmixup: 0.2\nema: 0.999\n")
    cfg = resolve_config(str(recipe))
    assert cfg.lr == 0.25 and cfg.milestones == [0.3, 0.6]
    assert cfg.mixup == 0.2 and cfg.ema == 0.999


def test_a_runs_config_json_is_a_recipe_that_reproduces_its_configuration(tmp_path):
    options = dict(data="synthetic:3x16x16:4:64", iters=2, batch_size=16, progress="off")
    train(resolve_config("fast-cpu", out=str(tmp_path / "a"), amp="off", **options))
    saved = tmp_path / "a" / "config.json"
    again = resolve_config(str(saved), out=str(tmp_path / "b"))
    expected = {**json.loads(saved.read_text()), "out": str(tmp_path / "b"), "recipe": str(saved)}
    assert vars(again) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"lr": 0.1, "learning_rate": 2}', "unknown option(s) learning_rate"),
        ("[1, 2]", "must hold a mapping"),
        ('{"lr": ', "not valid JSON/YAML"),
        ('{"batchsize": 64}', "unknown option(s) batchsize (did you mean batch_size?)"),
        ('{"amp": "fp8"}', "amp must be one of auto, off, bf16, fp16; got 'fp8'"),
        ('{"progress": "dots"}', "progress must be one of auto, bar, lines, off; got 'dots'"),
        ('{"batch_size": "64"}', "batch_size must be an integer, got '64'"),
        ('{"epochs": 2.5}', "epochs must be an integer or null, got 2.5"),
        ('{"milestones": 0.5}', "milestones must be a list of numbers, got 0.5"),
        ('{"milestones": [0.5, "x"]}', "milestones must be a list of numbers"),
        ('{"nesterov": 1}', "nesterov must be true or false, got 1"),
        ('{"lr": null}', "lr must be a number, got None"),
    ],
)
def test_a_bad_recipe_file_is_a_clear_error_naming_the_file(tmp_path, text, message):
    recipe = tmp_path / "bad.json"
    recipe.write_text(text)
    with pytest.raises(DeepresError, match="bad.json") as err:
        resolve_config(str(recipe))
    assert message in str(err.value)


def test_a_yaml_exponent_without_a_dot_is_refused_with_the_fix(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("weight_decay: 1e-4\n")  # YAML 1.1 reads this as the text "1e-4"
    with pytest.raises(DeepresError, match="write 1.0e-4"):
        resolve_config(str(recipe))
    recipe.write_text("weight_decay: 1.0e-4\nwarmup: 1\n")  # an integer is a number
    assert resolve_config(str(recipe)).weight_decay == 1e-4


def test_every_built_in_recipe_passes_the_field_checks():
    from deepres.train.config import check_recipe

    for name in list_recipes():
        check_recipe(load_recipe(name), name)


def test_an_unknown_recipe_name_lists_the_built_ins(tmp_path):
    with pytest.raises(DeepresError, match="fast-cpu"):
        load_recipe("fastest")
    with pytest.raises(DeepresError, match="cannot read"):
        load_recipe(str(tmp_path / "missing.yaml"))


def test_deepres_recipes_lists_every_built_in_with_its_description(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in list_recipes():
        assert name in out
        first_words = " ".join(load_recipe(name)["description"].split()[:4])
        assert first_words in " ".join(out.split())


def test_deepres_recipes_name_prints_a_file_that_works_as_a_recipe(capsys, tmp_path):
    assert main(["recipes", "fast-cpu"]) == 0
    recipe = tmp_path / "copy.json"
    recipe.write_text(capsys.readouterr().out)
    from_file = vars(resolve_config(str(recipe)))
    built_in = vars(resolve_config("fast-cpu"))
    assert {**from_file, "recipe": None} == {**built_in, "recipe": None}
    assert set(from_file) == {f for f in TrainConfig.__dataclass_fields__}


def test_crop_padding_sets_the_shift_of_the_in_memory_random_crop():
    from deepres.data.augment import random_crop_flip
    from deepres.train.batches import build_data

    options = dict(data="synthetic:1x8x8:2:64", batch_size=64, augment="crop-flip")
    loader = build_data(resolve_config(crop_padding=2, **options)).train.loader
    assert loader.padding == 2
    # a 2-pixel padding never shifts an image by 3: every crop keeps the 4x4 centre
    images = torch.arange(1, 65, dtype=torch.uint8).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    crops = random_crop_flip(images, 2, torch.Generator().manual_seed(0), flip=False)
    assert (crops[:, :, 2:6, 2:6] > 0).all()
    assert build_data(resolve_config(**options)).train.loader.padding == 4


def write_idx(folder, count=8):
    """Fashion-MNIST's file layout (unsigned-byte IDX) with random 28x28 images."""
    import gzip
    import struct

    folder.mkdir(parents=True)
    images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8)
    labels = torch.arange(count, dtype=torch.uint8) % 10
    for prefix in ("train", "t10k"):
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = struct.pack(">BBBB", 0, 0, 8, array.dim())
            header += struct.pack(f">{array.dim()}I", *array.shape)
            name = folder / f"{prefix}-{kind}-ubyte.gz"
            name.write_bytes(gzip.compress(header + array.numpy().tobytes()))


def test_augment_auto_is_flips_for_fashion_mnist_and_crops_for_other_small_images(tmp_path):
    from deepres.train.batches import build_data, data_augment

    write_idx(tmp_path / "fashion-mnist")
    idx = resolve_config(data="fashion-mnist", data_root=str(tmp_path), augment="auto")
    assert data_augment(idx) == "flip"
    loader = build_data(resolve_config(**{**vars(idx), "batch_size": 4})).train.loader
    assert loader.augment and loader.padding == 0
    other = resolve_config(data="synthetic:3x8x8:2:16", augment="auto", batch_size=4)
    assert data_augment(other) == "crop-flip"
    assert build_data(other).train.loader.padding == other.crop_padding
