"""Graph-level tests: the fused softmax loss, one declaration of the weights, unroll length, the LM cost, dropout,
pooling, padding, weight decay and initial values."""
import dataclasses
import re

import numpy as np
import pytest

import config
import rnn_model as rm
from tf1 import tf


def tiny(**overrides):
    values = dict(num_layers=2, hidden_size=8, embedding_size=6, num_steps=5, batch_size=3, keep_prob=1.0,
                  forget_bias=1.0, init_scale=0.5)
    values.update(overrides)
    return dataclasses.replace(config.Config(), **values)


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
            weights, bias = rm.dense_weights(in_size, vocab, "softmax")
        fused, _ = rm.softmax_loss(inputs, weights, bias, labels, dtype, jit=True)
        plain, _ = rm.softmax_loss(inputs, weights, bias, labels, tf.float32, jit=False)
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
        controls = rm.build_controls(cfg, None)
        weights = rm.declare_weights(cfg, vocab_size)
        train = rm.build_lm(cfg, weights, controls, cfg.num_steps, rm.make_optimizer(cfg, controls.learning_rate))
        evaluation = rm.build_lm(cfg, weights, controls, cfg.num_steps)
    return graph, controls, train, evaluation


def initialize(sess):
    sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])


def variables_read_by(tensors):
    """Names of the variables that the given tensors are computed from (walking the graph's inputs back)."""
    seen, stack, found = set(), [t.op if isinstance(t, tf.Tensor) else t for t in tensors], set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in ("VariableV2", "VarHandleOp"):
            found.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


@pytest.mark.parametrize("task", ["lm", "classify"])
def test_every_graph_of_a_model_reads_the_one_declaration_of_its_weights(task):
    """Training, evaluation, the decoder with and without XLA and the epoch's sample (lm), or every bucket's training
    and evaluation graph (classify), read exactly the variables declare_weights declared, and nothing declares more."""
    import data_handler
    import tasks
    cfg = tiny(task=task, num_layers=3, bidirectional=task == "classify", num_steps=8)
    vocab = data_handler.Vocab(["<pad>", "<unk>"] + [f"w{i}" for i in range(20)])
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        optimizer = rm.make_optimizer(cfg, controls.learning_rate)
        task_graphs = tasks.build(cfg, data_handler.TaskData(vocab, ["a", "b"], {}, {}), controls, optimizer)
        declared = {v.op.name for v in tf.nest.flatten(task_graphs.weights) if v is not None}
        if task == "lm":
            import decoder
            plain, xla = (decoder.build(cfg, task_graphs.weights, vocab, jit=jit) for jit in (False, True))
            outputs = {"train": [task_graphs.train_model.cost], "eval": [task_graphs.eval_model.cost],
                       "decoder": [plain.tokens], "decoder (XLA)": [xla.tokens],
                       "TensorBoard sample": [task_graphs.sample_text]}
        else:
            outputs = {f"{kind} {width}": [models[width].logits] for kind, models in
                       (("train", task_graphs.train_models), ("eval", task_graphs.eval_models)) for width in models}
        model_variables = {v.op.name for v in tf.global_variables() if v.op.name.startswith("model/")}
    assert len(outputs) >= 4
    expected = 1 + 3 * 3 + 2 + (3 if task == "classify" else 0)  # embedding, 3 layers, output (+ backward layer)
    assert len(declared) == expected and model_variables == declared
    for name, tensors in outputs.items():
        assert variables_read_by(tensors) & model_variables == declared, name


def test_static_unroll_has_exactly_num_steps_cell_steps():
    cfg = tiny(num_steps=7, num_layers=2)
    graph, *_ = build_lm_graphs(cfg)
    pattern = re.compile(r"^(model(?:_\d+)?)/(layer_\d)/(?:[^/]+/)*step_(\d+)/MatMul$")  # forward loops only
    steps = {}
    for op in graph.get_operations():
        if match := pattern.match(op.name):
            steps.setdefault(match.group(1, 2), []).append(int(match.group(3)))
    assert len(steps) == 4  # 2 layers in each of the training and evaluation graphs
    assert all(sorted(found) == list(range(7)) for found in steps.values()), steps


def test_lm_cost_is_summed_over_steps_and_averaged_over_batch():
    cfg = tiny()
    graph, controls, _, evaluation = build_lm_graphs(cfg)
    rng = np.random.RandomState(1)
    x = rng.randint(0, 11, (cfg.batch_size, cfg.num_steps))
    y = rng.randint(0, 11, (cfg.batch_size, cfg.num_steps))
    with graph.as_default(), tf.Session() as sess:
        initialize(sess)
        cost, logits = sess.run([evaluation.cost, evaluation.logits], {evaluation.inputs: x, evaluation.targets: y})
    shifted = logits - logits.max(1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))  # [T*B, V]
    # rows are time-major: row t * batch + b
    log_p_target = log_probabilities.reshape(cfg.num_steps, cfg.batch_size, -1)[
        np.arange(cfg.num_steps)[:, None], np.arange(cfg.batch_size)[None, :], y.T]
    np.testing.assert_allclose(cost, -log_p_target.sum() / cfg.batch_size, rtol=1e-5)


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
    cfg = dataclasses.replace(cfg, task="classify")
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        weights = rm.declare_weights(cfg, 20, 3)
        short = rm.build_classifier(cfg, weights, controls, 5)
        long = rm.build_classifier(cfg, weights, controls, 12)
    ids = np.zeros((3, 12), np.int32)
    mask = np.zeros((3, 12), np.float32)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.randint(2, 20, n)
        mask[b, :n] = 1.0
    # Junk in the padded positions must not matter either: the mask alone says what is real.
    junk = ids.copy()
    junk[mask == 0] = rng.randint(2, 20, int((mask == 0).sum()))
    with graph.as_default(), tf.Session() as sess:
        initialize(sess)
        set_batch_size = rm.BatchSizeSetter(controls)
        set_batch_size(sess, 3)
        a = sess.run(short.logits, {short.inputs: ids[:, :5], short.mask: mask[:, :5]})
        b = sess.run(long.logits, {long.inputs: ids, long.mask: mask})
        c = sess.run(long.logits, {long.inputs: junk, long.mask: mask})
        # A sentence on its own gives the same logits as inside a batch, once the batch size is assigned.
        with pytest.raises(tf.errors.InvalidArgumentError):  # the zero state still has 3 rows
            sess.run(long.logits, {long.inputs: ids[1:2], long.mask: mask[1:2]})
        set_batch_size(sess, 1)
        d = sess.run(long.logits, {long.inputs: ids[1:2], long.mask: mask[1:2]})
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b[1:2], d, rtol=1e-5, atol=1e-6)
    assert np.abs(a[0] - a[1]).max() > 1e-6  # different sentences do give different logits


def test_word_dropout_turns_real_tokens_into_unk_at_its_rate():
    rng = np.random.RandomState(0)
    ids = rng.randint(2, 50, (100, 60)).astype(np.int32)
    ids[:, 40:] = 0  # padding
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        dropped = rm.drop_words(tf.constant(ids), 0.3, seed=7, global_step=step)
        with tf.Session() as sess:
            first, again, next_step = (sess.run(dropped, {step: s}) for s in (5, 5, 6))
    np.testing.assert_array_equal(first, again)  # a pure function of (seed, step): a resumed run draws the same
    assert not np.array_equal(first, next_step)
    changed = first != ids
    assert np.all(first[changed] == 1) and not changed[:, 40:].any()
    assert abs(changed[:, :40].mean() - 0.3) < 4 * (0.3 * 0.7 / 4000) ** 0.5  # 4,000 real tokens, 4 sigma


def test_weight_decay_pulls_the_matrices_alone_towards_zero():
    """One SGD step (rate 1, no clipping) with --weight_decay 0.01 moves every LSTM kernel and the output weights
    by -0.01 x their value more than without; the embedding and the biases move the same."""
    import data_handler
    import tasks
    vocab = data_handler.Vocab(["<pad>", "<unk>"] + [f"w{i}" for i in range(10)])
    train = ([np.array([2, 3, 4, 5], np.int32), np.array([6, 7, 2], np.int32), np.array([8, 9], np.int32)],
             np.array([0, 1, 0], np.int32))
    moved, started = {}, {}
    for decay in (0.0, 0.01):
        cfg = tiny(task="classify", optimizer="sgd", learning_rate=1.0, max_grad_norm=1e9, weight_decay=decay,
                   num_steps=4, bucket=False)
        with tf.Graph().as_default():
            tf.set_random_seed(1)
            controls = rm.build_controls(cfg, None)
            task = tasks.Classifier(cfg, data_handler.TaskData(vocab, ["a", "b"], {"train": train}, {}), controls,
                                    rm.make_optimizer(cfg, controls.learning_rate))
            weights = {v.op.name: v for v in task.weights.variables()}
            with tf.Session() as sess:
                sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
                started[decay] = sess.run(weights)
                task.train_step(sess, next(iter(task.train_batches(0, 0))), False)
                moved[decay] = {name: value - started[decay][name] for name, value in sess.run(weights).items()}
    decayed = [name for name in moved[0.0] if name.endswith(("kernel_x", "kernel_h", "weights"))]
    assert len(decayed) == 2 * 2 + 1
    for name in moved[0.0]:
        np.testing.assert_array_equal(started[0.0][name], started[0.01][name])
        expected = moved[0.0][name] - (0.01 * started[0.0][name] if name in decayed else 0)
        np.testing.assert_allclose(moved[0.01][name], expected, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("initializer,init_scale", [("uniform", 0.05), ("uniform", 0.3), ("glorot", 0.05)])
def test_initial_weights_follow_the_initializer_key(initializer, init_scale):
    """Every weight matrix starts from the key's distribution: uniform in [-init_scale, init_scale] (the PTB
    tutorial's), or Glorot uniform in +-sqrt(6 / (fan_in + fan_out)); biases start at zero either way. Each matrix
    has thousands of entries, so its range and standard deviation are tight estimates of the distribution's."""
    cfg = tiny(initializer=initializer, init_scale=init_scale, hidden_size=64, embedding_size=48)
    with tf.Graph().as_default():
        tf.set_random_seed(3)
        weights = rm.declare_weights(cfg, vocab_size=500)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = dict(zip([v.op.name for v in weights.variables()], sess.run(weights.variables())))
    matrices = {name: value for name, value in values.items() if value.ndim == 2}
    assert len(matrices) == 2 + 2 * cfg.num_layers  # embedding, softmax, kernel_x and kernel_h per layer
    for name, value in matrices.items():
        bound = init_scale if initializer == "uniform" else np.sqrt(6.0 / sum(value.shape))
        assert np.abs(value).max() <= bound * (1 + 1e-6), name
        assert np.abs(value).max() > 0.99 * bound, name  # the whole range is used
        assert abs(value.std() - bound / np.sqrt(3)) < 0.05 * bound / np.sqrt(3), name
        assert abs(value.mean()) < 0.05 * bound, name
    for name, value in values.items():
        if value.ndim == 1:
            assert not value.any(), name


def classifier_variables(cfg, old_checkpoint_layout=False):
    """(graph, {name: variable}) of a classifier's graph; old_checkpoint_layout adds the language model's
    controls/carried_state that classifiers declared (and saved) before it became the language model's alone."""
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        rm.build_classifier(cfg, rm.declare_weights(cfg, 20, 3), controls, cfg.num_steps)
        if old_checkpoint_layout:
            with tf.variable_scope("controls"):
                rm.declare_carried_state(cfg)
    return graph, {v.op.name: v for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}


def test_only_a_language_model_carries_state_and_old_classifier_checkpoints_still_restore(tmp_path):
    """A classifier has no controls/carried_state; a checkpoint written when it had one restores all the same (a
    Saver restores the variables of its own graph and ignores the rest), with every weight as saved."""
    import checkpoints
    lm_graph, _, _, _ = build_lm_graphs(tiny())
    assert "controls/carried_state" in {v.op.name for v in lm_graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}
    cfg = tiny(task="classify")
    old_graph, old_variables = classifier_variables(cfg, old_checkpoint_layout=True)
    with old_graph.as_default(), tf.Session() as sess:
        initialize(sess)
        saved = sess.run(old_variables)
        prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    assert "controls/carried_state" in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    graph, variables = classifier_variables(cfg)
    assert "controls/carried_state" not in variables and set(variables) == set(old_variables) - {
        "controls/carried_state"}
    with graph.as_default(), tf.Session() as sess:
        checkpoints.restore(sess, tf.train.Saver(), prefix)  # as training resumes and sample.py restores
        restored = sess.run(variables)
    for name, value in restored.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)


def test_every_declared_optimizer_is_built_and_sized():
    """config.py declares the optimizers with what the memory estimate needs; each one builds here, and no other."""
    assert set(rm.OPTIMIZERS) == set(config.KEYS["optimizer"].choices) == set(config.OPTIMIZER_COPIES)
    with tf.Graph().as_default():
        built = {type(rm.make_optimizer(tiny(optimizer=name), 0.1)) for name in rm.OPTIMIZERS}
    assert len(built) == len(rm.OPTIMIZERS)
