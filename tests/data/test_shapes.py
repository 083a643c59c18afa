"""Tests for mrcnn.data.shapes: determinism, masks agree with pixels, occlusion, empties."""
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.data.shapes import ShapesDataset, shape_pixels


def _make(count=12, size=(64, 80), **kw):
    ds = ShapesDataset()
    ds.load_shapes(count, *size, **kw)
    ds.prepare()
    return ds


def test_classes_and_determinism():
    a, b = _make(seed=3), _make(seed=3)
    assert a.class_names == ["BG", "square", "circle", "triangle"]
    assert a.map_source_class_id("shapes.3") == 3
    for i in a.image_ids:
        assert (a.load_image(i) == b.load_image(i)).all()
        assert a.image_info[i]["shapes"] == b.image_info[i]["shapes"]
    # an image depends on (seed, index) only, not on count
    c = _make(count=5, seed=3)
    assert (c.load_image(4) == a.load_image(4)).all()
    assert not all((_make(seed=4).load_image(i) == a.load_image(i)).all() for i in range(3))


def test_masks_equal_colour_pixels():
    ds = _make(count=20, max_instances=6)
    for i in ds.image_ids:
        image = ds.load_image(i)
        mask, ids = ds.load_mask(i)
        info = ds.image_info[i]
        assert image.dtype == np.uint8 and image.shape == (64, 80, 3)
        assert mask.dtype == bool and ids.dtype == np.int32 and mask.shape[-1] == len(ids) >= 1
        for k, (name, color, _) in enumerate(info["shapes"]):
            assert ids[k] == ds.class_names.index(name)
            same_colour = (image == color).all(-1)
            assert (same_colour == mask[..., k]).all()
            assert mask[..., k].sum() >= 20
        # every pixel is background or exactly one instance
        assert mask.sum(-1).max() <= 1
        assert ((image == info["bg_color"]).all(-1) == ~mask.any(-1)).all()


def test_occlusion_later_shape_wins():
    ds = ShapesDataset()
    ds.add_class("shapes", 1, "square")
    ds.add_image("shapes", 0, None, height=40, width=40, bg_color=(0, 0, 0),
                 shapes=[("square", (10, 10, 10), (15, 15, 8)), ("circle", (200, 0, 0), (20, 20, 6))])
    ds.prepare()
    mask, ids = ds.load_mask(0)
    assert ids.tolist() == [1, 2]
    circle = np.zeros((40, 40), bool)
    circle[shape_pixels("circle", 20, 20, 6, 40, 40)] = True
    assert (mask[..., 1] == circle).all()
    assert not (mask[..., 0] & circle).any()
    assert mask[7:24, 7:24, 0].sum() == 17 * 17 - (circle[7:24, 7:24]).sum()
    image = ds.load_image(0)
    assert (image[20, 20] == [200, 0, 0]).all() and (image[8, 8] == [10, 10, 10]).all()


def test_hidden_shapes_dropped_from_spec():
    from mrcnn.data.shapes import _drop_hidden
    shapes = [("circle", (1, 1, 1), (20, 20, 5)), ("square", (2, 2, 2), (20, 20, 10))]
    assert _drop_hidden(shapes, 40, 40) == shapes[1:]


def test_empty_images():
    ds = _make(count=10, empty_fraction=0.3, seed=1)
    empties = [i for i in ds.image_ids if not ds.image_info[i]["shapes"]]
    assert len(empties) == 3
    mask, ids = ds.load_mask(empties[0])
    assert mask.shape == (64, 80, 0) and mask.dtype == bool and ids.shape == (0,) and ids.dtype == np.int32
    image = ds.load_image(empties[0])
    assert (image == ds.image_info[empties[0]]["bg_color"]).all()
    assert utils.extract_bboxes(mask).shape == (0, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 32"):
        ShapesDataset().load_shapes(1, 16, 16)
    with pytest.raises(ValueError, match="empty_fraction"):
        ShapesDataset().load_shapes(1, 64, 64, empty_fraction=2)
