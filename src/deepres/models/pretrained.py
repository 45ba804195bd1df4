"""Pretrained weights by name: ``resolve_pretrained(spec, model_name)`` -> a local file and
the metadata that belongs to it (class names, mean/std, input size, published accuracy).

A ``spec`` is one of:

- a path: a weight file (``deepres.models.weights`` reads torchvision, timm, CIFAR-repo and
  DDP layouts), a deepres folder (``config.json`` + ``model.safetensors``, below) or a run
  folder (its final weights, ``model.safetensors``, whose header is the metadata; an old
  run's test-chosen ``best.safetensors`` is read by file name only);
- ``https://...`` (or ``http://``), optionally ``#sha256=HEX``; a file name in torchvision's
  form ``name-<hex prefix of its sha256>.pth`` is checked against that prefix;
- ``"torchvision"`` (the enum's ``DEFAULT``) or ``"torchvision:IMAGENET1K_V2"``: torchvision's
  own ``Weights`` enum for the model (URL, hash prefix, categories, transforms, metrics), for
  the names of ``torchvision_names()``;
- ``"timm:resnet50d.a1_in1k"``: the Hugging Face repo ``timm/resnet50d.a1_in1k``
  (``model.safetensors`` + ``config.json``), for the architectures of ``timm_model()``;
- ``"hf-hub:ORG/REPO"`` (``@REVISION`` optional): a Hub repo holding a deepres folder or a
  timm layout.

URLs are downloaded by ``deepres.runtime.download`` into ``$DEEPRES_CACHE/weights`` (default
``~/.cache/deepres/weights``), mirror ``$DEEPRES_WEIGHTS_MIRROR``. Hub names go through
``huggingface_hub`` and its cache (``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1`` reads only that
cache; ``HF_ENDPOINT`` is the Hub's own mirror setting); a file put by hand at
``<weights cache>/huggingface.co/ORG/REPO/resolve/REVISION/FILE`` is used first.

A deepres folder (``deepres.checkpoints.published.save_pretrained`` writes one) holds
``model.safetensors`` (plain tensors in deepres's keys) and ``config.json``::

    {"library_name": "deepres", "format_version": 1, "model": "resnet50",
     "model_args": {"num_classes": 37}, "classes": [...], "mean": [...], "std": [...],
     "input_size": 224}

The metadata uses a run folder's keys (``model``, ``model_args``, ``classes``, ``mean``,
``std``, ``input_size``), plus ``source`` and, where known, ``resize_size``,
``interpolation``, ``metrics``, ``url``. Nothing is unpickled: safetensors, or torch files
read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from deepres.errors import DeepresError, first_line
from deepres.runtime.download import cache_path, fetch, split_url

LIBRARY = "deepres"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# as deepres.checkpoints.run_files: what a run folder means, and an old run's test-chosen file
RUN_WEIGHTS_FILE = "model.safetensors"
OLD_BEST_FILE = "best.safetensors"
MAX_CONFIG_BYTES = 16 * 2**20
HUB_ENDPOINT = "https://huggingface.co"
_TIMM_SAME_LAYOUT = ("resnet50d", "resnet101d", "seresnet50", "seresnext50_32x4d")
_HUB_MISSING = ("RepositoryNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError")
_TIMM_V2 = re.compile(r"resnetv2_(18|34|50|101|152)(d?)")
log = logging.getLogger("deepres")


@dataclass(frozen=True)
class LocalWeights:
    """A weight file on this machine and its metadata (see the module docstring)."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def model_args(self) -> dict[str, Any]:
        """Options the weights need (``num_classes``, ``stem``, ...); empty when unknown."""
        return dict(self.meta.get("model_args", {}))

    def for_model(self, model_name: str, model_args: dict[str, Any]) -> dict[str, Any]:
        """The metadata of a model ``model_name`` built with ``model_args`` from these
        weights, in a run folder's keys; without ``classes`` when its class count is not
        the weights' (a new head for fine-tuning)."""
        meta = {**self.meta, "model": model_name, "model_args": dict(model_args)}
        classes = meta.get("classes")
        wanted = model_args.get("num_classes", self.model_args.get("num_classes"))
        if classes is not None and wanted is not None and len(classes) != wanted:
            del meta["classes"]
        return meta


def resolve_pretrained(spec: str | os.PathLike, model_name: str | None = None) -> LocalWeights:
    """The local file and metadata of ``spec`` (see the module docstring), downloading it if
    needed. ``model_name``: the deepres model the weights are for; required for
    ``"torchvision"``, and checked against what timm, hub and deepres weights name."""
    if isinstance(spec, os.PathLike):
        return _checked(local_weights(Path(spec)), model_name, str(spec))
    text = str(spec).strip()
    if text == "torchvision" or text.startswith("torchvision:"):
        if model_name is None:
            raise DeepresError(f"{text}: name the model (torchvision's weights are per model)")
        weights = torchvision_weights(model_name, text.partition(":")[2] or "DEFAULT")
    elif text.startswith("timm:"):
        weights = hub_weights(f"timm/{text[5:]}", timm_only=True)
    elif text.startswith("hf-hub:"):
        weights = hub_weights(text[7:])
    elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        url, expected = split_url(text)
        weights = LocalWeights(fetch(url, expected), {"source": text, "url": url})
    else:
        weights = local_weights(Path(text))
    return _checked(weights, model_name, text)


def _checked(weights: LocalWeights, model_name: str | None, spec: str) -> LocalWeights:
    named = weights.meta.get("model")
    if model_name is not None and named is not None and named != model_name:
        raise DeepresError(f"{spec} holds weights for {named}, not {model_name}: build {named}")
    return weights


# --- torchvision ---------------------------------------------------------------------------


@cache
def torchvision_names() -> tuple[str, ...]:
    """The deepres models whose weights torchvision publishes: the models of torchvision's
    ``resnet`` module (ResNet-18...152, ResNeXt, Wide ResNet), which deepres builds under the
    same names and state-dict keys. Derived from torchvision's registry, not copied."""
    import torchvision
    from torchvision.models import get_model_builder, list_models

    names = list_models(module=torchvision.models)
    return tuple(n for n in names if get_model_builder(n).__module__.endswith(".resnet"))


def torchvision_entry(model_name: str, tag: str = "DEFAULT") -> Any:
    """The member ``tag`` of torchvision's ``Weights`` enum of ``model_name``."""
    if model_name not in torchvision_names():
        raise DeepresError(
            f"torchvision publishes no weights for {model_name}; it does for "
            f"{', '.join(torchvision_names())}"
        )
    from torchvision.models import get_model_weights

    enum = get_model_weights(model_name)
    if tag not in enum.__members__:
        raise DeepresError(
            f"torchvision:{tag}: {model_name} has {', '.join(enum.__members__)} (DEFAULT is "
            f"{enum.DEFAULT.name})"
        )
    return enum[tag]


def torchvision_meta(model_name: str, tag: str = "DEFAULT") -> tuple[str, dict[str, Any]]:
    """(URL, metadata) of torchvision's weights ``tag`` for ``model_name``; no download."""
    entry = torchvision_entry(model_name, tag)
    transform = entry.transforms()
    categories = list(entry.meta["categories"])
    meta = {
        "source": f"torchvision:{entry.name}",
        "url": entry.url,
        "model": model_name,
        "model_args": {"num_classes": len(categories)},
        "classes": categories,
        "mean": list(transform.mean),
        "std": list(transform.std),
        "input_size": int(transform.crop_size[0]),
        "resize_size": int(transform.resize_size[0]),
        "interpolation": transform.interpolation.value,
        "metrics": entry.meta.get("_metrics", {}),
    }
    return entry.url, meta


def torchvision_weights(model_name: str, tag: str = "DEFAULT") -> LocalWeights:
    """torchvision's weights ``tag`` for ``model_name``, downloaded into the cache and checked
    against the sha256 prefix in the file name (torchvision's convention)."""
    url, meta = torchvision_meta(model_name, tag)
    expected = split_url(url)[1]
    if expected is None:
        raise DeepresError(f"{url}: torchvision's file name carries no hash; refusing it")
    return LocalWeights(fetch(url, expected), meta)


# --- timm and the Hugging Face Hub --------------------------------------------------------


def timm_model(architecture: str) -> tuple[str, dict[str, Any]]:
    """The deepres model (and options) that loads timm's ``architecture``: the torchvision
    names, ``resnet50d``, ``resnet101d``, ``seresnet50``, ``seresnext50_32x4d``, and
    ``resnetv2_{18,34,50,101,152}[d]`` -> ``preact_resnet*`` (``d``: deep stem, avg-down)."""
    if architecture in _TIMM_SAME_LAYOUT or architecture in torchvision_names():
        return architecture, {}
    match = _TIMM_V2.fullmatch(architecture)
    if match:
        deep = {"stem": "deep", "avg_down": True} if match[2] else {}
        return f"preact_resnet{match[1]}", deep
    raise DeepresError(
        f"timm's {architecture} is not a layout deepres loads; it loads "
        f"{', '.join((*_TIMM_SAME_LAYOUT, *torchvision_names()))} and resnetv2_18...152[d]"
    )


def timm_architectures() -> list[str]:
    """Every timm architecture ``timm_model`` accepts."""
    v2 = [f"resnetv2_{d}{s}" for d in (18, 34, 50, 101, 152) for s in ("", "d")]
    return [*torchvision_names(), *_TIMM_SAME_LAYOUT, *v2]


def hub_weights(repo: str, timm_only: bool = False) -> LocalWeights:
    """The weights of Hub repo ``ORG/REPO[@REVISION]``: a deepres folder or a timm layout."""
    repo_id, _, revision = repo.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise DeepresError(f"{repo}: a Hub repo is ORG/NAME, such as timm/resnet50d.a1_in1k")
    config = _read_config(hub_file(repo_id, CONFIG_FILE, revision or None))
    source = f"hf-hub:{repo}"
    if config.get("library_name") == LIBRARY and not timm_only:
        meta = deepres_meta(config, source)
    elif "architecture" in config:
        meta = timm_meta(config, source, repo_id)
    else:
        raise DeepresError(f"{source}: its {CONFIG_FILE} is neither a deepres nor a timm one")
    return LocalWeights(hub_file(repo_id, WEIGHTS_FILE, revision or None), meta)


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """``filename`` of Hub repo ``repo_id``: a copy put by hand in deepres's cache, else
    ``huggingface_hub``'s download (its cache only with ``HF_HUB_OFFLINE=1``)."""
    url = f"{HUB_ENDPOINT}/{repo_id}/resolve/{revision or 'main'}/{filename}"
    manual = cache_path(url)
    if manual.is_file():
        return manual
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DeepresError(
            f"hub names need huggingface_hub (pip install huggingface_hub), or put {url} at "
            f"{manual}"
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
    except Exception as err:  # noqa: BLE001 - network, offline, missing repo or file
        if not offline and type(err).__name__ in _HUB_MISSING:
            raise DeepresError(
                f"{url} does not exist: no such repo, revision or file (deepres reads "
                f"{CONFIG_FILE} and {WEIGHTS_FILE} from a Hub repo)"
            ) from None
        why = "HF_HUB_OFFLINE is set and it is not in the Hub cache" if offline else ""
        raise DeepresError(
            f"cannot get {url}: {why or first_line(err)}. Download it elsewhere and put it at "
            f"{manual}, or fill the Hub cache (hf download {repo_id})"
        ) from None
    return Path(path)


def timm_meta(config: dict[str, Any], source: str, repo_id: str = "") -> dict[str, Any]:
    """The metadata of a timm ``config.json`` (architecture, pretrained_cfg, label_names)."""
    model, args = timm_model(str(config["architecture"]))
    cfg = config.get("pretrained_cfg") or {}
    num_classes = int(config.get("num_classes", cfg.get("num_classes", 1000)))
    channels, size = cfg.get("input_size", (3, 224, 224))[0], cfg.get("input_size", [224])[-1]
    meta: dict[str, Any] = {
        "source": source,
        "model": model,
        "model_args": {**args, "num_classes": num_classes, **_channels(channels)},
        "classes": _timm_labels(config, cfg, num_classes),
        "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
        "input_size": int(size),
        "resize_size": int(size / float(cfg.get("crop_pct", 0.875))),
        "interpolation": cfg.get("interpolation", "bilinear"),
    }
    if repo_id:
        meta["url"] = f"{HUB_ENDPOINT}/{repo_id}"
    return meta


def _channels(channels: int) -> dict[str, int]:
    return {} if int(channels) == 3 else {"in_chans": int(channels)}


def _timm_labels(config: dict[str, Any], cfg: dict[str, Any], num_classes: int) -> list[str]:
    """timm's ``label_names`` (a list, or a dict by index); ImageNet-1k's names for 1000
    classes (timm's own assumption); else the class indices."""
    labels = config.get("label_names", cfg.get("label_names"))
    if isinstance(labels, dict):
        labels = [labels.get(str(i), labels.get(i, str(i))) for i in range(num_classes)]
    if isinstance(labels, list) and len(labels) == num_classes:
        return [str(label) for label in labels]
    if num_classes == 1000:
        return list(torchvision_entry("resnet50", "IMAGENET1K_V1").meta["categories"])
    return [str(i) for i in range(num_classes)]


# --- local files and folders ---------------------------------------------------------------


def local_weights(path: Path) -> LocalWeights:
    """A local weight file or folder: a deepres folder, a timm folder, a run folder."""
    if path.is_dir():
        config_path = path / CONFIG_FILE
        config = _read_config(config_path) if config_path.is_file() else {}
        if config.get("library_name") == LIBRARY and (path / WEIGHTS_FILE).is_file():
            return LocalWeights(path / WEIGHTS_FILE, deepres_meta(config, str(path)))
        if "architecture" in config and (path / WEIGHTS_FILE).is_file():
            return LocalWeights(path / WEIGHTS_FILE, timm_meta(config, str(path)))
        if (path / RUN_WEIGHTS_FILE).is_file():
            if (path / OLD_BEST_FILE).is_file():
                log.warning(
                    f"{path}: its {OLD_BEST_FILE} was chosen on the test split (by an older "
                    f"deepres), so the folder means its final weights, {RUN_WEIGHTS_FILE}; "
                    f"give {path / OLD_BEST_FILE} to use the old one"
                )
            return local_weights(path / RUN_WEIGHTS_FILE)
        raise DeepresError(f"{path} holds no {WEIGHTS_FILE}: is it a deepres or timm folder?")
    if not path.is_file():
        raise DeepresError(f"weight file not found: {path}")
    meta = header_meta(path) if path.suffix == ".safetensors" else None
    return LocalWeights(path, {"source": str(path), **(meta or {})})


def header_meta(path: Path) -> dict[str, Any] | None:
    """The ``deepres`` metadata of a safetensors file's header (run folders write it)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            text = (f.metadata() or {}).get(LIBRARY)
        meta = json.loads(text) if text else None
    except Exception as err:  # noqa: BLE001 - a hostile file can fail the parser in any way
        raise DeepresError(
            f"{path} is not a readable safetensors file: {first_line(err)}"
        ) from None
    return meta if isinstance(meta, dict) else None


def deepres_meta(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The metadata of a deepres folder's ``config.json``, checked."""
    version = config.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DeepresError(f"{source}: deepres folder format {version} is not {FORMAT_VERSION}")
    meta = {k: v for k, v in config.items() if k not in ("library_name", "format_version")}
    checks = {
        "model": isinstance(meta.get("model"), str),
        "model_args": isinstance(meta.get("model_args", {}), dict),
        "classes": all(isinstance(c, str) for c in meta.get("classes", [])),
        "mean": all(isinstance(v, (int, float)) for v in meta.get("mean", [])),
        "std": all(isinstance(v, (int, float)) for v in meta.get("std", [])),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise DeepresError(f"{source}: {CONFIG_FILE} has a bad {', '.join(bad)}")
    return {**meta, "source": source}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise DeepresError(f"{path}: {path.stat().st_size} bytes is too large a config")
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DeepresError(f"cannot read {path}: {first_line(err)}") from None
    if not isinstance(config, dict):
        raise DeepresError(f"{path} is not a JSON object")
    return config


# --- listing ---------------------------------------------------------------------------------


def published_weights(model_name: str) -> list[str]:
    """The published names ``resolve_pretrained`` takes for ``model_name``: torchvision's
    (its ``DEFAULT`` first, which plain ``"torchvision"`` means) and, when timm is installed,
    timm's pretrained tags for the architectures deepres loads into ``model_name``."""
    names = []
    if model_name in torchvision_names():
        from torchvision.models import get_model_weights

        enum = get_model_weights(model_name)
        tags = [enum.DEFAULT.name] + [t for t in enum.__members__ if t != enum.DEFAULT.name]
        names += [f"torchvision:{t}" for t in tags if t != "DEFAULT"]
    try:
        import timm
    except ImportError:
        return names
    for arch in timm_architectures():
        if timm_model(arch)[0] == model_name:
            names += [f"timm:{n}" for n in timm.list_pretrained(f"{arch}.*")]
    return names
