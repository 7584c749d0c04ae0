"""graph_text: tokenization inside the graph equals text_io's and data_handler's Python, token for token and id
for id."""
import random
import re
import unicodedata

import numpy as np
import pytest

import data_handler as dh
import graph_text as gt
import text_io
from tf1 import tf

SENTENCES = [
    "", " ", "\t \n ", "\u00a0\u3000\u2028\x85", "Hello, World!", "HELLO world", "...", "?!?!", "--- ;; :)",
    # clitics: Python's lookahead alternative and its neighbours
    "Don't do that.", "I CAN'T", "can't", "won't've", "ain't y'all", "'tis the season", "n't", "xn't", "nn't",
    "n'tn't", "isn'", "don't't", "doN'T", "rock'n'roll", "''", "'", "' '", "'''quoted'''", "it's ok'",
    "o'clock O'Neil", "don\u2019t (curly)", "don<br />'t",
    # digits, underscores, HTML breaks
    "pi is 3.14, not 3,14", "1,000,000 and 1.000", "snake_case __init__ _", "a<br />b", "a<BR />b",
    "<br /><br />", "<br/> <br >",
    # whitespace Python knows and ASCII does not, and characters that look like it but are not
    "tab\tseparated\tvalues", "non\u00a0breaking\u00a0space", "ideographic\u3000space", "nel\x85line",
    "zero\u200bwidth\u200bspace", "\x1c\x1d\x1e\x1fcontrol", "crlf\r\nline", "vertical\x0bform\x0cfeed",
    "soft\u00adhyphen", "\ufeffbom", "nul\x00byte \x00",
    # combining marks, emoji, other scripts, numbers that are not ASCII digits
    "cafe\u0301 CAFE\u0301", "café CAFÉ", "emoji 😀👍🏽!", "family 👨\u200d👩\u200d👧", "中文字符。日本語",
    "العربية ١٢٣", "１２３ ＡＢＣ", "½ ⅓ ² ① Ⅷ", "\U00020000\U0002a6d6", "क्ष กิ", "Kawi \U00011f04 (Unicode 15)",
    # lower-casing: full mappings, final sigma, capitals newer than TF's ICU
    "ÀÉÎ", "STRASSE ẞ", "ΟΔΟΣ ΟΔΟΣ.", "ΑΣΣ", "ΑΣ'Α ΑΣ'", "İstanbul İ", "ДОБРЫЙ день", "ǅ Ǆ", "\u2c2fΣ \u2c2f",
    "\U00010570\U00010571", "mixed: Don't STOP<br />the rock'n'roll, 3.14 ΣΟΣ İx!",
]

LM_TEXTS = SENTENCES + [
    "a b\n\nc\n", "\n\n", " \n \t\n", "x\r\ny", "a\x85b\nc", "a\u2028b\u2029c", "last line without newline",
    "literal <eos> token\n", "  leading and trailing  \n  ", "one\n two \n\tthree\t\n\u3000\n",
]


@pytest.fixture(scope="module")
def run():
    """One graph and session for the whole module: a [batch] string placeholder and every function's output."""
    with tf.Graph().as_default() as g:
        texts = tf.placeholder(tf.string, [None], name="texts")
        outputs = {"classifier": gt.classifier_tokens(texts), "lm": gt.lm_word_tokens(texts),
                   "chars": gt.characters(texts), "lower": gt.lower(texts)}
    with tf.Session(graph=g) as sess:
        def run(name, batch):
            value = sess.run(outputs[name], {texts: batch})
            if name == "lower":
                return [v.decode("utf-8") for v in value]
            return [[t.decode("utf-8") for t in row] for row in value.to_list()]
        yield run


def test_classifier_tokens_equal_tokenize(run):
    assert len(SENTENCES) >= 40
    for sentence, tokens in zip(SENTENCES, run("classifier", SENTENCES)):
        assert tokens == text_io.tokenize(sentence), repr(sentence)
    assert run("classifier", []) == []


def test_lm_word_tokens_equal_lm_words(run):
    for text, tokens in zip(LM_TEXTS, run("lm", LM_TEXTS)):
        assert tokens == text_io.lm_words(text), repr(text)


def test_characters_equal_list(run):
    for text, chars in zip(LM_TEXTS, run("chars", LM_TEXTS)):
        assert chars == list(text), repr(text)


def test_lower_equals_str_lower(run):
    """Including where tf.strings.lower (ICU) is wrong: it stops at NUL, and TF 2.21's ICU does not lower the
    capitals new in Unicode 14.0 (U+2C2F, U+10570). Random strings over the characters that matter to the final
    sigma rule (Cased, Case_Ignorable, both (U+0345, U+02B0), neither) check the regex passes."""
    assert run("lower", ["a\x00B", "\u2c2f\U00010570", "\u0130"]) == ["a\x00b", "\u2c5f\U00010597", "i\u0307"]
    assert run("lower", SENTENCES) == [s.lower() for s in SENTENCES]
    alphabet = ["\u03a3", "\u03c3", "\u03c2", "A", "a", "1", " ", "'", ".", ":", "\u0301", "\u00ad", "\u02b0",
                "\u0345", "\u0130", "\u2c2f", "\x00", "\U0001f600"]
    rng = random.Random(0)
    strings = ["".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(5000)]
    assert run("lower", strings) == [s.lower() for s in strings]


def test_token_ids_equal_vocab_encode():
    word_vocab = dh.build_vocab([text_io.tokenize(s) for s in SENTENCES], min_count=2,
                                specials=text_io.CLASSIFY_SPECIALS)
    char_vocab = dh.build_vocab(LM_TEXTS, min_count=2, specials=text_io.LM_SPECIALS["char"])
    lm_vocab = dh.build_vocab([text_io.lm_words(t) for t in LM_TEXTS], min_count=2,
                              specials=text_io.LM_SPECIALS["word"])
    assert "\n" in char_vocab and "<unk>" in word_vocab  # a "\n" token: why the table is built from constants
    twice = dh.Vocab(["<unk>", "a", "b", "a"])  # a vocabulary file may list a token twice: the last id wins
    with tf.Graph().as_default(), tf.Session() as sess:
        texts = tf.placeholder(tf.string, [None])
        cases = [(word_vocab, gt.classifier_tokens(texts), SENTENCES, lambda t: word_vocab.encode(text_io.tokenize(t))),
                 (char_vocab, gt.characters(texts), LM_TEXTS, char_vocab.encode),
                 (lm_vocab, gt.lm_word_tokens(texts), LM_TEXTS, lambda t: lm_vocab.encode(text_io.lm_words(t))),
                 (twice, gt.lm_word_tokens(texts), ["a b c a"], lambda t: twice.encode(t.split() + ["<eos>"]))]
        ids = [gt.token_ids(gt.lookup_table(vocab.tokens, vocab.unk_id), tokens) for vocab, tokens, _, _ in cases]
        sess.run(tf.tables_initializer())
        for (vocab, _, batch, encode), id_tensor in zip(cases, ids):
            assert id_tensor.dtype == tf.int32
            got = sess.run(id_tensor, {texts: batch}).to_list()
            expected = [encode(text).tolist() for text in batch]
            assert got == expected
            assert any(vocab.unk_id in row for row in expected)  # unknown tokens are in the test
    assert twice.encode(["a"]).tolist() == [3]


def test_every_code_point():
    """Every code point below 0x30000 in the contexts that matter: inside a word, at a word's start, before "n't",
    after an apostrophe, before a capital sigma (is it Cased, Case_Ignorable?), alone on a line. No differences.
    Rows are compared joined by " " (no token holds one) with their token counts, which is 5 times faster."""
    chars = [chr(c) for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF]
    sentences = [f"A{c}\u03a3 {c}b'{c}n't" for c in chars]
    texts = [f"a{c}b\n{c}" for c in chars]
    with tf.Graph().as_default(), tf.Session() as sess:
        batch, text = tf.placeholder(tf.string, [None]), tf.placeholder(tf.string, [])
        classifier, lm = [(tf.strings.reduce_join(tokens, axis=1, separator=" "), tokens.row_lengths())
                          for tokens in (gt.classifier_tokens(batch), gt.lm_word_tokens(batch))]
        tokens, counts = sess.run(classifier, {batch: sentences})
        words, word_counts = sess.run(lm, {batch: texts})
        every = sess.run(gt.characters(text[None]), {text: "".join(chars)})
    differing = []
    for c, s, t, got_tokens, n_tokens, got_words, n_words in zip(chars, sentences, texts, tokens, counts, words,
                                                                    word_counts):
        expected_tokens, expected_words = text_io.tokenize(s), text_io.lm_words(t)
        if (got_tokens.decode(), n_tokens) != (" ".join(expected_tokens), len(expected_tokens)) or \
                (got_words.decode(), n_words) != (" ".join(expected_words), len(expected_words)):
            differing.append(hex(ord(c)))
    assert differing == []
    assert [c.decode() for c in every.to_list()[0]] == chars


def test_readable_unicode_classes_differ_only_by_unicode_version():
    """Why WORD_CLASS / SPACE_CLASS come from Python's re, not from RE2's Unicode properties: [\\p{L}\\p{N}_] also
    calls word characters the code points that Python 3.11's Unicode 14.0 leaves unassigned but RE2's newer tables
    assign (4,388 with TF 2.21: Kawi U+11F00.., CJK extension I U+2EBF0.., ...). The readable class of Python's \\s
    is exact. The derived classes differ nowhere."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    with tf.Graph().as_default(), tf.Session() as sess:
        chars = tf.strings.unicode_split(tf.constant(every), "UTF-8")
        classes = [r"[\p{L}\p{N}_]", r"[\t\n\x0b\f\r\x1c-\x1f\x{85}\p{Z}]", f"[{gt.WORD_CLASS}]",
                   f"[{gt.SPACE_CLASS}]", r"[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Z}\p{C}]"]  # the last: RE2 knows it
        word, space, word_derived, space_derived, known = sess.run(
            [tf.strings.regex_full_match(chars, c) for c in classes])
    python_word = np.array([bool(re.fullmatch(r"\w", c)) for c in every])
    python_space = np.array([c.isspace() for c in every])
    assert (word_derived == python_word).all() and (space_derived == python_space).all()
    assert (space == python_space).all()
    differing = np.flatnonzero(word != python_word)
    print(f"[\\p{{L}}\\p{{N}}_] differs from Python's \\w at {differing.size} code points")
    unassigned_in_python = np.array([unicodedata.category(every[i]) == "Cn" for i in differing], bool)
    assert (unassigned_in_python | ~known[differing]).all()  # only characters one side's Unicode does not have
