"""Tests for mrcnn.visualize: PNGs written and decodable, numeric checks."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mrcnn import visualize
from mrcnn.data.shapes import ShapesDataset


@pytest.fixture(scope="module")
def sample():
    ds = ShapesDataset()
    ds.load_shapes(2, 64, 96, seed=5, max_instances=3)
    ds.prepare()
    image = ds.load_image(0)
    mask, ids = ds.load_mask(0)
    from mrcnn import utils
    return ds, image, mask, ids, utils.extract_bboxes(mask)


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.format, im.size


def test_display_instances_saves_png(tmp_path, sample):
    ds, image, mask, ids, boxes = sample
    path = tmp_path / "sub" / "det.png"
    scores = np.linspace(0.9, 0.7, len(ids))
    visualize.display_instances(image, boxes, mask, ids, ds.class_names, scores, title="t",
                                figsize=(4, 3), save_path=path)
    assert _png_size(path) == ("PNG", (400, 300))
    assert [p.name for p in path.parent.iterdir()] == ["det.png"]  # no temp files
    import matplotlib.pyplot as plt
    assert plt.get_fignums() == []  # figure closed


def test_display_instances_zero_instances(tmp_path, capsys):
    image = np.full((32, 48, 3), 100, np.uint8)
    path = tmp_path / "empty.png"
    visualize.display_instances(image, np.zeros((0, 4), np.int32), np.zeros((32, 48, 0), bool),
                                np.zeros(0, np.int32), ["BG"], figsize=(2, 2), save_path=path)
    assert "No instances to display" in capsys.readouterr().out
    assert _png_size(path) == ("PNG", (200, 200))


def test_display_instances_on_given_axes(sample):
    import matplotlib.pyplot as plt
    ds, image, mask, ids, boxes = sample
    fig, ax = plt.subplots(1, figsize=(2, 2))
    out = visualize.display_instances(image, boxes, mask, ids, ds.class_names, ax=ax,
                                      captions=["c%d" % i for i in range(len(ids))])
    texts = [t.get_text() for t in ax.texts]
    assert out is ax and texts == ["c%d" % i for i in range(len(ids))]
    assert len(ax.images) == 1
    plt.close(fig)


def test_apply_mask_numeric():
    image = np.full((2, 3, 3), 100, np.uint32)
    mask = np.array([[1, 0, 0], [0, 0, 1]], bool)
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.5), alpha=0.5)
    assert out is image
    assert out[0, 0].tolist() == [177, 50, 113]  # 100*0.5 + 0.5*[255, 0, 127.5]
    assert out[0, 1].tolist() == [100, 100, 100]
    f = visualize.apply_mask(np.zeros((1, 1, 3)), np.ones((1, 1)), (0.2, 0.4, 1.0), alpha=1.0)
    np.testing.assert_allclose(f[0, 0], [51, 102, 255])


def test_random_colors_seeded():
    a = visualize.random_colors(5, seed=1)
    assert a == visualize.random_colors(5, seed=1) and len(set(a)) == 5
    assert all(max(c) == 1.0 for c in a)
    assert max(max(c) for c in visualize.random_colors(3, bright=False)) == 0.7
    assert visualize.random_colors(0) == []


def test_color_splash(sample):
    _, image, mask, _, _ = sample
    splash = visualize.color_splash(image, mask)
    inside = mask.any(-1)
    assert splash.dtype == np.uint8 and splash.shape == image.shape
    assert (splash[inside] == image[inside]).all()
    out = splash[~inside]
    assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()
    expected = (image[~inside].astype(float) @ [0.2125, 0.7154, 0.0721]).astype(np.uint8)
    assert (out[:, 0] == expected).all()
    none = visualize.color_splash(image, mask[..., :0])
    assert (none[..., 0] == none[..., 2]).all()


def test_display_differences_and_pr_curve(tmp_path, sample):
    ds, image, mask, ids, boxes = sample
    pred_mask = mask.copy()
    pred_mask[..., 0] = np.roll(mask[..., 0], 40, axis=1)  # a miss
    gt_match, pred_match, overlaps = visualize.display_differences(
        image, boxes, ids, mask, boxes, ids, np.linspace(0.95, 0.6, len(ids)), pred_mask,
        ds.class_names, figsize=(4, 2), save_path=tmp_path / "diff.png")
    assert _png_size(tmp_path / "diff.png") == ("PNG", (400, 200))
    assert pred_match[0] == -1 and (pred_match[1:] > -1).all()
    visualize.plot_precision_recall(0.5, np.array([1, 1, 0.5]), np.array([0, 0.5, 0.5]),
                                    save_path=tmp_path / "pr.png")
    assert _png_size(tmp_path / "pr.png")[0] == "PNG"
    visualize.display_top_masks(image, mask, ids, ds.class_names, save_path=tmp_path / "top.png")
    assert _png_size(tmp_path / "top.png")[0] == "PNG"
    visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 1, masks=mask,
                         captions=["a"] * len(ids), figsize=(2, 2), save_path=tmp_path / "b.png")
    assert _png_size(tmp_path / "b.png") == ("PNG", (200, 200))


def test_headless_import_is_light():
    code = ("import sys, mrcnn.visualize; "
            "assert 'matplotlib' not in sys.modules; "
            "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={"PATH": "/usr/bin:/bin"})


def test_no_show_on_headless_backend(sample):
    import warnings
    import matplotlib
    import matplotlib.pyplot as plt
    ds, image, mask, ids, boxes = sample
    assert matplotlib.get_backend().lower() == "agg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plt.show() on Agg would warn
        ax = visualize.display_instances(image, boxes, mask, ids, ds.class_names, figsize=(2, 2))
    plt.close(ax.figure)
