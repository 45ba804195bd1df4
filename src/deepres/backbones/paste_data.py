"""A small detection and segmentation data set made of real photographs: CIFAR-10 objects
pasted at random positions, sizes and counts onto Imagenette backgrounds.

The objects never overlap, so every box and mask is exact: a mask is the pasted shape (a
rectangle or an ellipse) and a box is the tight box of its mask. Generation is deterministic
(image ``i`` of a split depends only on the seed, the split and ``i``) and reads the data of
``../shared/data`` (see ``deepres.data``): the training images paste CIFAR-10 ``train``
objects onto Imagenette ``train`` backgrounds, the validation images ``test`` objects onto
``val`` backgrounds, so no photograph is in both.

    from deepres.backbones.paste_data import PasteSpec, generate, PasteDataset
    root = generate("runs/paste", PasteSpec(classes=("automobile", "frog")))
    image, target = PasteDataset(root, "train")[0]   # target: boxes, labels, masks

On disk: ``meta.json``, ``<split>/annotations.json`` and ``<split>/NNNNN.png`` images with
``<split>/NNNNN_mask.png`` instance maps (0 background, k the k-th object of the image).
"""

from __future__ import annotations

import functools
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepres.data import resolve, scan_folder
from deepres.errors import DeepresError

VERSION = 1
SPLITS = {"train": ("train", "train"), "val": ("test", "val")}  # split: (CIFAR, Imagenette)
SHAPES = ("rect", "ellipse", "mixed")


@dataclass(frozen=True)
class PasteSpec:
    """What to generate. Sizes are fractions of the image side (objects are 32x32 CIFAR
    images resized, so large ones are blurry: that is fine for a detector)."""

    classes: tuple[str, ...] = ("automobile", "frog", "ship")
    image_size: int = 128
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 1000, "val": 200})
    objects: tuple[int, int] = (1, 3)  # fewest and most objects per image
    scale: tuple[float, float] = (0.25, 0.5)  # object side / image side
    aspect: tuple[float, float] = (0.75, 1.33)  # width / height
    shape: str = "ellipse"  # "rect", "ellipse" or "mixed" (either, at random)
    seed: int = 0

    def check(self) -> None:
        if self.shape not in SHAPES:
            raise DeepresError(f"unknown shape {self.shape!r}: choose one of {SHAPES}")
        if not self.classes or not 1 <= self.objects[0] <= self.objects[1]:
            raise DeepresError(f"need classes and 1 <= objects[0] <= objects[1], got {self}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or self.image_size < 16:
            raise DeepresError(f"need 0 < scale <= 1 and image_size >= 16, got {self}")
        unknown = set(self.sizes) - set(SPLITS)
        if unknown:
            raise DeepresError(f"unknown splits {sorted(unknown)}: choose from {list(SPLITS)}")

    def as_json(self) -> dict:
        """The spec as ``meta.json`` holds it (lists for tuples)."""
        return json.loads(json.dumps({"version": VERSION, **asdict(self)}))


@functools.lru_cache(maxsize=8)
def scan(root: Path, split: str):
    """The image-folder index of ``root/split`` (kept: 60,000 CIFAR files take a while)."""
    return scan_folder(root / split)


def source_files(data_root: str | Path | None, spec: PasteSpec, split: str) -> tuple[list, list]:
    """(CIFAR-10 files of each class, Imagenette background files) for ``split``."""
    cifar_split, imagenette_split = SPLITS[split]
    cifar = scan(resolve("cifar10-jpeg", data_root).path, cifar_split)
    missing = [c for c in spec.classes if c not in cifar.classes]
    if missing:
        raise DeepresError(f"unknown CIFAR-10 classes {missing}: choose from {cifar.classes}")
    objects = [
        [f for f, label in zip(cifar.files, cifar.labels, strict=True) if label == index]
        for index in (cifar.classes.index(c) for c in spec.classes)
    ]
    backgrounds = scan(resolve("imagenette-224", data_root).path, imagenette_split).files
    return objects, backgrounds


def shape_mask(width: int, height: int, ellipse: bool) -> np.ndarray:
    """The pixels of a ``height x width`` rectangle, or of the ellipse inscribed in it (the
    pixel centres inside it)."""
    if not ellipse:
        return np.ones((height, width), bool)
    y = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    x = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    return y[:, None] ** 2 + x[None, :] ** 2 <= 1.0


def place(rng: np.random.Generator, size: int, w: int, h: int, taken: list) -> tuple | None:
    """A position for a ``w x h`` object clear (by 2 pixels) of the ``taken`` rectangles."""
    for _ in range(30):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if all(
            x + w + 2 <= a or a2 + 2 <= x or y + h + 2 <= b or b2 + 2 <= y for a, b, a2, b2 in taken
        ):
            return x, y
    return None


def make_image(
    spec: PasteSpec, rng: np.random.Generator, objects: list, backgrounds: list
) -> tuple[np.ndarray, np.ndarray, list, list]:
    """One image: (H x W x 3 uint8 pixels, H x W instance map, boxes, 1-based labels)."""
    size = spec.image_size
    path = backgrounds[int(rng.integers(len(backgrounds)))]
    with Image.open(path) as background:
        canvas = np.array(background.convert("RGB").resize((size, size), Image.BILINEAR))
    instances = np.zeros((size, size), np.uint8)
    taken, boxes, labels = [], [], []
    for _ in range(int(rng.integers(spec.objects[0], spec.objects[1] + 1))):
        label = int(rng.integers(len(spec.classes)))
        files = objects[label]
        source = files[int(rng.integers(len(files)))]
        side = rng.uniform(*spec.scale) * size
        aspect = np.sqrt(rng.uniform(*spec.aspect))
        w, h = (min(size, max(4, round(side * f))) for f in (aspect, 1 / aspect))
        ellipse = spec.shape == "ellipse" or (spec.shape == "mixed" and rng.random() < 0.5)
        spot = place(rng, size, w, h, taken)
        if spot is None:
            continue
        x, y = spot
        taken.append((x, y, x + w, y + h))
        with Image.open(source) as image:
            pixels = np.array(image.convert("RGB").resize((w, h), Image.BILINEAR))
        inside = shape_mask(w, h, ellipse)
        canvas[y : y + h, x : x + w][inside] = pixels[inside]
        instances[y : y + h, x : x + w][inside] = len(boxes) + 1
        rows, cols = np.nonzero(inside)
        boxes.append(
            [
                x + int(cols.min()),
                y + int(rows.min()),
                x + int(cols.max()) + 1,
                y + int(rows.max()) + 1,
            ]
        )
        labels.append(label + 1)
    return canvas, instances, boxes, labels


def generate_split(out: Path, spec: PasteSpec, split: str, data_root: str | Path | None) -> None:
    objects, backgrounds = source_files(data_root, spec, split)
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for index in range(spec.sizes[split]):
        rng = np.random.default_rng([spec.seed, list(SPLITS).index(split), index])
        pixels, instances, boxes, labels = make_image(spec, rng, objects, backgrounds)
        name = f"{index:05d}"
        Image.fromarray(pixels).save(folder / f"{name}.png")
        Image.fromarray(instances).save(folder / f"{name}_mask.png")
        annotations.append({"id": index, "image": f"{name}.png", "boxes": boxes, "labels": labels})
    (folder / "annotations.json").write_text(json.dumps(annotations))


def generate(
    out: str | Path, spec: PasteSpec | None = None, data_root: str | Path | None = None
) -> Path:
    """Write the data set of ``spec`` under ``out`` (kept if already there, made with the
    same spec) and return ``out``. ``data_root`` holds ``cifar10-jpeg`` and
    ``imagenette-224`` (default: $DEEPRES_DATA or ../shared/data)."""
    spec = spec or PasteSpec()
    spec.check()
    out = Path(out)
    meta = out / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()) == spec.as_json():
        return out
    if meta.is_file():
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        meta.unlink()
    for split in spec.sizes:
        generate_split(out, spec, split, data_root)
    meta.write_text(json.dumps(spec.as_json(), indent=1))  # last: marks the set complete
    return out


class PasteDataset(torch.utils.data.Dataset):
    """One split of a generated set, in memory: ``(image, target)`` with a float image in
    [0, 1] (3 x H x W) and torchvision's detection target: ``boxes`` (N x 4, x0 y0 x1 y1),
    ``labels`` (1-based, 0 is the background), ``masks`` (N x H x W uint8), ``image_id``."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        meta = root / "meta.json"
        if not meta.is_file():
            raise DeepresError(f"{root}: no generated data set here; run generate({str(root)!r})")
        self.classes = tuple(json.loads(meta.read_text())["classes"])
        folder = root / split
        if not (folder / "annotations.json").is_file():
            raise DeepresError(f"{root}: no split {split!r} (generated: see meta.json)")
        self.annotations = json.loads((folder / "annotations.json").read_text())
        self.images, self.instances = [], []
        for entry in self.annotations:
            with Image.open(folder / entry["image"]) as image:
                self.images.append(torch.from_numpy(np.array(image.convert("RGB"))))
            with Image.open(folder / entry["image"].replace(".png", "_mask.png")) as mask:
                self.instances.append(torch.from_numpy(np.array(mask)))

    def __len__(self) -> int:
        return len(self.annotations)

    def target(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.annotations[index]
        count = len(entry["labels"])
        ids = torch.arange(1, count + 1, dtype=torch.uint8)
        return {
            "boxes": torch.tensor(entry["boxes"], dtype=torch.float32).reshape(count, 4),
            "labels": torch.tensor(entry["labels"], dtype=torch.int64),
            "masks": (self.instances[index][None] == ids[:, None, None]).to(torch.uint8),
            "image_id": torch.tensor(entry["id"]),
        }

    def semantic(self, index: int) -> torch.Tensor:
        """The H x W class map: 0 background, else the object's label."""
        lookup = torch.tensor([0, *self.annotations[index]["labels"]], dtype=torch.int64)
        return lookup[self.instances[index].long()]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = self.images[index].permute(2, 0, 1).float().div(255)
        return image, self.target(index)
