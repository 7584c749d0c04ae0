"""Graph-level tests: the hoisted LSTM against a plain reference cell, weight sharing, unroll length, pooling."""
import dataclasses
import re

import numpy as np
import pytest

import config
import rnn_model as rm

tf = rm.tf


def tiny(**overrides):
    values = dict(num_layers=2, hidden_size=8, embedding_size=6, num_steps=5, batch_size=3, keep_prob=1.0,
                  forget_bias=1.0, init_scale=0.5)
    values.update(overrides)
    return dataclasses.replace(config.Config(), **values)


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
    """Outputs and gradients (wrt inputs and the three weights) of rm.lstm_layer with matmuls in dtype and of the
    float32 reference cell, on the same random inputs and weights."""
    rng = np.random.RandomState(seed)
    x = rng.randn(steps, batch, in_size).astype(np.float32)
    c0, h0 = (rng.randn(batch, hidden).astype(np.float32) for _ in range(2))
    with tf.Graph().as_default():
        inputs = tf.constant(x)
        with tf.variable_scope("m", initializer=tf.random_uniform_initializer(-0.5, 0.5, seed=1)):
            outputs, (c, h) = rm.lstm_layer(inputs, (tf.constant(c0), tf.constant(h0)), hidden, 1.0, "layer", dtype)
            tf.get_variable_scope().reuse_variables()
            kernel_x = tf.get_variable("layer/kernel_x")
            kernel_h = tf.get_variable("layer/kernel_h")
            bias = tf.get_variable("layer/bias")
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


@pytest.mark.parametrize("dtype,tolerance", [(tf.float32, 1e-5), (tf.bfloat16, 1.5e-2)])
def test_fused_softmax_loss_matches_the_plain_loss_and_gradients(dtype, tolerance):
    """The XLA-compiled loss (xla_loss) against TensorFlow's own op and autodiff, all in float32."""
    rng = np.random.RandomState(4)
    rows, in_size, vocab = 30, 16, 50
    with tf.Graph().as_default():
        inputs = tf.constant(rng.randn(rows, in_size).astype(np.float32))
        labels = tf.constant(rng.randint(0, vocab, rows).astype(np.int32))
        row_weights = tf.constant(rng.rand(rows).astype(np.float32))  # a different upstream gradient per row
        with tf.variable_scope("m", initializer=tf.random_uniform_initializer(-0.5, 0.5, seed=2)):
            fused, _ = rm.softmax_loss(inputs, vocab, labels, "softmax", dtype, jit=True)
        with tf.variable_scope("m", reuse=True):
            plain, _ = rm.softmax_loss(inputs, vocab, labels, "softmax", tf.float32, jit=False)
            weights, bias = tf.get_variable("softmax/weights"), tf.get_variable("softmax/bias")
        set_bias = tf.assign(bias, tf.constant(rng.randn(vocab).astype(np.float32)))
        wrt = [inputs, weights, bias]
        grads = tf.gradients(tf.reduce_sum(fused * row_weights), wrt)
        ref_grads = tf.gradients(tf.reduce_sum(plain * row_weights), wrt)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(set_bias)
            got, want = sess.run([[fused] + grads, [plain] + ref_grads])
    for name, a, b in zip(["losses", "d_inputs", "d_weights", "d_bias"], got, want):
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < tolerance, name


def build_lm_graphs(cfg, vocab_size=11):
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg)
        train = rm.build_lm(cfg, vocab_size, cfg.num_steps, controls, rm.make_optimizer(cfg, controls.learning_rate))
        count_after_train = len(tf.trainable_variables())
        evaluation = rm.build_lm(cfg, vocab_size, cfg.num_steps, controls)
        generation = rm.build_lm(cfg, vocab_size, 1, controls)
    return graph, controls, train, evaluation, generation, count_after_train


def test_layers_have_their_own_weights_and_graphs_share_them():
    cfg = tiny(num_layers=3)
    graph, controls, *_, count_after_train = build_lm_graphs(cfg)
    with graph.as_default():
        names = sorted(v.op.name for v in tf.trainable_variables())
        assert len(names) == count_after_train  # evaluation and generation graphs created no new weights
        kernels = [v for v in tf.trainable_variables() if v.op.name.endswith("kernel_h")]
        assert [v.op.name for v in kernels] == [f"model/layer_{i}/kernel_h" for i in range(3)]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(kernels)
    assert not np.allclose(values[0], values[1]) and not np.allclose(values[1], values[2])
    assert "model/embedding" in names and "model/softmax/weights" in names


def test_static_unroll_has_exactly_num_steps_cell_steps():
    cfg = tiny(num_steps=7, num_layers=2)
    graph, *_ = build_lm_graphs(cfg)
    for layer in range(2):
        pattern = re.compile(rf"^model/layer_{layer}/step_(\d+)/MatMul$")
        steps = sorted(int(m.group(1)) for op in graph.get_operations() if (m := pattern.match(op.name)))
        assert steps == list(range(7))


def test_lm_cost_is_summed_over_steps_and_averaged_over_batch():
    cfg = tiny()
    graph, controls, _, evaluation, *_ = build_lm_graphs(cfg)
    rng = np.random.RandomState(1)
    x = rng.randint(0, 11, (cfg.batch_size, cfg.num_steps))
    y = rng.randint(0, 11, (cfg.batch_size, cfg.num_steps))
    with graph.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        cost, probabilities = sess.run([evaluation.cost, evaluation.probabilities],
                                       {evaluation.inputs: x, evaluation.targets: y})
    # probabilities rows are time-major: row t * batch + b
    p_target = probabilities.reshape(cfg.num_steps, cfg.batch_size, -1)[
        np.arange(cfg.num_steps)[:, None], np.arange(cfg.batch_size)[None, :], y.T]
    np.testing.assert_allclose(cost, -np.log(p_target).sum() / cfg.batch_size, rtol=1e-5)


def test_dropout_masks_depend_on_seed_and_step_only():
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        dropped = rm.make_dropout(0.5, seed=3, global_step=step)(tf.ones([4, 50]), site=1)
        with tf.Session() as sess:
            a, b, c = (sess.run(dropped, {step: s}) for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) == {0.0, 2.0}


def test_masked_pooling_and_last_step_against_numpy():
    rng = np.random.RandomState(2)
    outputs = rng.randn(6, 3, 4).astype(np.float32)  # [T, B, H]
    lengths = np.array([6, 2, 4])
    mask = (np.arange(6)[:, None] < lengths[None, :]).astype(np.float32)[:, :, None]
    with tf.Graph().as_default(), tf.Session() as sess:
        mean, top, last = sess.run([rm.masked_mean(outputs, mask), rm.masked_max(outputs, mask),
                                    rm.output_at(outputs, tf.constant(lengths - 1, tf.int32))])
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(mean[b], outputs[:n, b].mean(0), rtol=1e-6)
        np.testing.assert_allclose(top[b], outputs[:n, b].max(0), rtol=1e-6)
        np.testing.assert_allclose(last[b], outputs[n - 1, b], rtol=1e-6)


@pytest.mark.parametrize("pooling,bidirectional", [("mean", False), ("last", False), ("max", False),
                                                   ("mean", True), ("last", True)])
def test_classifier_logits_do_not_change_with_extra_padding(pooling, bidirectional):
    cfg = tiny(pooling=pooling, bidirectional=bidirectional, num_layers=2)
    lengths = [5, 2, 3]
    rng = np.random.RandomState(3)
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg)
        short = rm.build_classifier(cfg, 20, 3, 5, controls)
        long = rm.build_classifier(cfg, 20, 3, 12, controls)
    ids = np.zeros((3, 12), np.int32)
    mask = np.zeros((3, 12), np.float32)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.randint(2, 20, n)
        mask[b, :n] = 1.0
    # Junk in the padded positions must not matter either: the mask alone says what is real.
    junk = ids.copy()
    junk[mask == 0] = rng.randint(2, 20, int((mask == 0).sum()))
    with graph.as_default(), tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        a = sess.run(short.logits, {short.inputs: ids[:, :5], short.mask: mask[:, :5]})
        b = sess.run(long.logits, {long.inputs: ids, long.mask: mask})
        c = sess.run(long.logits, {long.inputs: junk, long.mask: mask})
        # A sentence on its own gives the same logits as inside a batch.
        d = sess.run(long.logits, {long.inputs: ids[1:2], long.mask: mask[1:2]})
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b[1:2], d, rtol=1e-5, atol=1e-6)
    assert np.abs(a[0] - a[1]).max() > 1e-6  # different sentences do give different logits


def greedy_stepwise(sess, lm, prime, length):
    """Greedy tokens from the one-step language-model graph, one Session.run per token: the reference."""
    state = [(np.zeros((1, c.shape[-1]), np.float32),) * 2 for c, _ in lm.final_state]
    tokens = []
    for position in range(len(prime) - 1 + length):
        token = prime[position] if position < len(prime) else tokens[-1]
        feed = rm.feed_state({lm.inputs: [[token]]}, lm.initial_state, state)
        probabilities, state = sess.run([lm.probabilities, lm.final_state], feed)
        if position >= len(prime) - 1:
            tokens.append(int(np.argmax(probabilities[0])))
    return tokens


@pytest.mark.parametrize("vocab_size,jit,precision", [(5, True, "float32"), (5, False, "float32"),
                                                      (40, True, "float32"), (40, False, "float32"),
                                                      (5, True, "bfloat16"), (40, True, "bfloat16")])
def test_generation_loop_equals_the_one_step_graph(vocab_size, jit, precision):
    """Every generation fast path (input table when vocab <= embedding width, doubled rows under XLA, the plain
    loop) picks the same greedy tokens as the one-step graph, on random weights."""
    cfg = tiny(embedding_size=8, hidden_size=12, precision=precision)
    graph = tf.Graph()
    with graph.as_default():
        lm = rm.build_lm(cfg, vocab_size, 1, rm.build_controls(cfg))
        generator = rm.build_generator(cfg, vocab_size, jit=jit)
        rng = np.random.RandomState(vocab_size)
        # Random values in every weight, biases included (they start at zero).
        randomize = [tf.assign(v, rng.uniform(-1, 1, v.shape.as_list()).astype(np.float32))
                     for v in tf.trainable_variables()]
        with tf.Session() as sess:
            sess.run(randomize)
            got, want = [], []
            for prime in rng.randint(0, vocab_size, (6, 5)).tolist():  # greedy runs settle; many primes vary
                got.append(sess.run(generator.tokens, {generator.prime: prime, generator.length: 4,
                                                       generator.argmax: True}).tolist())
                want.append(greedy_stepwise(sess, lm, prime, 4))
    assert got == want
    assert len({token for tokens in want for token in tokens}) > 1


def test_sampling_draws_tokens_with_their_softmax_probabilities():
    """Gumbel-max over the hashed uniforms: token frequencies over many seeds match softmax(logits), and the
    uniforms themselves are flat."""
    probabilities = np.array([0.5, 0.25, 0.15, 0.1])
    with tf.Graph().as_default():
        seed = tf.placeholder(tf.int32, [2])
        token = rm.sample_logits(tf.constant(np.log(probabilities), tf.float32), tf.constant(0), tf.constant(False),
                                 seed)
        uniform = rm.hashed_uniform(20000, tf.constant([7, 3]))
        with tf.Session() as sess:
            draws = [sess.run(token, {seed: [s, t]}) for s in range(100) for t in range(40)]
            values = sess.run(uniform)
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(frequencies, probabilities, atol=0.025)  # 3 standard deviations for 4,000 draws
    assert 0 < values.min() and values.max() < 1
    histogram = np.histogram(values, bins=10, range=(0, 1))[0] / len(values)
    np.testing.assert_allclose(histogram, 0.1, atol=0.007)
