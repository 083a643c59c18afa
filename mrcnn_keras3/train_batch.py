"""``train_batch.png`` in a new run folder: the first training images as the model sees them
(resized, padded, augmented when AUGMENT is on) with their masks, boxes and class names, like
Ultralytics' train_batch*.jpg: a look at the inputs before the first step."""
from __future__ import annotations

import os

import numpy as np


def write_train_batch(dataset, config, run_dir, count=4, seed=0):
    """Draw ``count`` training samples into ``run_dir/train_batch.png``; the path (None if empty)."""
    from mrcnn import visualize
    from mrcnn.data.inputs import load_image_gt
    from mrcnn.viz.display import finish_figure, pyplot

    ids = list(dataset.image_ids)[:count]
    if not ids:
        return None
    augmentation = None
    if getattr(config, "AUGMENT", False):
        from mrcnn.data.augment import Augmenter
        augmentation = Augmenter()
    plt = pyplot()
    fig, axes = plt.subplots(1, len(ids), figsize=(4.5 * len(ids), 4.8), squeeze=False)
    palette = visualize.random_colors(max(dataset.num_classes, 1), seed=0)
    for ax, image_id in zip(axes[0], ids):
        image, _, class_ids, boxes, masks = load_image_gt(
            dataset, config, image_id, augmentation=augmentation, use_mini_mask=False,
            rng=np.random.default_rng([seed, 0, int(image_id)]))
        visualize.display_instances(image, boxes, masks, class_ids, dataset.class_names, ax=ax,
                                    colors=[palette[int(c)] for c in class_ids],
                                    title=str(dataset.image_info[image_id].get("id", image_id))[:24])
    fig.suptitle("train_batch: training inputs as the model sees them (resized, padded, augmented)")
    fig.tight_layout()
    path = os.path.join(run_dir, "train_batch.png")
    finish_figure(fig, path, False)
    return path
