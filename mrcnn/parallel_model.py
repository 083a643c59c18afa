"""matterport's ``mrcnn.parallel_model.ParallelModel``, delegating to ``tf.distribute``.

matterport split each batch across GPUs by hand (a Keras 2 graph with one tower per GPU and a
concatenation on the CPU), which was often slower than one GPU. Here the work is done by
``tf.distribute.MirroredStrategy``: the model's variables are mirrored and ``train()`` runs
each replica's share of the batch (``BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT``).

    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = modellib.MaskRCNN(mode="training", config=config, model_dir=MODEL_DIR)
    model.train(...)

``ParallelModel(keras_model, gpu_count)`` is kept so matterport code imports and runs; it
wraps the model without copying it and says that ``tf.distribute`` does the work.
"""
import logging
import warnings

_logger = logging.getLogger(__name__)


class ParallelModel:
    """Wraps ``keras_model`` (``inner_model``) and forwards every attribute to it."""

    def __init__(self, keras_model, gpu_count):
        self.inner_model = keras_model
        self.gpu_count = int(gpu_count)
        warnings.warn(
            "mrcnn.parallel_model.ParallelModel delegates to tf.distribute: build the MaskRCNN "
            "model under tf.distribute.MirroredStrategy().scope() to train on several GPUs. "
            "This wrapper runs the model unchanged.", UserWarning, stacklevel=2)

    def __getattr__(self, name):
        return getattr(self.inner_model, name)

    def __call__(self, *args, **kwargs):
        return self.inner_model(*args, **kwargs)
