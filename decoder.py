"""Text out of a language model, written once: one in-graph loop serves sample.py, the TensorBoard sample written
after each validation, and the SavedModel's `generate` signature.

    prime text -> tokens, as the training data was read (graph_text), after the start token that every text of the
    corpus follows -> through the LSTM stack -> a loop of steps: the stack's logits for every row, then the
    strategy's choice (sampling with temperature, top-k and top-p, greedy, or a beam search) -> tokens -> text
    (graph ops: characters join; words join with spaces, <eos> ends a line).

A Session.run runs one piece of at most PIECE steps and hands back everything the next piece needs (the carry: the
LSTM state, each row's last token, the step count, scores, lengths, stopped rows and recent tokens), so sample.py
streams text as it comes, memory stays bounded for any length, Ctrl-C answers between pieces, and under XLA one
compilation serves every length. Token t of the sample of seed s is drawn with the stateless seed pair (s, t), so
pieces of any size join to the same text. The SavedModel runs the same pieces in a tf.while_loop.

Rows: one per seed when sampling (each the text its seed gives alone), beam_width when searching beams. A row stops
after the tokens of a stop text (beams of a word model also at <eos>) and emits NO_TOKEN from then on.
"""
from typing import NamedTuple

import numpy as np

import graph_text
import lstm
from tf1 import tf

where = tf.where_v2  # elementwise with broadcasting (compat.v1's tf.where is not)
PIECE = 256  # steps per Session.run: a fraction of a second on a CPU, so output streams and Ctrl-C answers
NO_TOKEN = -1  # in a piece's tokens: the row had stopped


class Settings(NamedTuple):
    """How to decode, as tensors: placeholders with defaults (sample.py) or a SavedModel's inputs."""
    prime: tf.Tensor  # [] string: the text to continue ("" = from the start token alone)
    seeds: tf.Tensor  # [N] int32: sampling: a row per seed; beam search: the N best beams are returned
    temperature: tf.Tensor  # [] float32 > 0, sampling: the logits are divided by it
    top_k: tf.Tensor  # [] int32, sampling: draw among the k most likely tokens only (0 = all)
    top_p: tf.Tensor  # [] float32 in (0, 1], sampling: among the fewest most likely tokens whose mass reaches p
    greedy: tf.Tensor  # [] bool: always the most likely token
    beam_width: tf.Tensor  # [] int32: a beam search over this many rows (0 = sampling)
    length_penalty: tf.Tensor  # [] float32 alpha >= 0: beams are ranked by log p / ((5 + length) / 6) ** alpha
    stop: tf.Tensor  # [S] string: a row stops after the tokens of any of these texts (kept in its text)
    allow_unk: tf.Tensor  # [] bool: <unk> may be drawn (it never is otherwise)


def settings_placeholders():
    """Every setting as a placeholder with its default: sampling at temperature 1 from seed 0, no prime."""
    return Settings(tf.placeholder_with_default("", [], name="prime"),
                    tf.placeholder_with_default([0], [None], name="seeds"),
                    tf.placeholder_with_default(1.0, [], name="temperature"),
                    tf.placeholder_with_default(0, [], name="top_k"),
                    tf.placeholder_with_default(1.0, [], name="top_p"),
                    tf.placeholder_with_default(False, [], name="greedy"),
                    tf.placeholder_with_default(0, [], name="beam_width"),
                    tf.placeholder_with_default(0.0, [], name="length_penalty"),
                    tf.placeholder_with_default(tf.zeros([0], tf.string), [None], name="stop"),
                    tf.placeholder_with_default(False, [], name="allow_unk"))


class Carry(NamedTuple):
    """What a piece hands to the next, a row per sample or beam (R rows)."""
    state: tf.Tensor  # [layers, 2 (c, h), R, hidden] float32
    last: tf.Tensor  # [R] int32: the last token, the next step's input
    step: tf.Tensor  # [] int32: steps taken since the start token (the seed pairs' second half)
    score: tf.Tensor  # [R] float32: the log-probability of the tokens generated (beams' unused rows: -inf)
    length: tf.Tensor  # [R] int32: tokens generated until the row stopped
    stopped: tf.Tensor  # [R] bool
    recent: tf.Tensor  # [R, K] int32: the last K tokens generated (NO_TOKEN before any), K the longest stop's
    written: tf.Tensor  # [R] bool: text has started (line breaks before it are dropped)


class Decoder(NamedTuple):
    settings: Settings
    steps: tf.Tensor  # [] int32, default PIECE: the steps of this run (at most PIECE)
    carry_in: Carry  # placeholders whose defaults are the start: the prime fed through the stack
    prime_text: tf.Tensor  # [R] string: the text a sample starts with (the prime, line breaks before it dropped)
    tokens: tf.Tensor  # [R, PIECE] int32: this piece's tokens, NO_TOKEN past `steps` or after a row stopped
    origin: tf.Tensor  # [R] int32: the row of carry_in each row continues (beams reorder; samples keep their row)
    text: tf.Tensor  # [R] string: this piece's text, to follow the text of row `origin`
    carry_out: Carry
    order: tf.Tensor  # [N] int32: the rows to show, best first (samples in seed order; beams by penalised score)


class Strategy(NamedTuple):
    """The numeric settings the loop reads (no strings: they stay out of XLA)."""
    seeds: tf.Tensor
    temperature: tf.Tensor
    top_k: tf.Tensor
    top_p: tf.Tensor
    greedy: tf.Tensor
    beam: tf.Tensor  # [] bool
    allow_unk: tf.Tensor
    stops: tf.Tensor  # [S, K] int32: each stop's tokens, left-aligned
    stop_lengths: tf.Tensor  # [S] int32 (0: a stop that can never match)
    eos_stops: tf.Tensor  # [] bool: <eos> ends a row (beam search over words)


# --------------------------------------------------------------------------------------------------- text <-> tokens

def text_tokens(cfg, vocab, table, texts):
    """(ragged [B, None] int32 token ids, [B] tokens not in the vocabulary) of texts read as the training data was:
    characters (those not in the vocabulary dropped), or words with <eos> at each line break, also a last one
    (unknown words as <unk>)."""
    if cfg.level == "char":
        found = graph_text.token_ids(table, graph_text.characters(texts))
        unknown = tf.reduce_sum(tf.cast(found < 0, tf.int32), axis=1)
        return tf.cast(tf.ragged.boolean_mask(found, found >= 0), tf.int32), unknown
    # Between two words of ours, every line break of the text is an <eos> (lm_word_tokens ends the last line itself).
    found = graph_text.token_ids(table, graph_text.lm_word_tokens("x " + texts + " x")[:, 1:-2])
    unknown = tf.reduce_sum(tf.cast(found < 0, tf.int32), axis=1)
    return tf.cast(tf.ragged.map_flat_values(lambda ids: where(ids < 0, vocab.unk_id, ids), found), tf.int32), unknown


def stop_matrix(cfg, vocab, table, stops):
    """([S, K] int32 each stop text's tokens left-aligned, NO_TOKEN after them; [S] their lengths), K >= 1. A stop
    holding a token the model cannot generate is refused (InvalidArgumentError naming `stop`)."""
    tokens, unknown = text_tokens(cfg, vocab, table, stops)
    known = tf.debugging.assert_equal(tf.reduce_sum(unknown), 0, message="stop: a stop text holds a character or "
                                      "word not in the model's vocabulary, so it could never be generated")
    with tf.control_dependencies([known]):
        lengths = tf.cast(tokens.row_lengths(), tf.int32)
    width = tf.maximum(tf.reduce_max(tf.concat([lengths, [1]], 0)), 1)
    return tokens.to_tensor(NO_TOKEN, shape=tf.stack([tf.size(lengths), width])), lengths


def token_strings(vocab):
    """[V + 1] string: each token's text, and "" for NO_TOKEN (gathered at -1 from the end)."""
    return tf.constant(list(vocab.tokens) + [""])


def detokenize(cfg, vocab, tokens, before, written):
    """(text [R], written [R]) of tokens [R, T] (NO_TOKEN: none) that follow the tokens `before` [R]: characters
    join; a word follows a space unless it starts a line (after <eos>, or at the start token), and <eos> is a line
    break. Line breaks before any text are dropped."""
    strings = tf.gather(token_strings(vocab), where(tokens >= 0, tokens, len(vocab)))
    if cfg.level == "word":
        eos = vocab.id("<eos>")
        previous = tf.concat([before[:, None], tokens[:, :-1]], axis=1)
        spaced = where(tf.equal(previous, eos) | (previous < 0), strings, tf.strings.join([" ", strings]))
        strings = where(tf.equal(tokens, eos), "\n", where(tokens >= 0, spaced, strings))
    text = tf.strings.reduce_join(strings, axis=1)
    text = where(written, text, tf.strings.regex_replace(text, "^\n+", ""))
    return text, written | (tf.strings.length(text) > 0)


def start_id(cfg, vocab):
    """The token every text of the corpus follows: a line break (<eos> for words)."""
    import text_io
    return vocab.id(text_io.start_token(cfg.level, vocab))


def prime_ids(cfg, vocab, table, prime):
    """[P] int32: the start token, then the prime's tokens (unless it begins with the start token itself), as
    --score reads a text: a sample starts where every text of the corpus starts."""
    tokens = text_tokens(cfg, vocab, table, prime[None])[0].flat_values
    start = start_id(cfg, vocab)
    begins_with_start = tf.reduce_any(tf.equal(tokens[:1], start))
    return tf.cond(begins_with_start, lambda: tokens, lambda: tf.concat([[start], tokens], axis=0))


# --------------------------------------------------------------------------------------------------- the strategies

def hashed_uniform(size, seeds):
    """[N, size] floats in (0, 1), row n a pure function of the int32 pair seeds[n]: an integer hash of (seed,
    index). Integer arithmetic is exact everywhere, so the XLA-compiled loop and the plain one draw the same numbers
    (tf.random.stateless_uniform does not). The hash is the well-known 32-bit xor-shift-multiply mixer
    (x ^ x >> 16) * 0x45d9f3b, applied twice, then x ^ x >> 16; in int64 its products cannot overflow."""
    def mix(x):  # int64 in [0, 2**32) -> int64 in [0, 2**32)
        for _ in range(2):
            x = tf.bitwise.bitwise_and((tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))) * 0x45D9F3B,
                                       0xFFFFFFFF)
        return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))

    seeds = tf.bitwise.bitwise_and(tf.cast(seeds, tf.int64), 0xFFFFFFFF)
    keys = mix(tf.bitwise.bitwise_xor(mix(seeds[:, 0]), seeds[:, 1]))[:, None]  # [N, 1]
    bits = mix(tf.bitwise.bitwise_xor(keys, tf.range(tf.cast(size, tf.int64))[None]))  # [N, size]
    return (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) / 2.0 ** 24  # 24 bits: exact in float32


def keep_top_k(logits, top_k):
    """logits [R, V] with all but the top_k largest of each row at -inf (0 = keep all). The k-th largest comes from
    sorting: unlike tf.math.top_k it takes a k known only at run time under XLA."""
    vocab_size = tf.shape(logits)[1]
    k = where(top_k > 0, tf.minimum(top_k, vocab_size), vocab_size)
    kth_largest = tf.sort(logits, axis=1, direction="DESCENDING")[:, k - 1:k]  # [R, 1]
    return where(logits >= kth_largest, logits, -np.inf)


def keep_top_p(logits, top_p):
    """logits [R, V] with all but the nucleus at -inf: the fewest most likely tokens whose probability (under the
    softmax of these logits) reaches top_p; top_p >= 1 keeps all."""
    descending = tf.sort(logits, axis=1, direction="DESCENDING")
    mass_before = tf.cumsum(tf.nn.softmax(descending), axis=1, exclusive=True)  # of the tokens ranked above
    in_nucleus = mass_before < top_p  # the most likely token always is
    smallest_kept = tf.reduce_min(where(in_nucleus, descending, np.inf), axis=1)
    return where(top_p >= 1.0, logits, where(logits >= smallest_kept[:, None], logits, -np.inf))


def sample(logits, strategy, step):
    """[R] tokens drawn from logits [R, V] (already without disallowed tokens): temperature, then top-k, then top-p,
    then a Gumbel-max draw with the stateless seed pair (seed, step) of each row; or greedy."""
    kept = logits / strategy.temperature
    kept = tf.cond(strategy.top_k > 0, lambda: keep_top_k(kept, strategy.top_k), lambda: kept)  # sorts: only if asked
    kept = tf.cond(strategy.top_p < 1.0, lambda: keep_top_p(kept, strategy.top_p), lambda: kept)
    seed_pairs = tf.stack([strategy.seeds, tf.fill(tf.shape(strategy.seeds), step)], axis=1)
    # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits), and compiles under XLA.
    drawn = tf.argmax(kept - tf.math.log(-tf.math.log(hashed_uniform(tf.shape(logits)[1], seed_pairs))), axis=1,
                      output_type=tf.int32)
    return where(strategy.greedy, tf.argmax(logits, axis=1, output_type=tf.int32), drawn)


def choose(log_probs, allowed_logits, carry, strategy, step):
    """(tokens [R], parents [R], scores [R]) of one step. log_probs [R, V]: the model's; allowed_logits: the logits
    with disallowed tokens at -inf. A beam search keeps the R best continuations of all rows (a stopped row
    continues only as itself, at no cost); sampling draws a token per row, each row its own parent."""
    rows, vocab_size = tf.shape(log_probs)[0], tf.shape(log_probs)[1]
    allowed = where(tf.math.is_inf(allowed_logits), -np.inf, log_probs)

    def beam():
        as_itself = where(tf.equal(tf.range(vocab_size)[None], carry.last[:, None]), 0.0, -np.inf)  # [R, V]
        candidates = carry.score[:, None] + where(carry.stopped[:, None], as_itself, allowed)
        best = tf.argsort(tf.reshape(candidates, [-1]), direction="DESCENDING", stable=True)[:rows]
        return best % vocab_size, best // vocab_size, tf.gather(tf.reshape(candidates, [-1]), best)

    def draw():
        tokens = sample(allowed_logits, strategy, step)
        gained = tf.gather(log_probs, tokens, batch_dims=1)
        return tokens, tf.range(rows), carry.score + where(carry.stopped, 0.0, gained)

    return tf.cond(strategy.beam, beam, draw)


def stop_hit(recent, strategy, tokens, eos):
    """[R] bool: the recent tokens [R, K] end with one of the stop sequences (or the token is <eos> where that
    stops rows)."""
    k, lengths = tf.shape(recent)[1], strategy.stop_lengths
    # stop s, position j < length: compared with recent[:, K - length + j]
    positions = tf.clip_by_value(k - lengths[:, None] + tf.range(tf.shape(strategy.stops)[1])[None], 0, k - 1)
    window = tf.gather(recent, positions, axis=1)  # [R, S, K]
    wanted = tf.range(tf.shape(strategy.stops)[1])[None] < lengths[:, None]  # [S, K]
    equal = tf.equal(window, strategy.stops[None]) | ~wanted[None]
    matched = tf.reduce_any(tf.reduce_all(equal, axis=2) & (lengths > 0)[None], axis=1)
    return matched | (strategy.eos_stops & tf.equal(tokens, eos))


# --------------------------------------------------------------------------------------------------- the loop

def generation_step(tokens, state, embedding, input_table, layers, output, product):
    """One token of every row through the stack: tokens [R] int32, state [(c, h)] per layer ([R, H] each) ->
    (logits [R, V], the new state). layers hold kernels in the compute dtype and gate_bias'd biases; input_table,
    when given, holds the first layer's x W_x + bias for every token."""
    new_state, x = [], tf.gather(embedding, tokens)  # [R, E]
    for layer, (w, (c, h)) in enumerate(zip(layers, state)):
        if layer == 0 and input_table is not None:
            projected_x = tf.gather(input_table, tokens)  # [R, 4H]
        else:
            projected_x = product(x, w.kernel_x) + w.bias
        *_, c, _, h = lstm.lstm_cell(projected_x + product(h, w.kernel_h), c)
        new_state.append((c, h))
        x = h
    output_weights, output_bias = output
    return product(x, output_weights) + output_bias, new_state


class Stack(NamedTuple):
    """The model's weights as a decoding step uses them: kernels in the compute dtype, biases with the forget bias,
    and for small vocabularies (characters) the first layer's input projection as a table."""
    embedding: tf.Tensor
    input_table: object  # [V, 4H] or None
    layers: list
    output: tuple

    @staticmethod
    def of(cfg, embedding, layers, output_weights, output_bias):
        dtype = lstm.compute_dtype(cfg)
        layers = [lstm.LayerWeights(tf.cast(w.kernel_x, dtype), tf.cast(w.kernel_h, dtype),
                                    lstm.gate_bias(w.bias, cfg.forget_bias)) for w in layers]
        table = lstm.matmul(embedding, layers[0].kernel_x, dtype) + layers[0].bias \
            if embedding.shape[0] <= cfg.embedding_dim else None
        return Stack(embedding, table, layers, (tf.cast(output_weights, dtype), output_bias))


def product_for(cfg, jit):
    dtype = lstm.compute_dtype(cfg)

    def product(x, kernel):
        """[R, in] x [in, K] -> [R, K] float32. XLA:CPU compiles a one-row float32 product to a single-threaded
        loop; one more row makes it a matmul that Eigen splits across the cores."""
        if jit and dtype == tf.float32:
            return tf.matmul(tf.concat([x, x[:1]], 0), kernel)[:-1]
        return lstm.matmul(x, kernel, dtype)
    return product


def decode_step(cfg, stack, product, carry, strategy, disallowed, eos_id):
    """One step of every row: (the carry after it, the tokens emitted [R] (NO_TOKEN for a row that had stopped),
    each row's parent [R])."""
    logits, new_state = generation_step(carry.last, [(carry.state[i, 0], carry.state[i, 1])
                                                     for i in range(cfg.num_layers)],
                                        stack.embedding, stack.input_table, stack.layers, stack.output, product)
    allowed_logits = where(disallowed[None], -np.inf, logits)
    chosen, parents, scores = choose(tf.nn.log_softmax(logits), allowed_logits, carry, strategy, carry.step)
    state = tf.stack([tf.stack(layer_state) for layer_state in new_state])
    # A beam search's rows follow their parents; samples stay in place.
    was_stopped, recent, length, state = tf.cond(strategy.beam, lambda: (
        tf.gather(carry.stopped, parents), tf.gather(carry.recent, parents), tf.gather(carry.length, parents),
        tf.gather(state, parents, axis=2)), lambda: (carry.stopped, carry.recent, carry.length, state))
    recent = tf.concat([recent[:, 1:], chosen[:, None]], axis=1)
    stopping = (tf.size(strategy.stop_lengths) > 0) | strategy.eos_stops  # otherwise no row can stop: skip
    hit = tf.cond(stopping, lambda: stop_hit(recent, strategy, chosen, eos_id), lambda: tf.zeros_like(was_stopped))
    carry = Carry(state, chosen, carry.step + 1, scores, length + tf.cast(~was_stopped, tf.int32), was_stopped | hit,
                  recent, carry.written)
    return carry, where(was_stopped, NO_TOKEN, chosen), parents


def piece_function(cfg, weights, unk_id, eos_id, jit):
    """run(carry, steps, strategy) -> (tokens [R, PIECE], origin [R], carry): up to `steps` steps of the loop (it
    ends early once every row has stopped). With jit it is one XLA-compiled function of static shapes (PIECE
    columns), so one compilation serves every length."""
    used = (weights.embedding, weights.layers, weights.output_weights, weights.output_bias)
    flat_weights = [tf.identity(w) for w in tf.nest.flatten(used)]
    product = product_for(cfg, jit)

    def run(state, last, step, score, length, stopped, recent, steps, seeds, temperature, top_k, top_p, greedy,
            beam, allow_unk, stops, stop_lengths, eos_stops, *flat):
        stack = Stack.of(cfg, *tf.nest.pack_sequence_as(used, list(flat)))
        strategy = Strategy(seeds, temperature, top_k, top_p, greedy, beam, allow_unk, stops, stop_lengths,
                            eos_stops)
        disallowed = tf.equal(tf.range(weights.embedding.shape[0]), unk_id) & ~allow_unk  # [V]

        def body(t, carry, emitted, parents_of):
            carry, emitted_now, parents = decode_step(cfg, stack, product, carry, strategy, disallowed, eos_id)
            return t + 1, carry, emitted.write(t, emitted_now), parents_of.write(t, parents)

        carry = Carry(state, last, step, score, length, stopped, recent, tf.constant(False))  # written: not here
        arrays = [tf.TensorArray(tf.int32, size=PIECE, element_shape=[None]) for _ in range(2)]
        taken, carry, emitted, parents_of = tf.while_loop(
            lambda t, carry, *_: (t < steps) & ~tf.reduce_all(carry.stopped), body, [0, carry, *arrays])
        stacked = [tf.cond(taken > 0, array.stack, lambda: tf.zeros([PIECE, tf.shape(last)[0]], tf.int32))
                   for array in (emitted, parents_of)]  # an array never written has no shape to stack
        tokens, origin = trace_back(*stacked, taken, beam)
        return (tokens, origin) + tuple(carry[:-1])

    if jit:
        run = tf.function(run, jit_compile=True, autograph=False)

    def piece(carry, steps, strategy):
        tokens, origin, *rest = run(*carry[:-1], steps, *strategy, *flat_weights)
        return tokens, origin, Carry(*rest, carry.written)
    return piece


def trace_back(emitted, parents, taken, beam):
    """(tokens [R, PIECE], origin [R]) from the steps' emitted tokens and parents ([PIECE, R] each, `taken` steps
    written): a beam search reorders rows at every step, so each final row's tokens are found by following its
    parents back; samples keep their rows."""
    rows = tf.shape(emitted)[1]
    written = tf.range(PIECE)[:, None] < taken  # [PIECE, 1]

    def follow():
        def back(u, row, columns):
            return u - 1, tf.gather(parents[u], row), columns.write(u, tf.gather(emitted[u], row))
        columns = tf.TensorArray(tf.int32, size=PIECE, element_shape=[None])
        _, row, columns = tf.while_loop(lambda u, *_: u >= 0, back, [taken - 1, tf.range(rows), columns])
        filled = tf.cond(taken > 0, columns.stack, lambda: tf.zeros([PIECE, rows], tf.int32))
        return filled, row

    columns, origin = tf.cond(beam, follow, lambda: (emitted, tf.range(rows)))
    return tf.transpose(where(written, columns, NO_TOKEN)), origin


def strategy_of(cfg, settings, stops, rows):
    """The numeric settings; stops: stop_matrix's (tokens, lengths)."""
    beam = settings.beam_width > 0
    seeds = tf.cond(beam, lambda: tf.zeros([rows], tf.int32), lambda: settings.seeds)  # beams draw nothing
    return Strategy(seeds, settings.temperature, settings.top_k, settings.top_p, settings.greedy, beam,
                    settings.allow_unk, *stops, tf.logical_and(beam, cfg.level == "word"))


def parsed(cfg, vocab, settings, from_text=True):
    """(prime ids [P], (stops [S, K], lengths [S])): the prime and the stop texts as tokens. Without from_text (the
    TensorBoard sample, in a training graph that has no lookup tables to initialise): the start token, no stops."""
    if not from_text:
        return tf.constant([start_id(cfg, vocab)]), (tf.fill([0, 1], NO_TOKEN), tf.zeros([0], tf.int32))
    table = graph_text.lookup_table(vocab.tokens, -1)
    return prime_ids(cfg, vocab, table, settings.prime), stop_matrix(cfg, vocab, table, settings.stop)


def start(cfg, weights, vocab, ids, settings, stop_width):
    """(carry, prime text, rows) at the start: the prime's ids fed through the stack, the last one the first input,
    for every row; a beam search's rows but the first start at -inf, so that only one of the equal rows goes on."""
    stack = Stack.of(cfg, weights.embedding, weights.layers, weights.output_weights, weights.output_bias)
    product = product_for(cfg, False)
    zeros = tf.zeros([1, cfg.hidden_size])

    def feed(t, state):
        _, state = generation_step(tf.reshape(ids[t], [1]), state, stack.embedding, stack.input_table, stack.layers,
                                   stack.output, product)
        return t + 1, state
    _, state = tf.while_loop(lambda t, _: t < tf.size(ids) - 1, feed, [0, [(zeros, zeros)] * cfg.num_layers])
    beam = settings.beam_width > 0
    rows = where(beam, settings.beam_width, tf.size(settings.seeds))
    state = tf.tile(tf.stack([tf.stack(layer) for layer in state]), [1, 1, rows, 1])  # [L, 2, R, H]
    score = where(beam & (tf.range(rows) > 0), -np.inf, 0.0)
    last = tf.fill([rows], ids[-1])
    prime_text, written = detokenize(cfg, vocab, tf.tile(ids[None, 1:], [rows, 1]), tf.fill([rows], ids[0]),
                                     tf.zeros([rows], tf.bool))
    carry = Carry(state, last, tf.size(ids) - 1, score, tf.zeros([rows], tf.int32), tf.zeros([rows], tf.bool),
                  tf.fill([rows, stop_width], NO_TOKEN), written)
    return carry, prime_text, rows


def ranked(cfg, settings, carry):
    """[N] rows to show: samples in seed order; beams best first by log p / ((5 + length) / 6) ** alpha (GNMT)."""
    n = tf.size(settings.seeds)
    penalty = tf.pow((5.0 + tf.cast(carry.length, tf.float32)) / 6.0, settings.length_penalty)
    by_score = tf.argsort(carry.score / penalty, direction="DESCENDING", stable=True)[:n]
    return tf.cond(settings.beam_width > 0, lambda: by_score, lambda: tf.range(n))


def build(cfg, weights, vocab, jit=False, settings=None):
    """The Decoder over the given weights: one piece per Session.run (see the module docstring)."""
    settings = settings or settings_placeholders()
    ids, stops = parsed(cfg, vocab, settings)
    begin, prime_text, rows = start(cfg, weights, vocab, ids, settings, tf.shape(stops[0])[1])
    carry_in = Carry(*(tf.placeholder_with_default(value, value.shape, name=f"carry_{name}")
                       for name, value in zip(Carry._fields, begin)))
    strategy = strategy_of(cfg, settings, stops, rows)
    steps = tf.placeholder_with_default(PIECE, [], name="steps")
    piece = piece_function(cfg, weights, vocab.unk_id, eos_id(vocab), jit)
    tokens, origin, carry = piece(carry_in, tf.minimum(steps, PIECE), strategy)
    text, written = detokenize(cfg, vocab, tokens, tf.gather(carry_in.last, origin), tf.gather(carry_in.written,
                                                                                                origin))
    carry_out = carry._replace(written=written)
    return Decoder(settings, steps, carry_in, prime_text, tokens, origin, text, carry_out,
                   ranked(cfg, settings, carry_out))


def eos_id(vocab):
    return vocab.id("<eos>") if "<eos>" in vocab else -2  # a character model has none


def build_whole(cfg, weights, vocab, settings, length, from_text=True):
    """(texts [N], log-probabilities [N]) of whole samples of `length` tokens in one Session.run: the Decoder's
    pieces in a tf.while_loop (the SavedModel's generate, the TensorBoard sample). No XLA: a server compiling on
    its first request would answer it late."""
    ids, stops = parsed(cfg, vocab, settings, from_text)
    begin, prime_text, rows = start(cfg, weights, vocab, ids, settings, tf.shape(stops[0])[1])
    strategy = strategy_of(cfg, settings, stops, rows)
    piece = piece_function(cfg, weights, vocab.unk_id, eos_id(vocab), False)

    def body(done, carry, texts):
        tokens, origin, new = piece(carry, tf.minimum(length - done, PIECE), strategy)
        text, written = detokenize(cfg, vocab, tokens, tf.gather(carry.last, origin), tf.gather(carry.written,
                                                                                                 origin))
        return done + PIECE, new._replace(written=written), tf.strings.join([tf.gather(texts, origin), text])

    invariants = Carry(*(tf.TensorShape(None) for _ in Carry._fields))
    _, carry, texts = tf.while_loop(lambda done, carry, _: (done < length) & ~tf.reduce_all(carry.stopped), body,
                                    [0, begin, prime_text], shape_invariants=[tf.TensorShape([]), invariants,
                                                                              tf.TensorShape([None])])
    order = ranked(cfg, settings, carry)
    return tf.gather(texts, order), tf.gather(carry.score, order)


def constant_settings(**values):
    """Settings as constants: the defaults of settings_placeholders, but for the values given."""
    defaults = dict(prime="", seeds=[0], temperature=1.0, top_k=0, top_p=1.0, greedy=False, beam_width=0,
                    length_penalty=0.0, stop=tf.zeros([0], tf.string), allow_unk=False)
    return Settings(**{name: tf.convert_to_tensor(values.get(name, default)) for name, default in defaults.items()})
