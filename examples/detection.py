"""Train torchvision's Faster R-CNN on a deepres ResNet-18-FPN, from scratch, on CPU.

The data: CIFAR-10 objects of three classes pasted onto Imagenette photographs (see
``deepres.backbones.paste_data``), generated once into ``--out``. Scored on held-out images
(other objects, other backgrounds) with pycocotools' COCOeval.

    python examples/detection.py                 # default budget: 16 minutes of training
    python examples/detection.py --budget tiny   # seconds: a smoke test
"""

from __future__ import annotations

import contextlib
import io
import time

import torch
from common import CLASSES, Budget, Schedule, batches, make_data, parse_args
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from deepres.backbones import backbone
from deepres.backbones.paste_data import PasteDataset

BUDGETS = {
    "tiny": Budget(train_images=8, val_images=4, minutes=1.0, steps=3, batch_size=4),
    "default": Budget(train_images=1500, val_images=200, minutes=16.0, steps=3000, batch_size=8),
}
FPN_CHANNELS = 128


def build_model(image_size: int) -> FasterRCNN:
    """Faster R-CNN sized for small images and a CPU: stages 2-4 into a 128-channel FPN
    (strides 8-64), one anchor size per level, a 256-wide box head, few proposals."""
    body = backbone(
        "resnet18",
        trainable_layers=5,  # from scratch: train everything, BatchNorm included
        norm="bn",
        returned_layers=[2, 3, 4],
        fpn_channels=FPN_CHANNELS,
    )
    sizes = tuple((round(f * image_size),) for f in (0.25, 0.375, 0.56, 0.84))
    anchors = AnchorGenerator(sizes, ((0.75, 1.0, 1.33),) * 4)
    return FasterRCNN(
        body,
        min_size=image_size,
        max_size=image_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=1),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, len(CLASSES) + 1),
        box_batch_size_per_image=64,
        box_score_thresh=0.01,
        box_detections_per_img=20,
    )


def flip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    width = image.shape[-1]
    boxes = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor(
        [width, 0, width, 0]
    )
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def train(model: FasterRCNN, data: PasteDataset, args) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)  # from scratch: Adam
    schedule = Schedule(optimizer, args.steps, args.minutes)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for indices in batches(len(data), args.batch_size, args.seed):
        if schedule.done():
            break
        schedule.advance()
        samples = [data[i] for i in indices]
        samples = [flip(*s) if torch.rand((), generator=generator) < 0.5 else s for s in samples]
        losses = model([s[0] for s in samples], [s[1] for s in samples])
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        parts = " ".join(f"{k.removeprefix('loss_')} {v.item():.3f}" for k, v in losses.items())
        schedule.log(loss.item(), parts)


def coco_ground_truth(data: PasteDataset) -> COCO:
    images, annotations = [], []
    for index, entry in enumerate(data.annotations):
        height, width = data.images[index].shape[:2]
        images.append({"id": entry["id"], "height": height, "width": width})
        for box, label in zip(entry["boxes"], entry["labels"], strict=True):
            x0, y0, x1, y1 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": entry["id"], "category_id": label,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })  # fmt: skip
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@torch.no_grad()
def evaluate(model: FasterRCNN, data: PasteDataset) -> tuple[float, float]:
    """(mAP@0.5, mAP@[.5:.95]) of ``model`` on ``data``, by COCOeval."""
    model.eval()
    results = []
    for start in range(0, len(data), 16):
        samples = [data[i] for i in range(start, min(len(data), start + 16))]
        for (_, target), output in zip(samples, model([s[0] for s in samples]), strict=True):
            for box, score, label in zip(
                *(output[k].tolist() for k in ("boxes", "scores", "labels")), strict=True
            ):
                x0, y0, x1, y1 = box
                results.append({
                    "image_id": int(target["image_id"]), "category_id": label,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score,
                })  # fmt: skip
    if not results:
        return 0.0, 0.0
    truth = coco_ground_truth(data)
    with contextlib.redirect_stdout(io.StringIO()):
        scores = COCOeval(truth, truth.loadRes(results), "bbox")
        scores.evaluate()
        scores.accumulate()
        scores.summarize()
    return float(scores.stats[1]), float(scores.stats[0])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], BUDGETS)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    root = make_data(args)
    train_data, val_data = PasteDataset(root, "train"), PasteDataset(root, "val")
    model = build_model(args.image_size)
    print(
        f"model: Faster R-CNN, deepres resnet18-FPN backbone, {args.image_size} px, "
        f"batch {args.batch_size}, at most {args.steps} steps / {args.minutes:g} min",
        flush=True,
    )
    train(model, train_data, args)
    map50, map_all = evaluate(model, val_data)
    minutes = (time.perf_counter() - start) / 60
    print(
        f"detection: mAP@0.5 {map50:.3f}  mAP@[.5:.95] {map_all:.3f} on {len(val_data)} "
        f"held-out images ({minutes:.1f} min in all)",
        flush=True,
    )


if __name__ == "__main__":
    main()
