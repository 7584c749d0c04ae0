"""Raw UTF-8 text to token ids inside the graph, so that a SavedModel takes text and runs no Python code of ours.

Every function here builds standard TensorFlow ops (tf.strings, tf.ragged, tf.lookup, tf.searchsorted) and gives, for
valid UTF-8 input, exactly what text_io's and data_handler's Python give for the same str: classifier_tokens =
tokenize, lm_word_tokens = lm_words, characters = list, lookup_table + token_ids = Vocab.encode.
tests/test_graph_text.py checks this on tricky sentences and on every code point from 0 to 0x2FFFF.

Three things stand between the Python regex and TensorFlow, and each is handled here rather than approximated:

- RE2 (the engine of tf.strings.regex_*) has no lookahead. `\\w+(?=n't)` becomes `W+n't`, and a second pass
  splits its matches: a word run followed by "n't" can only split as the run without its final "n", then "n't"
  (see TOKEN_PATTERN).
- RE2's `\\w` and `\\s` are ASCII-only; Python's are Unicode. The readable Unicode classes are exact for `\\s`
  (`[\\t\\n\\x0b\\f\\r\\x1c-\\x1f\\x{85}\\p{Z}]`: 0 of 0x10F800 code points differ), but not for `\\w`:
  `[\\p{L}\\p{N}_]` counts 4,388 more code points as word characters, all unassigned in Python 3.11's Unicode 14.0
  database and letters or digits in RE2's newer tables (Kawi U+11F00.., CJK extension I U+2EBF0.., ...). So the
  classes below are taken from Python's own `re` (WORD_CLASS, SPACE_CLASS), and the graph agrees with the Python
  that builds it whatever Unicode versions RE2 and ICU carry.
- tf.strings.lower(encoding="utf-8") (ICU) cuts a string at its first NUL ("a\\0B" -> "a") and, with the ICU
  TF 2.21 bundles, leaves the 40 capitals new in Unicode 14.0 (U+2C2F, U+A7C0, U+10570.. Vithkuqi, ...) unchanged,
  which str.lower lower-cases. `lower` here does str.lower's work itself from Python's tables: Greek capital sigma
  by its final-sigma rule (regex passes, see `lower`), U+0130 to "i" + U+0307 (the only capital whose lower case is
  two characters), every other code point through a sorted table of Python's single-character lower cases.

Input must be valid UTF-8 (a Python str encodes to nothing else); invalid bytes are not part of the contract.
The classes and tables are computed from Python's str and re once, when this module is imported (about 0.2 s).
"""
import re
from typing import NamedTuple

import numpy as np

from tf1 import tf

SEPARATOR = " "  # joins tokens before the split: a Python whitespace character, so never inside a token
CAPITAL_SIGMA = "\u03a3"
DOTTED_CAPITAL_I = "\u0130"  # str.lower gives "i" + U+0307 COMBINING DOT ABOVE


# --------------------------------------------------------------------------------------------------- Python's classes

def _as_str(codes):
    return np.asarray(codes, "<u4").tobytes().decode("utf-32-le")


def _as_codes(text):
    return np.frombuffer(text.encode("utf-32-le"), "<u4").astype(np.int32)


def _re2_class(codes):
    """An RE2 character-class body ("\\x{41}-\\x{5a}...") of exactly these code points (sorted, distinct)."""
    codes = np.asarray(codes, np.int64)
    breaks = np.flatnonzero(np.diff(codes) != 1)
    starts, ends = codes[np.r_[0, breaks + 1]], codes[np.r_[breaks, codes.size - 1]]
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in zip(starts, ends))


class _Casing(NamedTuple):
    ignorable: str  # RE2 class body: Case_Ignorable (skipped when str.lower looks for a sigma's neighbours)
    cased: str  # Cased and not Case_Ignorable
    neither: str  # neither Cased nor Case_Ignorable
    from_codes: np.ndarray  # sorted int32 code points whose str.lower is one other character (not sigma, not U+0130)
    to_codes: np.ndarray  # their lower cases


def _casing(codes):
    """Python's Cased / Case_Ignorable properties (which unicodedata does not expose), read from what str.lower
    does to a capital sigma after each character, and its one-character lower cases. `codes`: sorted code points."""
    probed = codes != ord(DOTTED_CAPITAL_I)  # U+0130 lowers to two characters; it is a cased capital

    def sigma_is_final_after(before):
        # before + c + SIGMA + "1" for every c, in one str; the "1" keeps the next probe out of the rule's look right
        probes = np.stack(np.broadcast_arrays(ord(before), codes[probed], ord(CAPITAL_SIGMA), ord("1")), axis=1)
        final = np.ones(codes.size, bool)
        final[probed] = _as_codes(_as_str(probes).lower()).reshape(-1, 4)[:, 2] == ord("\u03c2")
        return final

    # After "1" (not cased) SIGMA is final iff c is Cased and not Case_Ignorable (an ignorable c is skipped);
    # after "A", iff c is Case_Ignorable or Cased.
    after_digit, after_letter = sigma_is_final_after("1"), sigma_is_final_after("A")
    lowered = codes.copy()
    lowered[probed] = _as_codes(_as_str(codes[probed]).lower())  # fails if another character lowers to two
    changed = (lowered != codes) & (codes != ord(CAPITAL_SIGMA))
    return _Casing(_re2_class(codes[after_letter & ~after_digit]), _re2_class(codes[after_digit]),
                   _re2_class(codes[~after_letter]), codes[changed], lowered[changed])


_CODES = np.r_[0:0xD800, 0xE000:0x110000].astype(np.int32)  # every code point but the surrogates (not in UTF-8)
_EVERYTHING = _as_str(_CODES)
# Python's `\w` (str.isalnum() or "_", i.e. [\p{L}\p{N}_] in Python's Unicode) and `\s` (str.isspace(), which str.split
# also uses: [\t\n\x0b\f\r\x1c-\x1f\x{85}\p{Z}]), as RE2 class bodies: put them inside [...] or [^...].
WORD_CLASS = _re2_class(_as_codes("".join(re.findall(r"\w", _EVERYTHING))))
SPACE_CLASS = _re2_class(_as_codes("".join(re.findall(r"\s", _EVERYTHING))))
_CASING = _casing(_CODES)
del _CODES, _EVERYTHING

# text_io._TOKEN, r"\w+(?=n't)|n't|'\w+|\w+|[^\w\s]", with its lookahead alternative widened to take the
# "n't" too. RE2 matches leftmost-first like Python's re. At a run of word characters Python's first alternative
# matches iff the whole run is at least two long, ends in "n" and is followed by "'t" (the "'" cannot be inside the
# run), and so does `W+n't`; Python takes the run without its "n", and its next match, from that "n", is "n't". So
# the matches are Python's but for those, which are two Python tokens at once: CLITIC_PATTERN splits them. Python's
# findall skips only whitespace: every other character is in some match.
TOKEN_PATTERN = f"[{WORD_CLASS}]+n't|n't|'[{WORD_CLASS}]+|[{WORD_CLASS}]+|[^{WORD_CLASS}{SPACE_CLASS}]"
# "n't" with a character before it in a token: only the tokens of the widened alternative (no other alternative
# matches an apostrophe after its first character), since TOKEN_PATTERN's rewrite ends every token with SEPARATOR.
CLITIC_PATTERN = f"([^{SEPARATOR}])n't"
# A line (between "\n"s) with a character that is not whitespace: lm_words gives its words, then "<eos>".
NONBLANK_LINE_PATTERN = f"[^\\n]*[^{SPACE_CLASS}][^\\n]*"


# --------------------------------------------------------------------------------------------------- graph functions

def _split_tokens(joined):
    """[batch] strings of tokens and separators -> ragged [batch, (tokens)]: split on SEPARATOR exactly (not on
    tf.strings.split's own whitespace), empty pieces dropped, so "" and separators alone give no token."""
    pieces = tf.strings.split(joined, sep=SEPARATOR, result_type="RaggedTensor")  # [batch, (pieces)]
    return tf.ragged.boolean_mask(pieces, tf.not_equal(pieces, ""))  # [batch, (tokens)]


def lower(strings, name="lower"):
    """[batch] string -> [batch] string, equal to str.lower of each: ICU's tf.strings.lower is not used (it stops at
    a NUL and knows an older Unicode than Python's).

    Capital sigma goes first, while its neighbours are still as str.lower sees them. It becomes final "ς" iff the
    nearest character before it that is not Case_Ignorable is Cased, and the nearest after it that is not
    Case_Ignorable is not Cased or there is none; else "σ". RE2 has no lookaround, so the contexts are matched:
    - pass A lowers to "σ" each sigma that fails the test before it (a match ends at its sigma, which is Cased, so
      no match swallows the context of the next);
    - pass B lowers to "σ" each sigma followed by (Case_Ignorable*) Cased. A match's Cased context may be a sigma
      that needs lowering too, and is skipped; running pass B again lowers it (its own context was not in any match
      of the first run), so two runs are enough;
    - the sigmas left are final.
    Lowering a sigma keeps it Cased and not Case_Ignorable, so each pass sees the contexts str.lower sees."""
    ign, cased, neither = _CASING.ignorable, _CASING.cased, _CASING.neither
    with tf.name_scope(name):
        x = tf.strings.regex_replace(strings, f"(^|[{neither}])([{ign}]*)\\x{{3a3}}", "\\1\\2\u03c3")  # [batch]
        for _ in range(2):
            x = tf.strings.regex_replace(x, f"\\x{{3a3}}([{ign}]*)([{cased}])", "\u03c3\\1\\2")
        x = tf.strings.regex_replace(x, "\\x{3a3}", "\u03c2")
        x = tf.strings.regex_replace(x, "\\x{130}", "i\u0307")
        codes = tf.strings.unicode_decode(x, "UTF-8")  # [batch, (characters)] int32
        flat = codes.flat_values  # [characters]
        from_codes = tf.constant(_CASING.from_codes)  # [mapped], sorted
        found = tf.minimum(tf.searchsorted(from_codes, flat), len(_CASING.from_codes) - 1)  # [characters]
        mapped = tf.where(tf.equal(tf.gather(from_codes, found), flat), tf.gather(_CASING.to_codes, found), flat)
        return tf.strings.unicode_encode(codes.with_flat_values(mapped), "UTF-8", name="lowered")  # [batch]


def classifier_tokens(sentences, name="classifier_tokens"):
    """[batch] string -> ragged [batch, (tokens)] string, equal to text_io.tokenize of each sentence: "<br />"
    dropped (before lower-casing, as tokenize does, so "<BR />" stays four tokens), lower-cased, TOKEN_PATTERN's
    matches. Three passes without capture groups, not one regex with them: RE2 runs the groups of these large
    classes about 5 times slower."""
    with tf.name_scope(name):
        text = lower(tf.strings.regex_replace(sentences, "<br />", " "))  # [batch]
        text = tf.strings.regex_replace(text, TOKEN_PATTERN, f"\\0{SEPARATOR}")  # each match, then SEPARATOR
        text = tf.strings.regex_replace(text, f"[{SPACE_CLASS}]+", SEPARATOR)  # the whitespace between
        text = tf.strings.regex_replace(text, CLITIC_PATTERN, f"\\1{SEPARATOR}n't")  # "don't" -> "do n't"
        return _split_tokens(text)  # [batch, (tokens)]


def lm_word_tokens(texts, name="lm_word_tokens"):
    """[batch] string -> ragged [batch, (tokens)] string, equal to text_io.lm_words of each text: the words of
    each line ("\\n" ends a line; other line breaks, such as U+0085 and U+2028, only separate words), "<eos>" after
    each line that has one."""
    with tf.name_scope(name):
        marked = tf.strings.regex_replace(texts, NONBLANK_LINE_PATTERN, f"\\0{SEPARATOR}<eos>")  # [batch]
        return _split_tokens(tf.strings.regex_replace(marked, f"[{SPACE_CLASS}]+", SEPARATOR))  # [batch, (tokens)]


def characters(texts, name="characters"):
    """[batch] string -> ragged [batch, (characters)] string, each one code point in UTF-8: list(text), the tokens
    of a character model."""
    with tf.name_scope(name):
        return tf.strings.unicode_split(texts, "UTF-8")  # [batch, (characters)]


def lookup_table(tokens, default_id, name="vocabulary"):
    """A StaticHashTable from each of the vocabulary's tokens (Vocab.tokens, in id order) to its int64 id, and
    anything else to default_id (Vocab.unk_id). Built from constants, not a vocabulary file: a character
    vocabulary holds "\\n", which a text file of one token a line cannot. A token listed twice keeps its last id,
    as Vocab.index does. Run tf.tables_initializer() (a SavedModel's main_op does) before the first lookup."""
    index = {token: i for i, token in enumerate(tokens)}
    with tf.name_scope(name):
        initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(list(index), tf.string),
                                                          tf.constant(list(index.values()), tf.int64))
        return tf.lookup.StaticHashTable(initializer, int(default_id))


def token_ids(table, ragged_tokens, name="token_ids"):
    """Ragged [batch, (tokens)] string -> ragged [batch, (tokens)] int32 ids, as Vocab.encode gives them (a token
    not in the vocabulary -> the table's default, <unk>)."""
    with tf.name_scope(name):
        return tf.ragged.map_flat_values(lambda flat: tf.cast(table.lookup(flat), tf.int32), ragged_tokens)
