"""A matterport-style inference script runs unmodified in a fresh interpreter."""
import os
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from tests.helpers import random_image, tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What a matterport user writes (demo.ipynb / a project's inference script); only the config
# values are small so it runs in seconds on a CPU.
SCRIPT = textwrap.dedent('''
    import os
    import sys

    import numpy as np
    import skimage.io

    import mrcnn.model as modellib
    from mrcnn.config import Config
    from mrcnn import utils, visualize
    from mrcnn.model import log

    MODEL_DIR, WEIGHTS_PATH, IMAGE_PATH, OUT_PATH = sys.argv[1:5]


    class InferenceConfig(Config):
        NAME = "shapes"
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        NUM_CLASSES = 1 + 3
        BACKBONE = "small"
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 128
        TOP_DOWN_PYRAMID_SIZE = 32
        RPN_CONV_CHANNELS = 32
        FPN_CLASSIF_FC_LAYERS_SIZE = 64
        MASK_HEAD_CHANNELS = 16
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        POST_NMS_ROIS_INFERENCE = 64
        DETECTION_MAX_INSTANCES = 20
        DETECTION_MIN_CONFIDENCE = 0.5


    config = InferenceConfig()
    config.display()

    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=MODEL_DIR)
    model.load_weights(WEIGHTS_PATH, by_name=True)

    class_names = ['BG', 'square', 'circle', 'triangle']
    image = skimage.io.imread(IMAGE_PATH)
    log("image", image)

    results = model.detect([image], verbose=1)
    r = results[0]
    visualize.display_instances(image, r['rois'], r['masks'], r['class_ids'],
                                class_names, r['scores'], save_path=OUT_PATH)
    boxes = utils.extract_bboxes(r['masks'])
    print("DETECTIONS", len(r['rois']), r['masks'].shape, r['class_ids'].tolist())
''')


def test_matterport_inference_script(tmp_path):
    weights = tmp_path / "mask_rcnn_shapes.h5"
    tiny_model(model_dir=tmp_path).save_weights(str(weights))  # same architecture as the script's config
    image_path = tmp_path / "image.png"
    Image.fromarray(random_image(96, 128, seed=7)).save(image_path)
    script = tmp_path / "inference.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out" / "detections.png"
    out.parent.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "logs"), str(weights), str(image_path),
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Processing 1 images" in proc.stdout and "DETECTION_MIN_CONFIDENCE" in proc.stdout
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DETECTIONS")][0]
    assert int(line.split()[1]) > 0, line
    assert "(96, 128," in line
    with Image.open(out) as png:
        png.load()
        assert png.format == "PNG" and png.size[0] > 100 and png.size[1] > 100
        assert np.asarray(png).std() > 0
