"""matterport's ``utils.batch_slice`` (re-exported by ``mrcnn.utils``, which must not import
TensorFlow: it is imported here only when the function runs)."""


def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Run ``graph_fn`` on each of the first ``batch_size`` slices of ``inputs`` (one tensor or
    a list, same leading size) and stack the results along a new axis 0. Returns one tensor,
    or a list when ``graph_fn`` returns several; ``names`` name the stacked tensors."""
    import tensorflow as tf

    if not isinstance(inputs, list):
        inputs = [inputs]
    outputs = []
    for i in range(batch_size):
        out = graph_fn(*[x[i] for x in inputs])
        outputs.append(list(out) if isinstance(out, (tuple, list)) else [out])
    outputs = list(zip(*outputs))
    names = names if names is not None else [None] * len(outputs)
    result = [tf.stack(o, axis=0, name=n) for o, n in zip(outputs, names)]
    return result[0] if len(result) == 1 else result
