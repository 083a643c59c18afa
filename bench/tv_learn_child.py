"""torchvision side of ``bench.bench_learn_vs_tv``, run by ``--torchvision-python`` (its own
venv; torch is never a project dependency). Not imported by the project.

    python bench/tv_learn_child.py '<json spec>'

spec: data (npz from the parent), seed, budget_cpu (process CPU seconds for training), lr,
tv_warmup (linear warm-up steps), tv_backbone, batch, rois, out (npz of held-out predictions). Prints one JSON line: steps, CPU seconds, the
loss curve. Training stops before a step would pass the budget (the last step's CPU time as
the estimate), the same rule as ours.
"""
import json
import sys
import time

import numpy as np
import torch
import torchvision
from torchvision.models.detection.anchor_utils import AnchorGenerator

from bench.discs_rects import boxes_of, load_split   # NumPy only (PYTHONPATH is the repository)


def target(class_ids, masks):
    boxes = boxes_of(masks)[:, [1, 0, 3, 2]]   # torchvision's (x1, y1, x2, y2)
    return {"boxes": torch.tensor(boxes),
            "labels": torch.from_numpy(class_ids.astype(np.int64)),
            "masks": torch.from_numpy(masks.astype(np.uint8))}


def build(spec, size):
    """``maskrcnn_resnet50_fpn`` (from scratch: plain BatchNorm, every layer trainable), or the
    the same detector on a ResNet-18 FPN with 64-channel heads (``tv_backbone`` "resnet18")."""
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
    kwargs = dict(num_classes=3, min_size=size, max_size=size, rpn_anchor_generator=anchors,
                  box_batch_size_per_image=spec["rois"], box_detections_per_img=20, box_score_thresh=0.05)
    if spec.get("tv_backbone", "resnet50") == "resnet50":
        return torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs)
    from torchvision.models.detection import faster_rcnn, mask_rcnn, rpn
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    # The fast setting: ResNet-18 with the widths of ours "small" setting: FPN/RPN/mask head
    # 64 channels, box head fc 256 (our FPN_CLASSIF_FC_LAYERS_SIZE), 4 mask convs as matterport.
    d = 64
    layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    backbone = BackboneWithFPN(torchvision.models.resnet18(weights=None), layers, [64, 128, 256, 512], d)
    kwargs.update(rpn_head=rpn.RPNHead(d, 3), box_head=faster_rcnn.TwoMLPHead(d * 7 * 7, 4 * d),
                  box_predictor=faster_rcnn.FastRCNNPredictor(4 * d, 3),
                  mask_head=mask_rcnn.MaskRCNNHeads(d, [d] * 4, 1), mask_predictor=mask_rcnn.MaskRCNNPredictor(d, d, 3))
    kwargs.pop("num_classes")
    return torchvision.models.detection.MaskRCNN(backbone, **kwargs)


def train(model, spec, images, annotations):
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=0.9, weight_decay=1e-4)
    # torchvision's reference recipe warms up linearly (from 0.001x); without it, from scratch
    # at 0.01, the loss diverged (15.8 -> 2.4e6 in 4 steps in a trial run).
    warmup = spec.get("tv_warmup", 50)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, 0.001 + (1 - 0.001) * i / warmup)
                                              if warmup else 1.0)
    rng = np.random.default_rng(spec["seed"])
    batch, order, curve = spec["batch"], [], []
    model.train()
    start, last = time.process_time(), 0.0
    while True:
        used = time.process_time() - start
        if used + last > spec["budget_cpu"]:
            break
        if len(order) < batch:
            order.extend(rng.permutation(len(images)).tolist())
        ids, order = order[:batch], order[batch:]
        t = time.process_time()
        x = [torch.from_numpy(images[i]).permute(2, 0, 1).float() / 255 for i in ids]
        y = [target(*annotations[i]) for i in ids]
        losses = model(x, y)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        last = time.process_time() - t
        curve.append([len(curve) + 1, round(time.process_time() - start, 2), float(loss.detach())])
    return curve, time.process_time() - start


@torch.no_grad()
def predict(model, images, out):
    model.eval()
    arrays = {}
    for i, image in enumerate(images):
        r = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
        b = r["boxes"].numpy()
        arrays[f"rois_{i}"] = np.round(b[:, [1, 0, 3, 2]]).astype(np.int32)
        arrays[f"class_ids_{i}"] = r["labels"].numpy().astype(np.int32)
        arrays[f"scores_{i}"] = r["scores"].numpy().astype(np.float32)
        arrays[f"masks_{i}"] = np.packbits(r["masks"][:, 0].numpy() > 0.5, axis=-1)
    np.savez_compressed(out, **arrays)


def main():
    spec = json.loads(sys.argv[1])
    torch.manual_seed(spec["seed"])
    images, annotations = load_split(spec["data"], "train")
    val_images, _ = load_split(spec["data"], "val")
    model = build(spec, images.shape[1])
    curve, cpu = train(model, spec, images, annotations)
    predict(model, val_images, spec["out"])
    print(json.dumps({"steps": len(curve), "train_cpu_seconds": cpu, "curve": curve,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
