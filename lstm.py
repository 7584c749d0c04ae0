"""The LSTM cell and its hand-written gradient, and the one precision rule of every graph.

The cell is written on core ops (the tf.contrib / rnn_cell classes are gone from TF 2.x): gates in the order i, j, f,
o of TensorFlow's BasicLSTMCell, c' = sigmoid(f + forget_bias) * c + sigmoid(i) * tanh(j), h' = sigmoid(o) *
tanh(c'); the forget bias joins the input projection's bias (gate_bias). One precision rule holds in every graph:
each matmul's operands are rounded to compute_dtype(cfg), everything else is float32 (matmul). The input half of the
gate matmul does not depend on the recurrence, so it is hoisted out of the time loop: one [T*B, in] x [in, 4H]
matmul per layer, and only h x W_h inside each of the T unrolled steps. lstm_sequence runs the T steps of one layer
as one differentiable unit whose backward pass is written by hand.

rnn_model.py declares the weights (LayerWeights) and stacks the layers; decoder.py runs lstm_cell step by step.
"""
from typing import NamedTuple

import numpy as np

from tf1 import tf


class LayerWeights(NamedTuple):
    """One layer's weights: variables (rnn_model.layer_weights), or the decoder's copies in the compute dtype."""
    kernel_x: tf.Variable  # [in, 4H], gate columns in the order i, j, f, o
    kernel_h: tf.Variable  # [H, 4H]
    bias: tf.Variable  # [4H]


def compute_dtype(cfg):
    """The dtype matmul operands are rounded to: float32, or bfloat16 for mixed precision (--precision)."""
    return tf.bfloat16 if cfg.precision == "bfloat16" else tf.float32


def matmul(a, b, dtype=tf.float32, **kwargs):
    """a x b with both operands in dtype, the product back in float32.

    In bfloat16 (8 bits of mantissa) oneDNN runs the matmul on the AMX / AVX512-BF16 units where the CPU has them;
    it accumulates in float32 and rounds the result to bfloat16. Weights, the LSTM
    state and every elementwise op stay float32: this is mixed precision, as PyTorch's CPU autocast does it.
    Casting an operand that already has dtype adds no op.
    """
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), tf.float32)


def lstm_layer(inputs, initial_state, weights, forget_bias, dtype=tf.float32):
    """One LSTM layer statically unrolled over time, with a hand-written backward pass (see lstm_sequence).

    inputs: [T, B, in] time-major with a static T; initial_state: (c, h), each [B, H]; weights: LayerWeights;
    dtype: of the matmuls. Returns outputs [T, B, H] and the final (c, h).
    """
    c, h = initial_state
    outputs, c, h = lstm_sequence(inputs, c, h, weights, forget_bias, dtype)
    return outputs, (c, h)


def gate_bias(bias, forget_bias):
    """The bias added to the input projection x W_x: the forget gate's columns (the third quarter) carry the forget
    bias too, so no step adds it again."""
    if not forget_bias:
        return bias
    hidden_size = bias.shape[0] // 4
    return bias + forget_bias * np.repeat(np.float32([0, 0, 1, 0]), hidden_size)


def lstm_cell(pre_activation, c):
    """The cell's update from the whole gate pre-activation x W_x + h W_h + gate_bias [B, 4H] and the cell c [B, H]:
    returns the gates i, j, f, o after their nonlinearities, the new cell c, tanh(c) and the new output h."""
    i, j, f, o = tf.split(pre_activation, 4, axis=1)
    i, j, f, o = tf.sigmoid(i), tf.tanh(j), tf.sigmoid(f), tf.sigmoid(o)
    c = f * c + i * j
    tanh_c = tf.tanh(c)
    return i, j, f, o, c, tanh_c, o * tanh_c


def lstm_sequence(inputs, c0, h0, weights, forget_bias, dtype=tf.float32):
    """The LSTM recurrence over all T steps as one differentiable unit: (outputs [T, B, H], c_T, h_T).

    Autodiff of the unrolled cell computes the kernel_h gradient as T small matmuls (inner dimension B) summed by
    an AddN of T [H, 4H] matrices, and pays a dozen elementwise gradient ops per step. The backward pass below keeps
    only what is truly sequential inside the time loop (dh -> dc -> gate gradients -> dh of the previous step,
    ~7 ops per step) and computes every weight gradient afterwards as ONE [.., T*B] x [T*B, 4H] matmul, as cuDNN
    and PyTorch do. Gate order i, j, f, o as BasicLSTMCell; tests/test_lstm.py checks it against autodiff of the
    plain reference cell.

    dtype: of every matmul operand (see matmul). The time loops stay plain ops, not XLA functions: see
    benchmarks/README.md for why.
    """
    num_steps, in_size = inputs.shape[0], inputs.shape[-1]
    hidden_size = weights.kernel_h.shape[0]

    @tf.custom_gradient
    def sequence(inputs, c0, h0, kernel_x, kernel_h, bias):
        # Each weight is cast once, for the forward and the backward pass.
        inputs, kernel_x, kernel_h = tf.cast(inputs, dtype), tf.cast(kernel_x, dtype), tf.cast(kernel_h, dtype)
        # The input projection does not depend on the recurrence: one big matmul for all steps, not T small ones.
        projected = matmul(tf.reshape(inputs, [-1, in_size]), kernel_x, dtype) + gate_bias(bias, forget_bias)
        projected = tf.reshape(projected, [num_steps, -1, 4 * hidden_size])  # [T, B, 4H]
        saved = recurrence(projected, c0, h0, kernel_h)  # i, j, f, o, c, tanh_c, h; each [T, B, H]
        outputs, c, h = saved[-1], saved[-3][-1], saved[-1][-1]

        def gradient(d_outputs, d_c_final, d_h_final):
            return lstm_sequence_gradient(inputs, c0, h0, kernel_x, kernel_h, saved, d_outputs, d_c_final,
                                          d_h_final, dtype)
        return (outputs, c, h), gradient

    return sequence(inputs, c0, h0, *weights)


def recurrence(projected, c0, h0, kernel_h):
    """The forward time loop, statically unrolled: projected [T, B, 4H] (x W_x + b + forget bias, every step) and the
    initial state -> the gates i, j, f, o, the cell c, tanh(c) and the output h of every step, each [T, B, H]."""
    c, h = c0, h0
    saved = [[] for _ in range(7)]
    for t, projected_t in enumerate(tf.unstack(projected, num=projected.shape[0])):
        with tf.name_scope(f"step_{t}"):
            step = lstm_cell(projected_t + matmul(h, kernel_h, kernel_h.dtype), c)
        c, h = step[4], step[6]
        for values, value in zip(saved, step):
            values.append(value)
    return tuple(tf.stack(values) for values in saved)


def recurrence_gradient(d_outputs, d_c, d_h, c0, i, j, f, o, c, tanh_c, kernel_h):
    """The backward time loop: the incoming gradients (d_outputs [T, B, H], and of the final c and h) and the
    forward's saved gates and cells ([T, B, H] each) -> d gate pre-activations [T, B, 4H] and the gradients of
    c0 and h0."""
    num_steps = d_outputs.shape[0]
    c_prev = tf.concat([c0[None], c[:-1]], 0)  # [T, B, H]
    # Everything that does not depend on the incoming gradient, for all steps at once:
    # d gate_pre-activation = (dc, dc, dc, dh) * gate_factor; dc picks up dh * h_factor.
    gate_factor = tf.concat([j * i * (1 - i), i * (1 - j * j), c_prev * f * (1 - f), tanh_c * o * (1 - o)],
                            axis=2)  # [T, B, 4H]
    h_factor = o * (1 - tanh_c * tanh_c)  # [T, B, H]
    d_outputs, gate_factor, h_factor, f = (tf.unstack(x, num=num_steps) for x in (d_outputs, gate_factor, h_factor, f))
    d_gates = [None] * num_steps
    for t in reversed(range(num_steps)):
        with tf.name_scope(f"step_{t}"):
            d_h = d_h + d_outputs[t]  # [B, H]
            d_c = d_c + d_h * h_factor[t]
            d_gates[t] = tf.concat([d_c, d_c, d_c, d_h], axis=1) * gate_factor[t]  # [B, 4H]
            d_c = d_c * f[t]  # -> the previous step's cell
            d_h = matmul(d_gates[t], kernel_h, kernel_h.dtype, transpose_b=True)  # -> the previous step's output
    return tf.stack(d_gates), d_c, d_h


def lstm_sequence_gradient(inputs, c0, h0, kernel_x, kernel_h, saved, d_outputs, d_c_final, d_h_final, dtype):
    """Backward pass of lstm_sequence; saved holds the forward loop's [T, B, H] tensors. Returns the float32
    gradients of (inputs, c0, h0, kernel_x, kernel_h, bias)."""
    in_size = inputs.shape[-1]
    hidden_size = kernel_h.shape[0]
    with tf.name_scope("lstm_backward"):
        h = saved[-1]
        d_h = tf.zeros_like(h0) if d_h_final is None else d_h_final
        d_c = tf.zeros_like(c0) if d_c_final is None else d_c_final
        d_outputs = tf.zeros_like(h) if d_outputs is None else d_outputs
        d_gates, d_c, d_h = recurrence_gradient(d_outputs, d_c, d_h, c0, *saved[:6], kernel_h)
        d_gates = tf.reshape(d_gates, [-1, 4 * hidden_size])  # [T*B, 4H]
        h_prev = tf.reshape(tf.concat([h0[None], h[:-1]], 0), [-1, hidden_size])  # [T*B, H]
        flat_inputs = tf.reshape(inputs, [-1, in_size])  # [T*B, in]
        d_kernel_h = matmul(h_prev, d_gates, dtype, transpose_a=True)  # [H, 4H], one matmul over all steps
        d_kernel_x = matmul(flat_inputs, d_gates, dtype, transpose_a=True)  # [in, 4H]
        d_bias = tf.reduce_sum(d_gates, 0)
        d_inputs = tf.reshape(matmul(d_gates, kernel_x, dtype, transpose_b=True), tf.shape(inputs))
    return d_inputs, d_c, d_h, d_kernel_x, d_kernel_h, d_bias
