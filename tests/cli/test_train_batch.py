"""train_batch.png (issue 18, build 6): the first training inputs with their masks."""
from PIL import Image

from tests.train_helpers import shapes, train_config


def test_train_batch_png_shows_the_inputs(tmp_path):
    from mrcnn_keras3.train_batch import write_train_batch

    config = train_config(AUGMENT=True)
    path = write_train_batch(shapes(6, seed=2), config, str(tmp_path), count=3)
    with Image.open(path) as im:
        assert im.width > 3 * im.height / 2 and im.mode in ("RGB", "RGBA")
