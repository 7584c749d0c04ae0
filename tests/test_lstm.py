"""The LSTM layer with its hand-written gradient against autodiff of a plain textbook cell, in float32 and bfloat16."""
import numpy as np

import lstm
from tf1 import tf


def reference_lstm(inputs, c, h, kernel, bias, forget_bias):
    """The textbook cell: every step multiplies [x_t, h] by the full kernel. inputs: list of [B, in]."""
    outputs = []
    for x in inputs:
        i, j, f, o = tf.split(tf.matmul(tf.concat([x, h], 1), kernel) + bias, 4, axis=1)
        c = tf.sigmoid(f + forget_bias) * c + tf.sigmoid(i) * tf.tanh(j)
        h = tf.sigmoid(o) * tf.tanh(c)
        outputs.append(h)
    return tf.stack(outputs), (c, h)


def lstm_and_reference(dtype, seed=0, steps=6, batch=4, in_size=5, hidden=7):
    """Outputs and gradients (wrt inputs and the three weights) of lstm.lstm_layer with matmuls in dtype and of the
    float32 reference cell, on the same random inputs and weights."""
    rng = np.random.RandomState(seed)
    x = rng.randn(steps, batch, in_size).astype(np.float32)
    c0, h0 = (rng.randn(batch, hidden).astype(np.float32) for _ in range(2))
    with tf.Graph().as_default():
        inputs = tf.constant(x)
        with tf.variable_scope("m", initializer=tf.random_uniform_initializer(-0.5, 0.5, seed=1)):
            weights = lstm.LayerWeights(tf.get_variable("kernel_x", [in_size, 4 * hidden]),
                                        tf.get_variable("kernel_h", [hidden, 4 * hidden]),
                                        tf.get_variable("bias", [4 * hidden]))
        outputs, (c, h) = lstm.lstm_layer(inputs, (tf.constant(c0), tf.constant(h0)), weights, 1.0, dtype)
        kernel_x, kernel_h, bias = weights
        # Give the bias a non-zero value so that its gradient path is exercised too.
        set_bias = tf.assign(bias, tf.constant(rng.randn(4 * hidden).astype(np.float32)))
        ref_outputs, (ref_c, ref_h) = reference_lstm(tf.unstack(inputs), tf.constant(c0), tf.constant(h0),
                                                     tf.concat([kernel_x, kernel_h], 0), bias, 1.0)
        weights = tf.constant(rng.randn(steps, batch, hidden).astype(np.float32))  # a loss touching every output
        loss = tf.reduce_sum(outputs * weights) + tf.reduce_sum(c)
        ref_loss = tf.reduce_sum(ref_outputs * weights) + tf.reduce_sum(ref_c)
        wrt = [inputs, kernel_x, kernel_h, bias]
        grads, ref_grads = tf.gradients(loss, wrt), tf.gradients(ref_loss, wrt)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(set_bias)
            got, want = sess.run([[outputs, c, h] + grads, [ref_outputs, ref_c, ref_h] + ref_grads])
    return got, want


def test_hoisted_lstm_matches_reference_cell_outputs_and_gradients():
    got, want = lstm_and_reference(tf.float32)
    for a, b in zip(got[:3], want[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(got[3:], want[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(got[4]).max() > 0


def test_bfloat16_lstm_matches_reference_cell_within_bfloat16_rounding():
    """--precision bfloat16 rounds every matmul operand to 8 bits of mantissa (relative step 2^-8 = 0.4%): outputs
    and gradients must stay within a few of those steps of the float32 reference, over every element."""
    for seed in range(3):
        got, want = lstm_and_reference(tf.bfloat16, seed=seed, steps=12, batch=8, in_size=16, hidden=32)
        for name, a, b in zip(["outputs", "c", "h", "d_inputs", "d_kernel_x", "d_kernel_h", "d_bias"], got, want):
            relative = np.linalg.norm(a - b) / np.linalg.norm(b)
            assert relative < 1.5e-2, (seed, name, relative)
        # ...and it really ran in bfloat16: float32 would agree to ~1e-7.
        assert np.linalg.norm(got[0] - want[0]) / np.linalg.norm(want[0]) > 1e-4
