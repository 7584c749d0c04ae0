"""decoder.py against independent oracles: one Session.run per token through the training graph's language model
(the TF1 tutorial's way) with the strategies written again in NumPy; the enumeration of every short sequence for
beam search; NumPy's nucleus on fixed logits."""
import dataclasses

import numpy as np
import pytest

import config
import data_handler
import decoder
import rnn_model as rm
import sample
import text_io
from tf1 import tf

CHARS = ["<unk>", "\n", "a", "b", "c", "d", " "]  # the input table path (vocabulary <= embedding width)
WORDS = ["<unk>", "<eos>"] + [f"w{i}" for i in range(38)]


def tiny(level, **overrides):
    values = dict(level=level, num_layers=2, hidden_size=12, embedding_size=8, num_steps=5, batch_size=3,
                  keep_prob=1.0, forget_bias=1.0)
    values.update(overrides)
    return dataclasses.replace(config.Config(), **values)


class Model:
    """A language model with random weights (biases too): the decoder with and without XLA, the one-step graph of
    training (build_lm with num_steps 1) and the scorer, in one session."""

    def __init__(self, level, seed=0, unk_bias=None, **overrides):
        self.cfg = tiny(level, **overrides)
        self.vocab = data_handler.Vocab(CHARS if level == "char" else WORDS)
        self.graph = tf.Graph()
        with self.graph.as_default():
            weights = rm.declare_weights(self.cfg, len(self.vocab))
            self.plain = decoder.build(self.cfg, weights, self.vocab)
            self.xla = decoder.build(self.cfg, weights, self.vocab, jit=True)
            self.controls = rm.build_controls(self.cfg, None)
            self.lm = rm.build_lm(self.cfg, weights, self.controls, 1)
            self.ids = tf.placeholder(tf.int32, [None, None])
            self.scorer = rm.build_scorer(self.cfg, weights, self.ids, tf.fill([tf.shape(self.ids)[0]],
                                                                               tf.shape(self.ids)[1]))
            rng = np.random.RandomState(seed)
            randomize = [tf.assign(v, rng.uniform(-1, 1, v.shape.as_list()).astype(np.float32))
                         for v in tf.trainable_variables()]
            favour_unk = weights.output_bias[self.vocab.unk_id].assign(unk_bias or 0.0)
            init = [tf.global_variables_initializer(), tf.local_variables_initializer(), tf.tables_initializer()]
        self.sess = tf.Session(graph=self.graph)
        self.sess.run(init)
        self.sess.run(randomize)
        if unk_bias is not None:
            self.sess.run(favour_unk)
        rm.BatchSizeSetter(self.controls)(self.sess, 1)

    def decode(self, length, path="plain", piece=None, **settings):
        model = getattr(self, path)
        feed = {getattr(model.settings, name): value for name, value in settings.items()}
        return sample.decode(self.sess, model, feed, length, piece=piece)

    def tokens(self, length, path="plain", **settings):
        """Each row's generated tokens (samples in seed order), through one run of the decoder's piece."""
        model = getattr(self, path)
        feed = {getattr(model.settings, name): value for name, value in settings.items()}
        return self.sess.run(model.tokens, {**feed, model.steps: length})[:, :length]

    def prime_ids(self, prime):
        return [decoder_start(self)] + [self.vocab.id(t) for t in (prime.split() if self.cfg.level == "word"
                                                                     else prime)]

    def one_step_logits(self, sequence):
        """[len(sequence) - 1, V] logits after each prefix, one Session.run per token (the oracle)."""
        state = [(np.zeros((1, self.cfg.hidden_size), np.float32),) * 2 for _ in range(self.cfg.num_layers)]
        logits = []
        for token in sequence[:-1]:
            feed = rm.feed_state({self.lm.inputs: [[token]]}, self.lm.initial_state, state)
            step_logits, state = self.sess.run([self.lm.logits, self.lm.final_state], feed)
            logits.append(step_logits[0])
        return np.array(logits)


def decoder_start(model):
    return model.vocab.id(text_io.start_token(model.cfg.level, model.vocab))


@pytest.fixture(scope="module")
def chars():
    return Model("char")


@pytest.fixture(scope="module")
def words():
    return Model("word", seed=1)


def numpy_hashed_uniform(size, seed, step):
    """decoder.hashed_uniform, written again: the same integer hash of (seed, step, index)."""
    def mix(x):
        for _ in range(2):
            x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
        return x ^ (x >> 16)
    key = mix(mix(np.int64(seed) & 0xFFFFFFFF) ^ np.int64(step))
    bits = mix(key ^ np.arange(size, dtype=np.int64))
    return ((bits >> 8).astype(np.float32) + 0.5) / np.float32(2 ** 24)


def numpy_objective(logits, seed, step, temperature=1.0, top_k=0, top_p=1.0, greedy=False, allow_unk=False,
                    unk=0):
    """What the strategy maximises over tokens: the logits (greedy), or the filtered, tempered logits plus Gumbel
    noise of the seed pair (seed, step); -inf outside top-k, outside the nucleus, and at <unk>."""
    logits = logits.astype(np.float64)
    if not allow_unk:
        logits[unk] = -np.inf
    if greedy:
        return logits
    logits = logits / temperature
    if top_k:
        logits[logits < np.sort(logits)[::-1][min(top_k, len(logits)) - 1]] = -np.inf
    if top_p < 1.0:
        order = np.argsort(-logits)
        probabilities = np.exp(logits[order] - logits[order[0]])
        probabilities /= probabilities.sum()
        kept = order[:np.searchsorted(np.cumsum(probabilities), top_p) + 1]  # the fewest reaching top_p
        logits[np.setdiff1d(np.arange(len(logits)), kept)] = -np.inf
    return logits - np.log(-np.log(numpy_hashed_uniform(len(logits), seed, step).astype(np.float64)))


STRATEGIES = [dict(temperature=1.3), dict(top_k=3), dict(top_p=0.6), dict(temperature=0.7, top_k=5, top_p=0.8),
              dict(greedy=True)]


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("path", ["plain", "xla"])
def test_every_token_is_the_one_step_oracles_choice(chars, words, level, path):
    """Fed the decoder's own tokens, one Session.run per token through the training graph's LM, with the strategy
    in NumPy: each token the decoder chose maximises the oracle's objective (to float32 summation order), and
    every other is below it; the step of token t is (prime length - 1 + t)."""
    model = chars if level == "char" else words
    prime = "ab" if level == "char" else "w3 w4"
    drawn = set()
    for strategy in STRATEGIES:
        rows = model.tokens(24, path, prime=prime, seeds=[3, 11], **strategy)
        drawn |= set(rows.ravel()) if strategy is STRATEGIES[0] else set()
        for seed, row in zip([3, 11], rows):
            sequence = model.prime_ids(prime) + row.tolist()
            logits = model.one_step_logits(sequence)[len(model.prime_ids(prime)) - 1:]
            for t, (token, step_logits) in enumerate(zip(row, logits)):
                step = len(model.prime_ids(prime)) - 1 + t
                objective = numpy_objective(step_logits, seed, step, unk=model.vocab.unk_id, **strategy)
                assert objective[token] >= objective.max() - 1e-4, (strategy, seed, t)
    assert len(drawn) > 3  # the hot sampling spreads: the check above is not about one token


def test_xla_and_the_plain_loop_agree_on_every_strategy(chars):
    for strategy in STRATEGIES + [dict(beam_width=4, seeds=[0, 1, 2]), dict(stop=["ab", "c"], seeds=[5, 6])]:
        settings = dict(dict(prime="a", seeds=[1, 2]), **strategy)
        (plain, plain_log_p), (xla, xla_log_p) = (chars.decode(60, path, **settings) for path in ("plain", "xla"))
        assert plain == xla, strategy
        np.testing.assert_allclose(plain_log_p, xla_log_p, rtol=1e-5)  # sums in another order


def test_beam_width_1_is_greedy(chars, words):
    for model, prime in ((chars, "ab"), (words, "w3")):
        texts, _ = model.decode(40, prime=prime, beam_width=1)
        assert texts == model.decode(40, prime=prime, greedy=True)[0]


def test_a_wide_beam_finds_the_most_probable_sequences_and_their_log_probabilities(chars):
    """Every sequence of 4 tokens (<unk> excluded: 6**4 = 1296) scored by build_scorer after the start token; a
    beam of 216 = 6**3 keeps every prefix, so its 5 best are the 5 most probable sequences, with their exact
    log-probabilities."""
    allowed = [i for i in range(len(chars.vocab)) if i != chars.vocab.unk_id]
    sequences = np.array(np.meshgrid(*[allowed] * 4, indexing="ij")).reshape(4, -1).T
    ids = np.concatenate([np.full((len(sequences), 1), decoder_start(chars)), sequences], axis=1)
    log_probabilities = chars.sess.run(chars.scorer.log_likelihood, {chars.ids: ids})
    best = np.argsort(-log_probabilities)[:5]
    texts, beam_log_probabilities = chars.decode(4, beam_width=216, seeds=np.arange(5))
    np.testing.assert_allclose(beam_log_probabilities, log_probabilities[best], rtol=1e-5)
    expected = "".join(chars.vocab.decode(sequences[best[0]])).lstrip("\n")  # text drops leading line breaks
    assert texts[0] == expected
    narrow, narrow_log_probabilities = chars.decode(4, beam_width=2, seeds=[0, 1])
    assert narrow_log_probabilities[0] <= beam_log_probabilities[0] + 1e-5  # a narrow beam can only do worse


def test_top_p_keeps_the_fewest_tokens_whose_mass_reaches_p():
    rng = np.random.RandomState(0)
    logits = rng.randn(50, 30).astype(np.float32) * 2
    for p in (0.05, 0.3, 0.5, 0.9, 0.999):
        with tf.Graph().as_default(), tf.Session() as sess:
            kept = sess.run(decoder.keep_top_p(tf.constant(logits), tf.constant(p)))
        for row, kept_row in zip(logits, kept):
            probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
            order = np.argsort(-probabilities)
            count = np.searchsorted(np.cumsum(probabilities[order]), p) + 1
            assert set(np.flatnonzero(np.isfinite(kept_row))) == set(order[:count]), p
            assert probabilities[order[:count]].sum() >= p - 1e-6 > probabilities[order[:count - 1]].sum() - 1e-6
            np.testing.assert_array_equal(kept_row[np.isfinite(kept_row)], row[np.isfinite(kept_row)])


def test_top_p_one_is_plain_sampling_and_a_tiny_top_p_is_greedy(chars, words):
    for model in (chars, words):
        plain = model.decode(50, seeds=[0, 1, 2])
        assert model.decode(50, seeds=[0, 1, 2], top_p=1.0) == plain
        greedy = model.decode(50, seeds=[0], greedy=True)
        assert model.decode(50, seeds=[0], top_p=1e-6) == greedy and plain[0][0] != greedy[0][0]


def test_stop_texts_end_samples_at_their_first_occurrence_across_pieces(chars, words):
    """With pieces of 3 tokens, a sample with stops ends right after the first occurrence of one of them in its
    generated text, and equals the sample without stops up to there; its log-probability is that of its tokens."""
    cut = 0
    for model, stops, prime in ((chars, ["ab", "dc"], "a"), (words, ["w5 w6", "w7"], "w1")):
        for seed in range(6):
            free, free_log_p = model.decode(80, prime=prime, seeds=[seed])
            stopped, stopped_log_p = model.decode(80, prime=prime, seeds=[seed], stop=stops, piece=3)
            prime_text = model.decode(0, prime=prime)[0][0]
            generated = free[0][len(prime_text):]
            ends = [generated.find(stop) + len(stop) for stop in stops if stop in generated]
            if model is words:  # words are matched whole: "w7" is not inside "w70"
                ends = [e for e, stop in zip(ends, [s for s in stops if s in generated])
                        if generated[e:e + 1] in ("", " ", "\n")]
            if ends:
                cut += 1
                assert stopped[0] == prime_text + generated[:min(ends)], (stops, seed)
                assert stopped_log_p[0] > free_log_p[0]
            else:
                assert stopped == free
    assert cut >= 6  # most seeds met a stop


def test_unk_is_never_generated_unless_asked(chars):
    model = Model("char", seed=2, unk_bias=20.0)  # <unk> is the likeliest token by far
    text = model.decode(200, seeds=[0, 1, 2])[0]
    assert not any("<unk>" in t for t in text)
    assert sum(t.count("<unk>") for t in model.decode(200, seeds=[0, 1, 2], allow_unk=True)[0]) > 300


def test_a_prime_starts_after_the_start_token(chars):
    """"ab" is read as "\\nab": the start token that every text of the corpus follows, then the prime, as --score
    reads a text (not a zero state at the prime's first character)."""
    for settings in (dict(seeds=[0, 1, 2]), dict(greedy=True), dict(beam_width=3)):
        assert chars.decode(40, prime="ab", **settings) == chars.decode(40, prime="\nab", **settings)
    texts = chars.decode(0, prime="ab", seeds=[0])[0]
    assert texts == ["ab"]
    free = chars.decode(30, prime="", seeds=[4])[0][0]
    ids = chars.prime_ids("")
    assert ids == [decoder_start(chars)] and free  # the unprimed sample starts from the same token


def test_the_sampling_draw_follows_the_softmax():
    """Gumbel-max over the hashed uniforms: token frequencies over many seed pairs match softmax(logits), a row's
    draw depends on its own seed pair only, and the uniforms are flat."""
    probabilities = np.array([0.5, 0.25, 0.15, 0.1])
    with tf.Graph().as_default():
        seeds, step = tf.placeholder(tf.int32, [None]), tf.placeholder(tf.int32, [])
        logits = tf.tile(tf.constant(np.log(probabilities)[None], tf.float32), [tf.shape(seeds)[0], 1])
        strategy = decoder.Strategy(seeds, 1.0, tf.constant(0), tf.constant(1.0), tf.constant(False), None, None,
                                    None, None, None)
        tokens = decoder.sample(logits, strategy, step)
        uniform = decoder.hashed_uniform(20000, tf.constant([[7, 3]]))[0]
        with tf.Session() as sess:
            draws = np.concatenate([sess.run(tokens, {seeds: np.arange(100), step: t}) for t in range(40)])
            alone = [int(sess.run(tokens, {seeds: [s], step: 5})[0]) for s in range(0, 100, 9)]
            values = sess.run(uniform)
    assert alone == draws[500:600][::9].tolist()
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(frequencies, probabilities, atol=0.025)  # 3 standard deviations for 4,000 draws
    np.testing.assert_allclose(np.histogram(values, bins=10, range=(0, 1))[0] / len(values), 0.1, atol=0.007)
    np.testing.assert_array_equal(values, numpy_hashed_uniform(20000, 7, 3))  # the oracle's numbers are these


def test_line_breaks_in_word_primes_and_stops_are_line_ends(words):
    """A word model's prime ending in a line break continues on a new line, and the stop "\\n" ends a sample at its
    first line end."""
    assert words.decode(0, prime="w3 w4\n")[0] == ["w3 w4\n"]
    free = words.decode(120, prime="w3", seeds=[4])[0][0]
    stopped = words.decode(120, prime="w3", seeds=[4], stop=["\n"], piece=5)[0][0]
    assert "\n" in free[2:] and stopped == free[:free.index("\n", 2) + 1]
