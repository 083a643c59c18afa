"""A Conv2D whose backward pass is computed as forward convolutions and matmuls.

On the CPU, TensorFlow's ``Conv2DBackpropInput`` and ``Conv2DBackpropFilter`` run at about half
the FLOP rate of the forward ``Conv2D`` on the shapes of this model (see
``bench/bench_conv_grad.py``). For a stride-1 convolution with an odd square kernel both
gradients can be written with faster ops:

- dx = conv(dy, k') with k'[i, j, co, ci] = k[K-1-i, K-1-j, ci, co] (the kernel flipped and
  transposed), "same" padding; for "valid", dy is first padded by K-1 on every side;
- dk[i, j] = x_shift(i, j)^T @ dy, one [Cin, M] @ [M, Cout] matmul per kernel tap, where
  x_shift is the (padded) input shifted by the tap and M = N*H*W.

Everything else (strided convolutions: the 7x7 ``conv1`` and the 1x1 stride-2 ones, whose
rewrite as subsample + 1x1 was 3x slower in its backward pass; dilations; channels_first) uses
the ordinary convolution and its gradient. Forward outputs and weights are
exactly those of ``keras.layers.Conv2D``, so weight files are unchanged.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers as KL

# Below this many output pixels per image the per-tap slices cost more than TF's filter
# gradient saves (bench/bench_conv_grad.py: 14x14 mask-head ROIs and 32x32 res4 are faster with
# TF's op; 64x64 and up are not).
_SHIFTED_MIN_PIXELS = 64 * 64


def flip_transpose(kernel):
    """[K, K, Cin, Cout] -> [K, K, Cout, Cin], spatially reversed."""
    return tf.transpose(tf.reverse(kernel, axis=[0, 1]), [0, 1, 3, 2])


def filter_grad(x, dy, k, padding):
    """dk [K, K, Cin, Cout] of a stride-1 conv with input x [N, H, W, Cin] and dy [N, Ho, Wo, Cout]."""
    cin, cout = x.shape[-1], dy.shape[-1]
    if k == 1:
        return tf.reshape(tf.matmul(tf.reshape(x, (-1, cin)), tf.reshape(dy, (-1, cout)),
                                    transpose_a=True), (1, 1, cin, cout))
    pixels = None if None in tuple(dy.shape[1:3]) else dy.shape[1] * dy.shape[2]
    if pixels is not None and pixels < _SHIFTED_MIN_PIXELS:
        return tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.constant([k, k, cin, cout]), out_backprop=dy,
            strides=[1, 1, 1, 1], padding=padding.upper())
    if padding == "same":
        p = (k - 1) // 2
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    ho, wo = tf.shape(dy)[1], tf.shape(dy)[2]
    dy_flat = tf.reshape(dy, (-1, cout))
    taps = []
    for i in range(k):
        for j in range(k):
            # One shifted copy of x alive at a time: each slice waits for the previous matmul.
            with tf.control_dependencies(taps[-1:]):
                xs = tf.reshape(x[:, i:i + ho, j:j + wo, :], (-1, cin))
            taps.append(tf.matmul(xs, dy_flat, transpose_a=True))
    return tf.reshape(tf.stack(taps), (k, k, cin, cout))


def _conv_stride1(x, kernel, padding):
    """Stride-1 conv [N, H, W, Cin] * [K, K, Cin, Cout] with the fast gradient; padding 'same'|'valid'."""
    k = kernel.shape[0]

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, 1, padding.upper())

        def grad(dy):
            if padding == "same" or k == 1:
                dx = tf.nn.conv2d(dy, flip_transpose(kernel), 1, "SAME")
            else:
                dyp = tf.pad(dy, [[0, 0], [k - 1, k - 1], [k - 1, k - 1], [0, 0]])
                dx = tf.nn.conv2d(dyp, flip_transpose(kernel), 1, "VALID")
            return dx, filter_grad(x, dy, k, padding)

        return y, grad

    return conv(x, kernel)


def fast_grad_conv2d(x, kernel, strides=(1, 1), padding="valid"):
    """``ops.conv`` (channels_last, no dilation) with the fast backward pass where it applies.

    x [N, H, W, Cin], kernel [K, K, Cin, Cout] -> [N, Ho, Wo, Cout]. Returns None when the
    case is not covered, so the caller falls back to the ordinary convolution.
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    if kh != kw or kh % 2 == 0 or tuple(strides) != (1, 1):
        return None
    return _conv_stride1(x, kernel, padding)


@keras.saving.register_keras_serializable(package="mrcnn")
class FastGradConv2D(KL.Conv2D):
    """``keras.layers.Conv2D`` with the same forward pass and weights, and the backward pass of
    ``fast_grad_conv2d`` where it applies (stride-1 odd square kernels, channels_last)."""

    def convolution_op(self, inputs, kernel):
        if self.data_format == "channels_last" and tuple(self.dilation_rate) == (1, 1) and self.groups == 1:
            out = fast_grad_conv2d(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel),
                                   self.strides, self.padding)
            if out is not None:
                return out
        return super().convolution_op(inputs, kernel)


# matterport's notebooks pick layers by class name (``l.__class__.__name__ in ['Conv2D', ...]``)
# and print it in set_trainable: report Keras's name. Serialisation is unaffected: Keras looks
# the class up by its registered name, "mrcnn>FastGradConv2D", not by __name__.
FastGradConv2D.__name__ = "Conv2D"
