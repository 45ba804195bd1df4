"""Image-folder trees `root/<split>/<class>/*.jpg`: class order = sorted folder names.

Two modes:

* small images (CIFAR-sized): `load_folder_tensors` decodes every file once into an in-memory
  uint8 `TensorData` and caches it as a safetensors file, keyed by the file list, sizes and
  mtimes; augmentation then runs on whole batches (`deepres.data.augment`, paper §4.2).
* large images (ImageNet-sized): `ImageFolderDataset`, a torch Dataset that decodes and
  transforms one image per item (paper §3.4 scale augmentation, 10-crop testing).
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from deepres.data.augment import policy_transform
from deepres.data.cache import cache_dir as default_cache_dir
from deepres.data.cache import fingerprint
from deepres.data.dataset import ChannelStatsAccumulator, Stats, TensorData, subset_indices
from deepres.errors import DeepresError

log = logging.getLogger("deepres.data")

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SMALL_IMAGE_MAX = 64  # images up to this many pixels per side go to the in-memory mode
CACHE_VERSION = "1"
_CHUNK = 256
_MAX_LISTED = 10


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


# --------------------------------------------------------------------------- decoding


def _read(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DeepresError(f"{path}: cannot read image file ({e}); fix or remove it") from e


MAX_PIXELS = 64 * 1024 * 1024  # 64 megapixels: refuses decompression bombs before decoding


def _check_pixels(data: bytes, path: str | Path) -> None:
    """Read only the header and refuse images too large to decode safely."""
    limit = f"the {MAX_PIXELS // 2**20} megapixel limit"
    hint = "(a decompression bomb, or an image to downscale before use)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except Image.DecompressionBombError as e:  # PIL's own limit, above ours
        raise DeepresError(f"{path}: over {limit}: {e} {hint}") from None
    except (OSError, ValueError, SyntaxError):
        return  # not something PIL can size: the decoders below give the error
    if width * height > MAX_PIXELS:
        raise DeepresError(f"{path}: {width}x{height} pixels is over {limit} {hint}")


def decode_rgb(data: bytes, path: str | Path) -> torch.Tensor:
    """Decode image bytes to a uint8 3 x H x W RGB tensor (grayscale/RGBA/palette converted).

    JPEGs go to torchvision's (faster) decoder first, everything else and what it cannot
    read to PIL; neither -> DeepresError. Only JPEGs: torchvision 0.29's PNG decoder crashes
    the process (SIGSEGV) on a PNG whose IDAT chunk is empty, an 80-byte upload.
    """
    if not data:
        raise DeepresError(f"{path}: empty file (0 bytes), not an image; replace or delete it")
    _check_pixels(data, path)
    if data[:2] == b"\xff\xd8":
        try:
            img = decode_jpeg(
                torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
            )
            if img.dtype == torch.uint8 and img.shape[0] == 3:
                return img
        except (RuntimeError, ValueError):
            pass
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DeepresError(
            f"{path}: not a readable image ({type(e).__name__}: {e}); replace or delete the file"
        ) from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _decode_many(paths: list[str]) -> list[torch.Tensor | DeepresError]:
    """Decode a chunk of files; JPEGs in one batched call when they are all valid."""
    datas: list[bytes | DeepresError] = []
    for p in paths:
        try:
            datas.append(_read(p))
        except DeepresError as e:
            datas.append(e)
    out: list[torch.Tensor | DeepresError | None] = [None] * len(paths)
    jpeg = [(i, d) for i, d in enumerate(datas) if isinstance(d, bytes) and d[:2] == b"\xff\xd8"]
    if jpeg:
        try:
            tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in jpeg]
            for (i, _), img in zip(jpeg, decode_jpeg(tensors, ImageReadMode.RGB), strict=True):
                out[i] = img
        except (RuntimeError, ValueError):
            pass  # a bad file among them: decode one by one below to name it
    for i, d in enumerate(datas):
        if out[i] is not None:
            continue
        if isinstance(d, DeepresError):
            out[i] = d
            continue
        try:
            out[i] = decode_rgb(d, paths[i])
        except DeepresError as e:
            out[i] = e
    return out  # type: ignore[return-value]


def _bad_files_error(root: Path, bad: list[tuple[str, str]]) -> DeepresError:
    listed = "; ".join(f"{p} ({why})" for p, why in bad[:_MAX_LISTED])
    more = f"; and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return DeepresError(
        f"{root}: {len(bad)} file(s) could not be used: {listed}{more}. Replace or delete them."
    )


def _chunks(n: int) -> list[range]:
    return [range(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]


def _default_threads() -> int:
    # Reads of cold files wait on I/O, so a few threads help; decode holds the GIL partly.
    return min(4, os.cpu_count() or 1)


def decode_folder(index: FolderIndex, num_threads: int | None = None) -> TensorData:
    """Decode every file of `index` into one uint8 N x 3 x H x W tensor (all one size)."""
    n = len(index)
    first = decode_rgb(_read(index.files[0]), index.files[0])
    shape = tuple(first.shape)
    images = torch.empty((n, *shape), dtype=torch.uint8)
    bad: list[tuple[str, str]] = []

    def work(rows: range) -> list[tuple[str, str]]:
        problems = []
        results = _decode_many([index.files[i] for i in rows])
        for i, img in zip(rows, results, strict=True):
            if isinstance(img, DeepresError):
                problems.append((index.files[i], str(img).split(": ", 1)[-1]))
            elif tuple(img.shape) != shape:
                problems.append(
                    (
                        index.files[i],
                        f"size {img.shape[2]}x{img.shape[1]}, but "
                        f"{os.path.basename(index.files[0])} is {shape[2]}x{shape[1]}; "
                        f"all images must share one size in the in-memory mode",
                    )
                )
            else:
                images[i] = img
        return problems

    with ThreadPoolExecutor(num_threads or _default_threads()) as pool:
        for problems in pool.map(work, _chunks(n)):
            bad.extend(problems)
    if bad:
        raise _bad_files_error(index.root, bad)
    return TensorData(images, torch.tensor(index.labels, dtype=torch.int64), list(index.classes))


# --------------------------------------------------------------------------- in-memory mode


def _cache_path(index: FolderIndex, cache: Path) -> Path:
    return cache / f"folder-{index.key()}.safetensors"


def _load_cached(path: Path, key: str) -> TensorData | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        return TensorData(images, labels, json.loads(meta["classes"]))
    except Exception as e:  # noqa: BLE001 - any damage to the cache means: rebuild it
        log.warning("ignoring unreadable cache file %s (%s); rebuilding it", path, e)
        return None


def _save_cached(path: Path, key: str, data: TensorData, source: Path) -> None:
    from safetensors.torch import save_file

    meta = {
        "key": key,
        "classes": json.dumps(data.classes),
        "source": str(source),
        "version": CACHE_VERSION,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"images": data.images.contiguous(), "labels": data.labels}, str(tmp), meta)
        os.replace(tmp, path)
    except OSError as e:
        log.warning(
            "could not write cache file %s (%s); set DEEPRES_CACHE to a writable "
            "folder to speed up the next load",
            path,
            e,
        )
        tmp.unlink(missing_ok=True)


def load_folder_tensors(
    split_dir: str | Path,
    *,
    subset: int | None = None,
    subset_seed: int | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = None,
    index: FolderIndex | None = None,
) -> TensorData:
    """Decode a folder of small images once into a uint8 `TensorData`, cached on disk.

    The cache file (`<cache_dir>/folder-<key>.safetensors`, cache dir from $DEEPRES_CACHE or
    ~/.cache/deepres) is keyed by the sorted relative file list with sizes and mtimes, so any
    change to the files rebuilds it. `subset` = k files per class (decoded, not cached).
    """
    index = index or scan_folder(split_dir)
    if subset is not None:
        return decode_folder(index.subset(subset, subset_seed), num_threads)
    key = index.key()
    path = _cache_path(index, default_cache_dir(cache_dir))
    if use_cache and path.is_file():
        data = _load_cached(path, key)
        if data is not None:
            log.info("loaded %s from cache %s", index.root, path)
            return data
    data = decode_folder(index, num_threads)
    if use_cache:
        _save_cached(path, key, data, index.root)
        log.info("decoded %s (%d images) and cached it at %s", index.root, len(data), path)
    return data


def folder_cache_file(
    split_dir: str | Path, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where `load_folder_tensors` caches `split_dir` (whether or not it exists yet)."""
    return _cache_path(scan_folder(split_dir), default_cache_dir(cache_dir))


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


# --------------------------------------------------------------------------- Dataset mode

TRAIN_CROPS = ("random-resized", "scale-256-480")


def build_transform(
    train: bool,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    ten_crop: bool = False,
    train_crop: str = "random-resized",
    policy: str | None = None,
    random_erasing: float = 0.0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision v2 pipeline on a uint8 3 x H x W tensor -> normalised float tensor.

    train: RandomResizedCrop(size) + RandomHorizontalFlip (paper §3.4's scale augmentation;
    train_crop='scale-256-480' gives the paper's exact shorter side in [256, 480] + random
    crop, scaled by size/224), then the `policy` ('randaugment' / 'trivial') on the uint8
    crop and RandomErasing(p=random_erasing) on the normalised one. eval: Resize(size/0.875)
    + CenterCrop(size), or with `ten_crop` TenCrop(size) -> 10 x 3 x size x size (the
    paper's 10-crop testing).
    """
    finish = v2.Compose(
        [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )
    if train:
        if train_crop == "random-resized":
            crop = v2.RandomResizedCrop(size, antialias=True)
        elif train_crop == "scale-256-480":
            sides = list(range(round(256 * size / 224), round(480 * size / 224) + 1))
            crop = v2.Compose([v2.RandomShortestSize(sides, antialias=True), v2.RandomCrop(size)])
        else:
            raise DeepresError(f"unknown train_crop {train_crop!r}; use one of {TRAIN_CROPS}")
        steps = [crop, v2.RandomHorizontalFlip()]
        steps += [policy_transform(policy)] if policy is not None else []
        steps += [finish]
        steps += [v2.RandomErasing(p=random_erasing)] if random_erasing > 0 else []
        return v2.Compose(steps)
    resize = v2.Resize(int(size / 0.875), antialias=True)
    if not ten_crop:
        return v2.Compose([resize, v2.CenterCrop(size), finish])
    return _TenCrop(resize, v2.TenCrop(size), finish)


class _TenCrop:
    """Resize, TenCrop, stack to 10 x C x H x W, then finish (a class: picklable for workers)."""

    def __init__(self, resize: v2.Transform, crops: v2.Transform, finish: v2.Transform) -> None:
        self.resize, self.crops, self.finish = resize, crops, finish

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return self.finish(torch.stack(self.crops(self.resize(img))))


class ImageFolderDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Per-image Dataset over `split_dir/<class>/*`: returns (transformed tensor, label).

    Decoding errors raise DeepresError naming the file.
    """

    def __init__(
        self,
        split_dir: str | Path,
        *,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        size: int = 224,
        ten_crop: bool = False,
        train_crop: str = "random-resized",
        index: FolderIndex | None = None,
        policy: str | None = None,
        random_erasing: float = 0.0,
    ) -> None:
        self.index = index or scan_folder(split_dir)
        self.root = self.index.root
        self.classes = list(self.index.classes)
        self.targets = list(self.index.labels)
        self.train, self.size, self.ten_crop = train, size, ten_crop
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_crop = train_crop
        self.transform = build_transform(train, size, mean, std, ten_crop, train_crop)
        if policy is not None or random_erasing > 0:
            self.set_augmentation(policy, random_erasing)

    def set_augmentation(self, policy: str | None = None, random_erasing: float = 0.0) -> None:
        """Training images: add the `policy` ('randaugment' / 'trivial') after the crop and
        flip, and RandomErasing(p=random_erasing) after the normalisation."""
        if not self.train:
            raise DeepresError(
                f"{self.root}: augmentation policies and random erasing are for training "
                "images only; this data set makes test images"
            )
        if not 0 <= random_erasing <= 1:
            raise DeepresError(f"random_erasing is a probability in [0, 1], got {random_erasing}")
        self.transform = build_transform(
            True,
            self.size,
            self.mean,
            self.std,
            train_crop=self.train_crop,
            policy=policy,
            random_erasing=random_erasing,
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def samples(self) -> list[tuple[str, int]]:
        return list(zip(self.index.files, self.index.labels, strict=True))

    def load(self, i: int) -> torch.Tensor:
        """The decoded, untransformed uint8 image i."""
        path = self.index.files[i]
        return decode_rgb(_read(path), path)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), self.index.labels[i]


def folder_stats(index: FolderIndex, num_threads: int | None = None) -> Stats:
    """Per-channel (mean, std) over every image of `index` at its native size (0..1 scale)."""

    def work(rows: range) -> tuple[ChannelStatsAccumulator, list[tuple[str, str]]]:
        acc, bad = ChannelStatsAccumulator(), []
        for i, img in zip(rows, _decode_many([index.files[i] for i in rows]), strict=True):
            if isinstance(img, DeepresError):
                bad.append((index.files[i], str(img).split(": ", 1)[-1]))
            else:
                acc.add(img)
        return acc, bad

    total, bad = ChannelStatsAccumulator(), []
    with ThreadPoolExecutor(num_threads or _default_threads()) as pool:
        for acc, problems in pool.map(work, _chunks(len(index))):
            total.merge(acc)
            bad.extend(problems)
    if bad:
        raise _bad_files_error(index.root, bad)
    return total.result()
