"""TensorBoard layout (issue 18, build 5): grouped tags, no -1 values, images cropped."""
import numpy as np

from mrcnn.io.runs import crop_to_content, summary_tag


def test_tags_are_grouped_losses_and_lr_first():
    assert summary_tag("loss") == "loss/total" and summary_tag("val_loss") == "loss/total"
    assert summary_tag("mrcnn_mask_loss") == "loss/mrcnn_mask"
    assert summary_tag("val_rpn_class_loss") == "loss/rpn_class"
    assert summary_tag("learning_rate") == "lr"
    assert summary_tag("val_segm_AP") == "metrics/segm_AP"
    groups = sorted({summary_tag(k).split("/")[0] for k in ("loss", "lr", "val_segm_AP", "bbox_AP50")})
    assert groups[:2] == ["loss", "lr"]  # TensorBoard sorts groups by name


def test_crop_to_content_drops_white_margins():
    image = np.full((800, 1600, 3), 255, np.uint8)
    image[300:400, 500:700] = (10, 200, 30)
    out = crop_to_content(image, pad=4)
    assert out.shape == (108, 208, 3)
    assert crop_to_content(np.full((5, 5, 3), 255, np.uint8)).shape == (5, 5, 3)


def test_evaluation_summaries_skip_minus_one_and_crop_images(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mrcnn_keras3.evaluation import log_tensorboard

    figure = np.full((400, 800, 3), 255, np.uint8)
    figure[100:150, 200:300] = 0
    Image.fromarray(figure).save(tmp_path / "overlay.png")
    log_tensorboard(str(tmp_path / "events"), {"segm_AP": 0.5, "segm_APs": -1.0}, [str(tmp_path / "overlay.png")], 3)
    acc = EventAccumulator(str(tmp_path / "events"), size_guidance={"tensors": 0}).Reload()
    assert acc.Tags()["tensors"] == ["metrics/segm_AP", "predictions/0"]
    (event,) = acc.Tensors("predictions/0")
    width, height = (int(v) for v in event.tensor_proto.string_val[:2])
    assert (width, height) == (112, 62)  # 100 x 50 of content plus the padding, not 800 x 400
