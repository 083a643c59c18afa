"""matterport's ``mrcnn.utils``: the same names, re-exported from the rooms that own them.

NumPy only: importing this module never imports TensorFlow (``batch_slice`` imports it when
it runs). Box format everywhere: (y1, x1, y2, x2) in pixels, y2/x2 exclusive.
"""
import logging

from mrcnn.data.dataset import Dataset  # noqa: F401
from mrcnn.evaluation.metrics import (compute_ap, compute_ap_range, compute_matches,  # noqa: F401
                                      compute_overlaps_masks, compute_recall, trim_zeros)
from mrcnn.io.coco_weights import COCO_MODEL_URL, download_trained_weights  # noqa: F401
from mrcnn.modeling.graph_utils import batch_slice  # noqa: F401
from mrcnn.structures.anchors import generate_anchors, generate_pyramid_anchors  # noqa: F401
from mrcnn.structures.boxes import (apply_box_deltas, box_refinement, compute_iou,  # noqa: F401
                                    compute_overlaps, denorm_boxes, extract_bboxes,
                                    non_max_suppression, norm_boxes)
from mrcnn.structures.image import (compose_image_meta, mold_image, parse_image_meta,  # noqa: F401
                                    resize, resize_image, unmold_image)
from mrcnn.structures.masks import (expand_mask, minimize_mask, mold_mask, paste_masks,  # noqa: F401
                                    resize_mask, unmold_mask)

logger = logging.getLogger(__name__)
