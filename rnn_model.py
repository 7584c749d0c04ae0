"""The graph: embedding -> dropout -> a stack of LSTM layers unrolled over num_steps -> a language-model softmax or a
pooled sentence classifier, plus the training op and the TensorBoard summaries.

TF1 graph mode on current TensorFlow: everything is built once by the functions below, the graph is finalized, and
train.py / sample.py only ever call Session.run. A model's variables are declared once, by declare_weights; the
training, evaluation, one-step and generation graphs are functions of that Weights tuple and declare none.

The LSTM cell, its hand-written gradient and the precision rule (every matmul's operands in compute_dtype) are
lstm.py's; this module stacks the layers (lstm_stack) and builds everything around them. The controls (global step,
learning rate, batch size, a language model's carried state) and the session config that runs the graphs are here
too.
"""
from typing import NamedTuple

import numpy as np

import lstm
from summaries import DETAIL, METRICS
from tf1 import tf


class Controls(NamedTuple):
    """Training-loop state that lives in the graph, each with its one pre-built assign op."""
    global_step: tf.Variable
    learning_rate: tf.Variable  # saved: a resumed run continues with the rate it had
    new_learning_rate: tf.Tensor  # placeholder fed to learning_rate_update
    learning_rate_update: tf.Operation
    batch_size: tf.Variable  # rows of the zero state; a local variable (per process, not saved)
    new_batch_size: tf.Tensor
    batch_size_update: tf.Operation
    carried_state: tf.Variable  # lm: [layer, (c, h), batch, hidden], the state after the last trained batch;
    # None for a classifier, whose batches carry no state


def build_controls(cfg, worker_device):
    """worker_device: where this process's own variables live (in a cluster, on the worker, not the parameter
    servers)."""
    with tf.variable_scope("controls"):
        global_step = tf.train.get_or_create_global_step()
        learning_rate = tf.get_variable("learning_rate", [], tf.float32, tf.constant_initializer(cfg.learning_rate),
                                        trainable=False)
        new_learning_rate = tf.placeholder(tf.float32, [], name="new_learning_rate")
        with tf.device(worker_device):
            # Each process runs batches of its own sizes, so the variable is local: never shared, never saved.
            batch_size = tf.get_variable("batch_size", [], tf.int32, tf.constant_initializer(cfg.batch_size),
                                         trainable=False, collections=[tf.GraphKeys.LOCAL_VARIABLES])
        new_batch_size = tf.placeholder(tf.int32, [], name="new_batch_size")
        carried_state = declare_carried_state(cfg) if cfg.task == "lm" else None
        return Controls(global_step, learning_rate, new_learning_rate, tf.assign(learning_rate, new_learning_rate),
                        batch_size, new_batch_size, tf.assign(batch_size, new_batch_size), carried_state)


def declare_carried_state(cfg):
    """A language model's state after its last trained batch, saved with every checkpoint so that a run resumed
    mid-epoch goes on from it: [layer, (c, h), batch, hidden]."""
    state_shape = [cfg.num_layers, 2, cfg.batch_size, cfg.hidden_size]
    return tf.get_variable("carried_state", state_shape, tf.float32, tf.zeros_initializer(), trainable=False)


class BatchSizeSetter:
    """Assigns Controls.batch_size before a batch whose size differs from the last one assigned (the last, smaller
    batch of a bucket or an evaluation; evaluation at eval_batch_size): the zero state is sized by the variable,
    so a batch of another size would not fit it."""

    def __init__(self, controls):
        self.controls = controls
        self.assigned = None  # the value this process last assigned; None until the first batch

    def __call__(self, sess, size):
        if size != self.assigned:
            sess.run(self.controls.batch_size_update, {self.controls.new_batch_size: size})
            self.assigned = size


def rows_checked(inputs, batch_size):
    """inputs [B, ...], checked when run to have as many rows as the batch-size variable says: a zero state of
    another size would broadcast against them into wrong results."""
    check = tf.debugging.assert_equal(tf.shape(inputs)[0], batch_size,
                                      message="the batch-size variable was not assigned for this batch")
    with tf.control_dependencies([check]):
        return tf.identity(inputs)


def zero_state(cfg, batch_size):
    """[(c, h)] per layer, each [batch, hidden]; a fed value overrides it (that is how state is carried)."""
    shape = tf.stack([batch_size, cfg.hidden_size])
    return [(tf.zeros(shape, name=f"c_{layer}"), tf.zeros(shape, name=f"h_{layer}"))
            for layer in range(cfg.num_layers)]


class Weights(NamedTuple):
    """Every trainable variable of a model, declared once by declare_weights; the training, evaluation, one-step and
    generation graphs all read these."""
    embedding: tf.Variable  # [vocab, embedding_dim]
    layers: tuple  # lstm.LayerWeights per layer, bottom first
    backward: lstm.LayerWeights  # classify --bidirectional: a backward layer over the embeddings; else None
    output_weights: tf.Variable  # lm: softmax [H, vocab]; classify: [H (2H bidirectional), classes]
    output_bias: tf.Variable  # [vocab] or [classes]
    initial_placeholders: dict  # weight name ("embedding", "layer_0/kernel_x", "softmax/bias") -> the placeholder
    # of its initial value, fed to the initializer: one for each of the initial weights declare_weights was given

    def variables(self):
        """The variables, for a Saver of the model alone."""
        return [v for v in tf.nest.flatten((self.embedding, self.layers, self.backward, self.output_weights,
                                            self.output_bias)) if v is not None]

    def initial_feed(self, initial_weights):
        """What the initializer is fed: the initial weights ({weight name: array}) by placeholder."""
        return {self.initial_placeholders[name]: value for name, value in initial_weights.items()}


def declare_weights(cfg, vocab_size, num_classes=0, initial_weights=()):
    """The model's variables under the `model` scope (their names are what checkpoints hold). The weights named in
    initial_weights ({weight name: array}, TaskData.initial_weights: pretrained vectors, a language model's layers
    and softmax) start from those values, fed to the initializer, instead of random ones."""
    placeholders = {}

    def variable(name, shape, initializer=None, trainable=True):
        if name not in initial_weights:
            return new_variable(name, shape, initializer, trainable)
        placeholders[name] = tf.placeholder(tf.float32, shape, name=name.replace("/", "_") + "_initial")
        return new_variable(name, None, placeholders[name], trainable)

    with tf.variable_scope("model", initializer=weight_initializer(cfg)):
        embedding = variable("embedding", [vocab_size, cfg.embedding_dim],
                             trainable=cfg.train_embeddings or not (cfg.embeddings or cfg.init_from or
                                                                    cfg.pretrain_epochs))
        layers, in_size = [], cfg.embedding_dim
        for layer in range(cfg.num_layers):
            layers.append(layer_weights(in_size, cfg.hidden_size, f"layer_{layer}", variable))
            in_size = cfg.hidden_size
        backward = None
        if cfg.task == "classify" and cfg.bidirectional:
            backward = layer_weights(cfg.embedding_dim, cfg.hidden_size, "layer_backward", variable)
        if cfg.task == "lm":
            output_weights, output_bias = dense_weights(cfg.hidden_size, vocab_size, "softmax", variable)
        else:
            pooled_size = cfg.hidden_size * (2 if backward else 1)
            output_weights, output_bias = dense_weights(pooled_size, num_classes, "classifier")
    return Weights(embedding, tuple(layers), backward, output_weights, output_bias, placeholders)


def weight_initializer(cfg):
    """The weights' initializer (biases start at zero): the PTB tutorial's uniform [-init_scale, init_scale], or
    None for get_variable's default, Glorot uniform."""
    if cfg.initializer == "uniform":
        return tf.random_uniform_initializer(-cfg.init_scale, cfg.init_scale)
    return None


def new_variable(name, shape, initializer=None, trainable=True):
    """A variable of the current scope named by the last part of `name` ("layer_0/bias" -> bias)."""
    return tf.get_variable(name.split("/")[-1], shape, initializer=initializer, trainable=trainable)


def layer_weights(in_size, hidden_size, scope, variable=new_variable):
    with tf.variable_scope(scope):
        return lstm.LayerWeights(variable(f"{scope}/kernel_x", [in_size, 4 * hidden_size]),
                            variable(f"{scope}/kernel_h", [hidden_size, 4 * hidden_size]),
                            variable(f"{scope}/bias", [4 * hidden_size], initializer=tf.zeros_initializer()))


def dense_weights(in_size, units, scope, variable=new_variable):
    with tf.variable_scope(scope):
        return (variable(f"{scope}/weights", [in_size, units]),
                variable(f"{scope}/bias", [units], initializer=tf.zeros_initializer()))


def make_dropout(keep_prob, seed, global_step):
    """Dropout whose mask is a pure function of (seed, global step, site): a resumed run draws the same masks."""
    def dropout(x, site):
        if keep_prob >= 1.0:
            return x
        step_seed = tf.stack([tf.cast(global_step, tf.int64), tf.constant(seed * 1000 + site, tf.int64)])
        keep = tf.random.stateless_uniform(tf.shape(x), seed=step_seed) < keep_prob
        return x * tf.cast(keep, x.dtype) / keep_prob
    return dropout


def drop_words(ids, rate, seed, global_step):
    """Word dropout for a classifier's ids [B, T] (its vocabulary: <pad> 0, <unk> 1): each real token becomes <unk>
    with probability `rate`, so that the model cannot lean on any single word. The draw is a pure function of
    (seed, global step)."""
    step_seed = tf.stack([tf.cast(global_step, tf.int64), tf.constant(seed * 1000 + 200, tf.int64)])
    dropped = tf.logical_and(tf.random.stateless_uniform(tf.shape(ids), seed=step_seed) < rate, ids > 1)
    return tf.where(dropped, tf.ones_like(ids), ids)


def no_dropout(x, site):
    """The dropout of a graph that only infers."""
    return x


def lstm_stack(inputs, initial_state, cfg, layers, dropout):
    """The LSTM layers, each with its own weights (never the `[cell] * n` sharing bug), dropout between.

    inputs: [T, B, E]. Returns the top outputs [T, B, H] (after dropout) and the final state [(c, h)] per layer.
    """
    layer_inputs, final_state = inputs, []
    for layer, weights in enumerate(layers):
        with tf.name_scope(f"layer_{layer}"):
            outputs, state = lstm.lstm_layer(layer_inputs, initial_state[layer], weights, cfg.forget_bias,
                                             lstm.compute_dtype(cfg))
        layer_inputs = dropout(outputs, site=layer + 1)
        final_state.append(state)
    return layer_inputs, final_state


def embed(ids, embedding):
    """ids [B, T] -> embedded [T, B, E], time-major so that unstacking over time slices contiguous memory."""
    return tf.nn.embedding_lookup(embedding, tf.transpose(ids))


def softmax_loss(inputs, weights, bias, labels, dtype=tf.float32, jit=False):
    """A dense layer and the sparse softmax cross-entropy of its logits: inputs [N, in], labels [N] ->
    (per-row losses [N], logits [N, units]), float32.

    For a word model the [N, V] logits are the largest tensors of the step (700 x 10,000 for PTB small), and
    TensorFlow's fused loss kernel plus the bias add, bias gradient and casts around it take longer than the
    matmuls. With jit the forward pass is one XLA fusion that reads the matmul's output once and keeps only each
    row's log-sum-exp; the backward pass is another that turns it into the logits' gradient
    (softmax - one_hot, scaled per row) and the bias gradient, writing the former once, in the matmul dtype.
    """
    if not jit:
        logits = lstm.matmul(inputs, weights, dtype) + bias
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), logits
    forward = tf.function(softmax_loss_forward, jit_compile=True, autograph=False)
    backward = tf.function(softmax_loss_backward, jit_compile=True, autograph=False)

    @tf.custom_gradient
    def losses(inputs, weights, bias):
        inputs, weights_in_dtype = tf.cast(inputs, dtype), tf.cast(weights, dtype)  # cast once for both passes
        unbiased = tf.matmul(inputs, weights_in_dtype)  # [N, V] in dtype, bias not added
        row_losses, log_sum_exp = forward(unbiased, bias, labels)

        def gradient(d_losses, _):
            d_logits, d_bias = backward(unbiased, bias, labels, log_sum_exp, d_losses)  # d_logits in dtype
            d_inputs = lstm.matmul(d_logits, weights_in_dtype, dtype, transpose_b=True)
            d_weights = lstm.matmul(inputs, d_logits, dtype, transpose_a=True)
            return d_inputs, d_weights, d_bias
        return (row_losses, log_sum_exp), gradient

    logits = lstm.matmul(inputs, weights, dtype) + bias  # computed only when fetched
    return losses(inputs, weights, bias)[0], logits


def softmax_loss_forward(unbiased, bias, labels):
    """-log softmax(logits)[label] of each row, and each row's log-sum-exp."""
    logits = tf.cast(unbiased, tf.float32) + bias
    log_sum_exp = tf.reduce_logsumexp(logits, 1)
    return log_sum_exp - tf.gather(logits, labels[:, None], batch_dims=1)[:, 0], log_sum_exp


def softmax_loss_backward(unbiased, bias, labels, log_sum_exp, d_losses):
    """The gradient of the losses with respect to the logits, (softmax - one_hot) * d_losses per row, in the
    matmul dtype, and with respect to the bias."""
    logits = tf.cast(unbiased, tf.float32) + bias
    d_logits = (tf.exp(logits - log_sum_exp[:, None]) - tf.one_hot(labels, tf.shape(bias)[0])) * d_losses[:, None]
    return tf.cast(d_logits, unbiased.dtype), tf.reduce_sum(d_logits, 0)


def dense(inputs, weights, bias, dtype=tf.float32):
    return lstm.matmul(inputs, weights, dtype) + bias


OPTIMIZERS = {"sgd": tf.train.GradientDescentOptimizer, "adam": tf.train.AdamOptimizer,
              "rmsprop": tf.train.RMSPropOptimizer}  # config.OPTIMIZER_COPIES declares the same names


def make_optimizer(cfg, learning_rate):
    return OPTIMIZERS[cfg.optimizer](learning_rate)


def scalar_summary(tag, value):
    """A scalar summary whose tag is exactly `tag`: tf.summary.scalar would make it unique per graph ("loss_1"),
    but the train graphs of every bucket and the validation writer must all log under the same tag."""
    return tf.raw_ops.ScalarSummary(tags=tag, values=value)


def histogram_summary(tag, values):
    return tf.raw_ops.HistogramSummary(tag=tag, values=values)


class TrainOp(NamedTuple):
    train_op: tf.Operation
    step: tf.Tensor  # the global step read after train_op has run (a fetch of the variable beside it is unordered)
    gradient_norm: tf.Tensor  # global norm before clipping
    summaries: list  # gradient histograms and sparsity per variable


def build_train_op(cost, controls, cfg, optimizer):
    """Gradients clipped by their global norm, then one optimizer step that also increments the global step."""
    variables = tf.trainable_variables()
    if cfg.weight_decay:  # L2 on the matrices (LSTM kernels, output weights); embedding rows and biases are free
        matrices = [v for v in variables if v.op.name.endswith(("kernel_x", "kernel_h", "weights"))]
        cost = cost + cfg.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in matrices])
    gradients = tf.gradients(cost, variables)
    clipped, gradient_norm = tf.clip_by_global_norm(gradients, cfg.max_grad_norm)
    train_op = optimizer.apply_gradients(zip(clipped, variables), global_step=controls.global_step)
    with tf.control_dependencies([train_op]):
        step = tf.identity(controls.global_step, name="step_after_update")
    summaries = []
    for variable, gradient in zip(variables, gradients):
        values = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
        name = variable.op.name.replace("model/", "")
        # The histogram op refuses NaN and inf; a diverging step is the train loop's to report, not the summary's.
        finite = tf.boolean_mask(tf.reshape(values, [-1]), tf.math.is_finite(tf.reshape(values, [-1])))
        summaries.append(histogram_summary(f"{DETAIL}/gradients/{name}", finite))
        # Over the whole gradient: an embedding's IndexedSlices hold only the rows a batch touched, so the zero
        # fraction of their values says nothing; densified, it is (about) the fraction of untouched rows.
        summaries.append(scalar_summary(f"{DETAIL}/gradient_sparsity/{name}",
                                        tf.nn.zero_fraction(tf.convert_to_tensor(gradient))))
    return TrainOp(train_op, step, gradient_norm, summaries)


class LMGraph(NamedTuple):
    inputs: tf.Tensor  # [batch, num_steps] int32
    targets: tf.Tensor  # [batch, num_steps] int32
    initial_state: list  # [(c, h)] per layer, [batch, hidden] each: zeros sized by Controls.batch_size, or fed
    final_state: list
    cost: tf.Tensor  # summed over steps, averaged over the batch (nats)
    logits: tf.Tensor  # [batch * num_steps, vocab], time-major rows
    train: TrainOp  # None unless built for training
    summary: tf.Tensor  # merged step summaries, None unless built for training
    save_state: tf.Operation  # training: writes final_state into Controls.carried_state (saved with the model)


def build_lm(cfg, weights, controls, num_steps, optimizer=None):
    """A language-model graph over num_steps; with an optimizer it is the training graph (dropout on)."""
    training = optimizer is not None
    with tf.name_scope("model"):  # the forward ops, grouped as one node in TensorBoard's graph
        inputs = tf.placeholder(tf.int32, [None, num_steps], name="inputs")
        targets = tf.placeholder(tf.int32, [None, num_steps], name="targets")
        initial_state = zero_state(cfg, controls.batch_size)
        dropout = make_dropout(cfg.keep_prob if training else 1.0, cfg.seed, controls.global_step)
        ids = rows_checked(inputs, controls.batch_size)
        embedded = dropout(embed(ids, weights.embedding), site=0)  # [T, B, E]
        outputs, final_state = lstm_stack(embedded, initial_state, cfg, weights.layers, dropout)  # [T, B, H]
        labels = tf.reshape(tf.transpose(targets), [-1])  # time-major like the outputs
        # token_losses [T*B], logits [T*B, V]
        token_losses, logits = softmax_loss(tf.reshape(outputs, [-1, cfg.hidden_size]), weights.output_weights,
                                            weights.output_bias, labels, lstm.compute_dtype(cfg), cfg.xla_loss)
        batch = tf.cast(tf.shape(inputs)[0], tf.float32)
        cost = tf.reduce_sum(token_losses) / batch  # as the PTB tutorial: per-token loss is cost / num_steps
    train, summary, save_state = None, None, None
    if training:
        train = build_train_op(cost, controls, cfg, optimizer)
        loss = cost / num_steps
        summary = tf.summary.merge([scalar_summary(f"{METRICS}/loss", loss),
                                    scalar_summary(f"{METRICS}/perplexity", tf.exp(loss)),
                                    scalar_summary(f"{METRICS}/learning_rate", controls.learning_rate),
                                    scalar_summary(f"{DETAIL}/gradient_norm", train.gradient_norm)] + train.summaries)
        save_state = tf.assign(controls.carried_state, tf.stack([tf.stack(state) for state in final_state])).op
    return LMGraph(inputs, targets, initial_state, final_state, cost, logits, train, summary, save_state)


class Scorer(NamedTuple):
    ids: tf.Tensor  # [B, T] int32: each text's token ids after its start token, padded with anything
    lengths: tf.Tensor  # [B] int32: real ids per row, the start token included
    log_likelihood: tf.Tensor  # [B] nats: the sum of log p(ids[t] | ids[:t]) over 1 <= t < length
    tokens: tf.Tensor  # [B] int32: the tokens scored, length - 1
    initial_state: tf.Tensor  # [layers, 2 (c, h), B, hidden], default zeros: a text scored on from an earlier piece
    final_state: tf.Tensor  # [layers, 2, B, hidden]: the state after the last piece (exact where no row was padded)


def build_scorer(cfg, weights, ids, lengths):
    """The log-likelihood of whole texts under a language model, computed as its evaluation computes it: num_steps
    tokens at a time through the same unrolled stack and loss, the state carried from one piece to the next, in
    a tf.while_loop over the pieces. A long text is scored a part at a time (sample.py), each part's initial state
    the previous one's final state."""
    num_steps, hidden_size = cfg.num_steps, cfg.hidden_size
    tokens = tf.maximum(lengths - 1, 0)
    num_pieces = (tf.reduce_max(tf.concat([tokens, [0]], 0)) + num_steps - 1) // num_steps
    width = num_pieces * num_steps + 1
    padded = tf.pad(ids, [[0, 0], [0, tf.maximum(width - tf.shape(ids)[1], 0)]])[:, :width]  # [B, width]
    scored = tf.cast(tf.range(1, width)[None] < lengths[:, None], tf.float32)  # [B, width - 1]: targets to count
    zeros = tf.zeros(tf.stack([tf.shape(ids)[0], hidden_size]))
    initial_state = tf.placeholder_with_default(tf.zeros(tf.stack([cfg.num_layers, 2, tf.shape(ids)[0], hidden_size])),
                                                [cfg.num_layers, 2, None, hidden_size], name="initial_state")

    def body(k, state, total):
        begin = k * num_steps
        inputs = tf.reshape(padded[:, begin:begin + num_steps], [-1, num_steps])  # [B, num_steps]: a static width
        targets = tf.transpose(padded[:, begin + 1:begin + num_steps + 1])  # [num_steps, B], time-major
        outputs, state = lstm_stack(embed(inputs, weights.embedding), state, cfg, weights.layers, no_dropout)
        losses, _ = softmax_loss(tf.reshape(outputs, [-1, hidden_size]), weights.output_weights,
                                 weights.output_bias, tf.reshape(targets, [-1]), lstm.compute_dtype(cfg))
        weight = tf.transpose(scored[:, begin:begin + num_steps])  # [num_steps, B]
        return k + 1, state, total - tf.reduce_sum(tf.reshape(losses, [num_steps, -1]) * weight, 0)

    state = [(initial_state[layer, 0], initial_state[layer, 1]) for layer in range(cfg.num_layers)]
    invariants = [tf.TensorShape([]), [(tf.TensorShape([None, hidden_size]),) * 2] * cfg.num_layers,
                  tf.TensorShape([None])]
    _, state, log_likelihood = tf.while_loop(lambda k, *_: k < num_pieces, body, [0, state, zeros[:, 0]],
                                             shape_invariants=invariants)
    final_state = tf.stack([tf.stack(layer_state) for layer_state in state])
    return Scorer(ids, lengths, log_likelihood, tokens, initial_state, final_state)


def masked_mean(outputs, mask):
    """outputs [T, B, H], mask [T, B, 1] -> [B, H]: the mean over real steps only (a padded step adds nothing)."""
    return tf.reduce_sum(outputs * mask, 0) / tf.maximum(tf.reduce_sum(mask, 0), 1.0)


def masked_max(outputs, mask):
    real = tf.broadcast_to(mask > 0, tf.shape(outputs))
    pooled = tf.reduce_max(tf.where(real, outputs, tf.fill(tf.shape(outputs), -np.inf)), 0)
    return tf.where(tf.is_inf(pooled), tf.zeros_like(pooled), pooled)  # an empty sentence pools to zeros


def output_at(outputs, steps):
    """outputs [T, B, H], steps [B] int32 -> [B, H]: each sentence's output at its own step."""
    batch_index = tf.range(tf.shape(steps)[0])
    return tf.gather_nd(outputs, tf.stack([steps, batch_index], axis=1))


class ClassifierGraph(NamedTuple):
    inputs: tf.Tensor  # [batch, num_steps] int32, 0 = <pad>
    mask: tf.Tensor  # [batch, num_steps] float32, 1.0 on real tokens
    labels: tf.Tensor  # [batch] int32
    logits: tf.Tensor  # [batch, classes]
    loss: tf.Tensor  # mean cross-entropy over the batch
    correct: tf.Tensor  # number of right predictions in the batch
    train: TrainOp
    summary: tf.Tensor


def build_classifier(cfg, weights, controls, num_steps, optimizer=None):
    """A sentence classifier over padded sentences of num_steps tokens; with an optimizer, the training graph.
    The zero state is sized by Controls.batch_size, so every batch runs after the batch size is assigned."""
    training = optimizer is not None
    with tf.name_scope("model"):  # the forward ops, grouped as one node in TensorBoard's graph
        inputs = tf.placeholder(tf.int32, [None, num_steps], name="inputs")
        mask = tf.placeholder(tf.float32, [None, num_steps], name="mask")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        dropout = make_dropout(cfg.keep_prob if training else 1.0, cfg.seed, controls.global_step)
        ids = rows_checked(inputs, controls.batch_size)
        if training and cfg.word_dropout:
            ids = drop_words(ids, cfg.word_dropout, cfg.seed, controls.global_step)
        logits = classifier_logits(cfg, weights, ids, mask, zero_state(cfg, controls.batch_size), dropout)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.int32))
    train, summary = None, None
    if training:
        train = build_train_op(loss, controls, cfg, optimizer)
        accuracy = tf.cast(correct, tf.float32) / tf.cast(tf.shape(inputs)[0], tf.float32)
        summary = tf.summary.merge([scalar_summary(f"{METRICS}/loss", loss),
                                    scalar_summary(f"{METRICS}/accuracy", accuracy),
                                    scalar_summary(f"{METRICS}/learning_rate", controls.learning_rate),
                                    scalar_summary(f"{DETAIL}/gradient_norm", train.gradient_norm)] + train.summaries)
    return ClassifierGraph(inputs, mask, labels, logits, loss, correct, train, summary)


def classifier_logits(cfg, weights, ids, mask, initial_state, dropout):
    """The classifier's forward pass: ids [B, T] int32 (0 = <pad>), mask [B, T] float32 (1.0 on real tokens) and
    a zero state sized for B -> logits [B, classes]. Used by the training and evaluation graphs and the export."""
    lengths = tf.cast(tf.reduce_sum(mask, 1), tf.int32)  # [B]
    mask_tm = tf.expand_dims(tf.transpose(mask), 2)  # [T, B, 1]
    dtype = lstm.compute_dtype(cfg)
    embedded = dropout(embed(ids, weights.embedding), site=0)  # [T, B, E]
    outputs, _ = lstm_stack(embedded, initial_state, cfg, weights.layers, dropout)  # [T, B, H]
    last_step = tf.maximum(lengths - 1, 0)
    pooled = pool(outputs, mask_tm, last_step, cfg.pooling)  # [B, H]
    if weights.backward:
        # A backward layer over the embeddings: reverse_sequence flips only the real tokens, so the backward
        # pass starts at each sentence's last real token and padding stays at the end.
        reversed_input = tf.reverse_sequence(embedded, lengths, seq_axis=0, batch_axis=1)
        with tf.name_scope("layer_backward"):
            backward, _ = lstm.lstm_layer(reversed_input, initial_state[0], weights.backward, cfg.forget_bias,
                                          dtype)
        backward = dropout(tf.reverse_sequence(backward, lengths, seq_axis=0, batch_axis=1), site=99)
        # The backward summary of a whole sentence sits at its first step.
        pooled_backward = pool(backward, mask_tm, tf.zeros_like(last_step), cfg.pooling)
        pooled = tf.concat([pooled, pooled_backward], axis=1)  # [B, 2H]
    pooled = dropout(pooled, site=100)
    logits = dense(pooled, weights.output_weights, weights.output_bias, dtype)  # [B, C]
    return logits


def pool(outputs, mask, last_step, pooling):
    """[T, B, H] -> [B, H] over real steps only: masked mean, masked max, or the output at last_step."""
    return {"mean": lambda: masked_mean(outputs, mask), "max": lambda: masked_max(outputs, mask),
            "last": lambda: output_at(outputs, last_step)}[pooling]()


def session_config(cfg):
    config = tf.ConfigProto(allow_soft_placement=True, intra_op_parallelism_threads=cfg.intra_op_threads,
                            inter_op_parallelism_threads=cfg.inter_op_threads)
    config.gpu_options.allow_growth = True
    if cfg.xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    return config


def gpu_available():
    return bool(tf.config.experimental.list_physical_devices("GPU"))


def feed_state(feed, initial_state, state):
    """Adds the numpy state (list of (c, h), or a [layer, 2, batch, hidden] array) to a feed dict."""
    for (c_tensor, h_tensor), (c, h) in zip(initial_state, state):
        feed[c_tensor] = c
        feed[h_tensor] = h
    return feed
