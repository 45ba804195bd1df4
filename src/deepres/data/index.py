"""The index of an image folder `root/<class>/<image>`: its classes (sorted folder names),
files, labels and the (path, size, mtime) entries that key its cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from deepres.data.cache import CACHE_VERSION, fingerprint
from deepres.data.dataset import subset_indices
from deepres.errors import DeepresError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


@dataclass
class FolderIndex:
    """The image files of one split folder, in class-then-name order."""

    root: Path
    classes: list[str]
    files: list[str]  # absolute paths (str: 50k Path objects cost a second)
    labels: list[int]
    entries: list[tuple[str, int, int]]  # (relative path, size, mtime_ns) per file

    def __len__(self) -> int:
        return len(self.files)

    def key(self) -> str:
        """Cache key: hash of the sorted relative file list with sizes and mtimes."""
        return fingerprint(self.entries, tag=f"folder-v{CACHE_VERSION}")

    def select(self, indices: Sequence[int]) -> FolderIndex:
        return FolderIndex(
            self.root,
            self.classes,
            [self.files[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.entries[i] for i in indices],
        )

    def subset(self, k: int, seed: int | None = None) -> FolderIndex:
        """`k` files per class: the first k (seed None) or a seeded random k."""
        return self.select(subset_indices(torch.tensor(self.labels), k, seed).tolist())


def scan_folder(split_dir: str | Path) -> FolderIndex:
    """List `split_dir/<class>/<image>` files (extensions case-insensitive, hidden skipped)."""
    root = Path(split_dir)
    if not root.is_dir():
        raise DeepresError(
            f"{root}: image folder not found; expected {root}/<class>/<image files> - check "
            f"the path, --data-root or DEEPRES_DATA"
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != ".")
    if not classes:
        raise DeepresError(f"{root}: holds no class folders; expected {root}/<class>/<image files>")
    files, labels, entries = [], [], []
    for label, cls in enumerate(classes):
        found = sorted(
            (
                e
                for e in os.scandir(root / cls)
                if e.is_file()
                and e.name[0] != "."
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            ),
            key=lambda e: e.name,
        )
        if not found:
            raise DeepresError(
                f"{root / cls}: class folder holds no image files "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        for e in found:
            st = e.stat()
            files.append(e.path)
            labels.append(label)
            entries.append((f"{cls}/{e.name}", st.st_size, st.st_mtime_ns))
    return FolderIndex(root, classes, files, labels, entries)


def max_image_side(index: FolderIndex) -> int:
    """Largest side among the first image of each class (reads headers only)."""
    firsts: dict[int, str] = {}
    for path, label in zip(index.files, index.labels, strict=True):
        firsts.setdefault(label, path)
    sides = []
    for path in firsts.values():
        try:
            with Image.open(path) as im:
                sides.append(max(im.size))
        except (OSError, ValueError, SyntaxError) as e:
            raise DeepresError(f"{path}: not a readable image ({e}); replace or delete it") from e
    return max(sides)
