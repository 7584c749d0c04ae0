"""text_io: reading and decoding text files, the word and character tokenizers, and the bounds on what is read."""
import os

import pytest

import config
import data_handler as dh
import datasets
import text_io
from config import UserError
from test_data_handler import refused


# --------------------------------------------------------------------------------------------------- reading

def test_read_text_names_the_problem(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.bin").write_bytes(b"abc\x00def")
    (tmp_path / "latin.txt").write_bytes("one\ntwo caf\xe9\n".encode("latin-1"))
    for name, expected in [("missing.txt", "no such file"), ("empty.txt", "empty"),
                           ("blob.bin", "binary file (NUL byte at offset 3)"),
                           ("latin.txt", "not valid utf-8 at byte 11 (line 2)")]:
        with pytest.raises(UserError) as error:
            text_io.read_text(tmp_path / name)
        assert name in str(error.value) and expected in str(error.value)
    with pytest.raises(UserError, match="unknown encoding 'klingon'"):
        text_io.read_text(tmp_path / "latin.txt", "klingon")


def test_auto_encoding_prefers_utf8_then_cp1252(tmp_path):
    (tmp_path / "u.txt").write_bytes("naïve café\r\n".encode("utf-8"))
    (tmp_path / "w.txt").write_bytes(b"wait for it\x85 \x93quoted\x94\n")
    assert text_io.read_text_with_encoding(tmp_path / "u.txt", "auto") == ("naïve café\n", "utf-8")
    text, used = text_io.read_text_with_encoding(tmp_path / "w.txt", "auto")
    assert used == "cp1252" and text == "wait for it\u2026 \u201cquoted\u201d\n"
    # An explicit encoding is obeyed: latin-1 keeps 0x85 as the NEL control character, and lines_of does not split
    # a sentence there (str.splitlines would).
    text = text_io.read_text(tmp_path / "w.txt", "latin-1")
    assert "\x85" in text and len(text_io.lines_of(text.rstrip("\n"))) == 1


def test_tokenize_lowercases_and_splits_clitics_and_punctuation():
    assert text_io.tokenize("Don't PANIC, it's fine!<br />Really.") == \
        ["do", "n't", "panic", ",", "it", "'s", "fine", "!", "really", "."]
    assert text_io.tokenize("Ünïcode wörds 42") == ["ünïcode", "wörds", "42"]


def test_lm_words_put_eos_at_each_line_end_and_skip_blank_lines():
    assert text_io.lm_words("a b\n\n  c \n") == ["a", "b", "<eos>", "c", "<eos>"]


def test_table_rows_follow_standard_quoting_and_say_where_a_quote_is_left_open():
    text = 'text,label\n"a, quoted\nline break and ""quotes""",pos\n\nplain,neg\n'
    assert text_io.table_rows(text, ",", "t.csv") == [
        (1, ["text", "label"]), (2, ['a, quoted\nline break and "quotes"', "pos"]), (4, []), (5, ["plain", "neg"])]
    assert text_io.table_rows("a\t\"b\tc\"\n", "\t", "t.tsv") == [(1, ["a", "b\tc"])]
    refused(lambda: text_io.table_rows('text,label\nok,pos\n"never closed,neg\nmore,pos\n', ",", "t.csv"),
            "t.csv:3: a quoted field that starts in this record is never closed")
    refused(lambda: text_io.table_rows('text,label\n"quoted" then not,pos\n', ",", "t.csv"),
            "t.csv:2: not valid CSV (',' expected after '\"')")


def test_json_records_are_objects_one_a_line():
    text = '{"text": "hi", "label": 1}\n\n{"text": "yo", "label": "b", "extra": [1]}\n'
    assert text_io.json_records(text, "t.jsonl") == [(1, {"text": "hi", "label": 1}), (2, None),
                                                     (3, {"text": "yo", "label": "b", "extra": [1]})]
    refused(lambda: text_io.json_records('{"text": "hi"}\n["text", "label"]\n', "t.jsonl"),
            "t.jsonl:2: not a JSON object (a JSON array; expected one object per line)")
    refused(lambda: text_io.json_records('{"text": "hi"}\ntext,label\n', "t.jsonl"),
            "t.jsonl:2: not a JSON object (Expecting value at column 1)")

# --------------------------------------------------------------------------------------------------- input bounds

def test_what_is_not_a_regular_file_is_refused_before_it_is_opened(tmp_path, no_hang):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    refused(lambda: text_io.read_text(fifo), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: text_io.read_text_with_encoding("/dev/null", "auto"),
            "/dev/null: not a regular file (a character device), expected a text file")
    refused(lambda: dh.load_lm_corpus(str(fifo)), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: dh.load_classification(str(fifo)), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: datasets.load_embeddings(str(fifo), dh.Vocab(["<pad>", "<unk>", "a"]), 3),
            f"{fifo}: not a regular file (a FIFO), expected a word-vector file")


def test_a_fifo_swapped_in_after_the_check_does_not_block_the_open(tmp_path, monkeypatch, no_hang):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    monkeypatch.setattr(text_io, "check_regular", lambda path, expected="": os.stat(tmp_path))  # the check passed
    refused(lambda: text_io.read_text(fifo), f"{fifo}: not a regular file (a FIFO), expected a text file")


def test_a_text_too_large_for_the_memory_available_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    big.write_bytes(b"some words\n" * (text_io.SMALL_TEXT // 11 + 1))
    size = big.stat().st_size
    monkeypatch.setattr(config, "available_memory", lambda: size * text_io.TEXT_MEMORY_FACTOR - 1)
    with pytest.raises(UserError) as error:
        text_io.read_text(big)
    assert str(error.value) == (f"{big}: {size:,} bytes is too large to read into memory here: its text and tokens "
                                f"take about {text_io.TEXT_MEMORY_FACTOR} times that (16.0 MiB), and 16.0 MiB are "
                                "available; split the file or free memory")
    with pytest.raises(UserError, match="bytes is too large to read into memory"):
        dh.load_lm_corpus(str(big))  # the corpus of a language model, read through read_text
    monkeypatch.setattr(config, "available_memory", lambda: size * text_io.TEXT_MEMORY_FACTOR)
    assert text_io.read_text(big).startswith("some words\n")
    monkeypatch.setattr(config, "available_memory", lambda: None)  # unknown (no /proc/meminfo): read it
    assert len(text_io.read_text(big)) == size
    small = tmp_path / "small.txt"
    small.write_text("a few words\n")
    monkeypatch.setattr(config, "available_memory", lambda: 1)  # a small file is read without asking
    assert text_io.read_text(small) == "a few words\n"
