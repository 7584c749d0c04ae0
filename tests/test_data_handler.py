"""data_handler: reading and decoding, vocabularies, LM corpora, labelled layouts, the registry and its downloads."""
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import config
import data_handler as dh
from config import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")


# --------------------------------------------------------------------------------------------------- reading

def test_read_text_names_the_problem(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.bin").write_bytes(b"abc\x00def")
    (tmp_path / "latin.txt").write_bytes("one\ntwo caf\xe9\n".encode("latin-1"))
    for name, expected in [("missing.txt", "no such file"), ("empty.txt", "empty"),
                           ("blob.bin", "binary file (NUL byte at offset 3)"),
                           ("latin.txt", "not valid utf-8 at byte 11 (line 2)")]:
        with pytest.raises(UserError) as error:
            dh.read_text(tmp_path / name)
        assert name in str(error.value) and expected in str(error.value)
    with pytest.raises(UserError, match="unknown encoding 'klingon'"):
        dh.read_text(tmp_path / "latin.txt", "klingon")


def test_auto_encoding_prefers_utf8_then_cp1252(tmp_path):
    (tmp_path / "u.txt").write_bytes("naïve café\r\n".encode("utf-8"))
    (tmp_path / "w.txt").write_bytes(b"wait for it\x85 \x93quoted\x94\n")
    assert dh.read_text_with_encoding(tmp_path / "u.txt", "auto") == ("naïve café\n", "utf-8")
    text, used = dh.read_text_with_encoding(tmp_path / "w.txt", "auto")
    assert used == "cp1252" and text == "wait for it\u2026 \u201cquoted\u201d\n"
    # An explicit encoding is obeyed: latin-1 keeps 0x85 as the NEL control character, and lines_of does not split
    # a sentence there (str.splitlines would).
    text = dh.read_text(tmp_path / "w.txt", "latin-1")
    assert "\x85" in text and len(dh.lines_of(text.rstrip("\n"))) == 1


def test_tokenize_lowercases_and_splits_clitics_and_punctuation():
    assert dh.tokenize("Don't PANIC, it's fine!<br />Really.") == \
        ["do", "n't", "panic", ",", "it", "'s", "fine", "!", "really", "."]
    assert dh.tokenize("Ünïcode wörds 42") == ["ünïcode", "wörds", "42"]


def test_lm_words_put_eos_at_each_line_end_and_skip_blank_lines():
    assert dh.lm_words("a b\n\n  c \n") == ["a", "b", "<eos>", "c", "<eos>"]


# --------------------------------------------------------------------------------------------------- vocabulary

def test_vocab_is_frequency_ordered_capped_and_compact(tmp_path):
    vocab = dh.build_vocab([["b", "a", "b", "c", "b", "a"], ["d"]], min_count=1, max_size=4,
                           specials=("<unk>", "<eos>"))
    assert vocab.tokens == ["<unk>", "<eos>", "b", "a"]
    ids = vocab.encode(["a", "zzz", "b"])
    assert ids.dtype == np.uint8 and ids.tolist() == [3, 0, 2]
    assert vocab.decode(ids) == ["a", "<unk>", "b"]
    assert dh.build_vocab([["x", "x", "y"]], min_count=2).tokens == ["<unk>", "x"]
    big = dh.Vocab(["<unk>"] + [f"w{i}" for i in range(300)])
    assert big.encode(["w299"]).dtype == np.uint16
    assert dh.Vocab.from_json(json.loads(json.dumps(vocab.to_json())), "v") == vocab
    with pytest.raises(UserError, match="bad.json: not a vocabulary"):
        dh.Vocab.from_json([1, 2], "bad.json")


def test_character_encoding_of_a_string_matches_token_by_token():
    text = "héllo, wörld\n\u2603"
    vocab = dh.build_vocab([text[:-1]], specials=dh.LM_SPECIALS["char"])
    np.testing.assert_array_equal(vocab.encode(text), vocab.encode(list(text)))
    assert vocab.encode(text)[-1] == vocab.id("<unk>")  # the snowman is not in the training text


# --------------------------------------------------------------------------------------------------- LM corpora

def test_embedded_default_is_real_prose_and_deterministic():
    corpus = dh.load_lm_corpus(None, "word")
    assert len(corpus.train) > 50000 and corpus.valid and corpus.test
    assert corpus.train[:1] != ["<eos>"] and "the" in corpus.train[:200]
    assert dh.load_lm_corpus(None, "word").train == corpus.train
    chars = dh.load_lm_corpus(None, "char", valid_fraction=0.1, test_fraction=0.1)
    total = len(chars.train) + len(chars.valid) + len(chars.test)
    assert total == len(dh.embedded_text()) and abs(len(chars.valid) / total - 0.1) < 0.01


def test_lm_corpus_from_a_split_folder_and_from_a_single_file(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(f" {split} words here \n second line\n")
    corpus = dh.load_lm_corpus(str(tmp_path), "word")
    assert corpus.train == ["train", "words", "here", "<eos>", "second", "line", "<eos>"]
    assert corpus.valid[0] == "valid" and corpus.test[0] == "test"
    single = tmp_path / "one"
    single.mkdir()
    (single / "book.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    corpus = dh.load_lm_corpus(str(single), "word", valid_fraction=0.1, test_fraction=0.1)
    assert corpus.train[:3] == ["line", "0", "<eos>"] and corpus.test[-3:] == ["line", "99", "<eos>"]
    assert corpus.valid[0] == "line"  # cut at a line end
    simple = tmp_path / "simple-examples"
    simple.mkdir()
    for name in ("ptb.train.txt", "ptb.char.train.txt", "ptb.valid.txt", "ptb.char.valid.txt"):
        (simple / name).write_text(f"{name} text\n")
    assert dh.load_lm_corpus(str(simple), "word").train[0] == "ptb.train.txt"  # not the character files
    (simple / "ptb.test.txt").write_text("a\n")
    (simple / "lm-test.txt").write_text("b\n")
    with pytest.raises(UserError, match="both 'lm-test.txt' and 'ptb.test.txt' look like the test split"):
        dh.load_lm_corpus(str(simple), "word")
    with pytest.raises(UserError, match="nowhere: no such file or folder, and not a dataset name"):
        dh.load_lm_corpus(str(tmp_path / "nowhere"))


# --------------------------------------------------------------------------------------------------- classification

def test_labelled_layouts(tmp_path):
    tab = tmp_path / "tab.txt"
    tab.write_text("pos\tA fine film\n\nneg\tdull .\nneg\t \n")
    reader = dh._Reader("auto", "coarse")
    examples = reader.labelled_file(tab)
    assert examples.labels == ["pos", "neg"] and examples.texts[0] == ["a", "fine", "film"]
    assert reader.skipped_empty == 2
    sst = tmp_path / "train.tsv"
    sst.write_text("sentence\tlabel\nit 's great \t1\nbad\t0\n")
    assert dh._Reader("auto", "coarse").labelled_file(sst).labels == ["1", "0"]
    trec = tmp_path / "trec.txt"
    trec.write_text("NUM:date When was it ?\nHUM:ind Who is he ?\n")
    assert dh._Reader("auto", "coarse").labelled_file(trec).labels == ["NUM", "HUM"]
    assert dh._Reader("auto", "fine").labelled_file(trec).labels == ["NUM:date", "HUM:ind"]
    numbered = tmp_path / "subj.all"
    numbered.write_text("0 a subjective one\n1 plot: it happens\n")
    assert dh._Reader("auto", "coarse").labelled_file(numbered).labels == ["0", "1"]
    plain = tmp_path / "plain.txt"
    plain.write_text("NUM:date ok\njust words\n")
    with pytest.raises(UserError, match=r"plain.txt:2: no label"):
        dh._Reader("auto", "coarse").labelled_file(plain)


def test_class_folders_and_class_files(tmp_path):
    imdb = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg", "unsup"):
            (imdb / split / label).mkdir(parents=True)
            for i in range(3):
                (imdb / split / label / f"{i}_7.txt").write_text(f"Review {i}.<br />Of {label}")
        (imdb / split / "urls_pos.txt").write_text("http://example\n")
    data = dh.load_classification(str(imdb), valid_fraction=0.34)
    assert data.label_names == ["neg", "pos"]  # unsup is not a class
    assert len(data.train.texts) == 4 and len(data.valid.texts) == 2 and len(data.test.texts) == 6
    assert data.test.texts[0] == ["review", "0", ".", "of", "neg"]
    per_class = tmp_path / "perclass"
    per_class.mkdir()
    (per_class / "pos.txt").write_text("good\ngreat\n")
    (per_class / "neg.txt").write_text("bad\nawful\nworse\n")
    data = dh.load_classification(str(per_class), valid_fraction=0.2, test_fraction=0.2)
    assert data.label_names == ["neg", "pos"]
    assert sum(len(s.texts) for s in (data.train, data.valid, data.test)) == 5


def test_fraction_splits_are_disjoint_seeded_and_complete(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("".join(f"{'ab'[i % 2]}\tsentence number {i}\n" for i in range(200)))
    a = dh.load_classification(str(path), valid_fraction=0.1, test_fraction=0.2, seed=5)
    b = dh.load_classification(str(path), valid_fraction=0.1, test_fraction=0.2, seed=5)
    c = dh.load_classification(str(path), valid_fraction=0.1, test_fraction=0.2, seed=6)
    assert (len(a.train.texts), len(a.valid.texts), len(a.test.texts)) == (140, 20, 40)
    ids = [tuple(t) for split in (a.train, a.valid, a.test) for t in split.texts]
    assert len(set(ids)) == 200
    assert a.test.texts == b.test.texts and a.test.texts != c.test.texts


def test_cv_folds_are_disjoint_and_cover_the_data():
    folds = dh.cv_folds(103, 10, seed=3)
    assert len(folds) == 10 and {len(f) for f in folds} == {10, 11}
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(103))
    assert dh.cv_folds(103, 10, seed=3)[0].tolist() == folds[0].tolist()


def test_embedded_classification_default_is_deterministic_and_labelled_by_package():
    a, b = dh.embedded_docstrings(), dh.embedded_docstrings()
    assert a == b
    assert set(a.labels) == set(dh.EMBEDDED_PACKAGES)
    assert len(a.texts) > 1000 and min(len(t) for t in a.texts) >= 4
    counts = {p: a.labels.count(p) for p in dh.EMBEDDED_PACKAGES}
    assert min(counts.values()) > 50, counts


def test_embeddings_are_read_and_checked(tmp_path):
    vocab = dh.Vocab(["<pad>", "<unk>", "good", "film"])
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nGood 1 2 3\ngood 9 9 9\nfilm 0.5 0.5 0.5\nother 1 1 1\n")
    matrix, found = dh.load_embeddings(vectors, vocab, 3)
    assert found == 2 and matrix.shape == (4, 3)
    np.testing.assert_array_equal(matrix[2], [1, 2, 3])  # the first spelling of a lower-cased word wins
    np.testing.assert_array_equal(matrix[0], 0)
    assert np.abs(matrix[1]).max() <= 0.25
    with pytest.raises(UserError, match=r"vectors.txt:2: vectors have 3 dimensions, the model's embedding_size is 5"):
        dh.load_embeddings(vectors, vocab, 5)


def write_word2vec_binary(path, vectors, opener=open):
    with opener(path, "wb") as f:
        f.write(f"{len(vectors)} {len(vectors[0][1])}\n".encode())
        for word, values in vectors:
            f.write(word.encode() + b" " + np.asarray(values, "<f4").tobytes() + b"\n")


VECTORS = [("Good", [1, 2, 3]), ("good", [9, 9, 9]), ("film", [0.5, -0.25, 1e-3]), ("n't", [1, 0, 1]),
           ("other", [7, 7, 7])]


@pytest.mark.parametrize("form", ["glove.txt", "word2vec.txt", "glove.txt.gz", "word2vec.bin", "word2vec.bin.gz"])
def test_vectors_read_alike_in_every_format(tmp_path, form):
    """GloVe text, word2vec text (with its count line), gzipped, and word2vec's binary format: the words the
    tokenizer makes (lower-cased, "n't" split off) get their vectors, the first spelling of a word wins."""
    path = str(tmp_path / form)
    opener = gzip.open if form.endswith(".gz") else open
    if ".bin" in form:
        write_word2vec_binary(path, VECTORS, opener)
    else:
        header = f"{len(VECTORS)} 3\n" if form.startswith("word2vec") else ""
        with opener(path, "wt") as f:
            f.write(header + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in VECTORS))
    vocab = dh.build_vocab([dh.tokenize("A GOOD film, don't you think?")], specials=dh.CLASSIFY_SPECIALS)
    matrix, found = dh.load_embeddings(path, vocab, 3)
    assert found == 3  # good, film, n't of 10 tokens
    np.testing.assert_array_equal(matrix[vocab.id("good")], [1, 2, 3])
    np.testing.assert_array_equal(matrix[vocab.id("film")], np.float32([0.5, -0.25, 1e-3]))
    np.testing.assert_array_equal(matrix[vocab.id("n't")], [1, 0, 1])
    assert np.abs(matrix[vocab.id("think")]).max() <= 0.25 and not np.any(matrix[vocab.id("<pad>")])
    with pytest.raises(UserError, match="vectors have 3 dimensions, the model's embedding_size is 4"):
        dh.load_embeddings(path, vocab, 4)


def test_the_glove_recipe_names_registry_vectors_of_its_width():
    import config
    cfg = config.named_config("classify_glove")
    assert cfg.embeddings in dh.VECTORS and dh.VECTORS[cfg.embeddings].member == f"glove.6B.{cfg.embedding_size}d.txt"


def test_bad_vector_files_are_named_in_one_line(tmp_path):
    vocab = dh.Vocab(["<pad>", "<unk>", "good"])
    write_word2vec_binary(tmp_path / "v.bin", VECTORS)
    (tmp_path / "cut.bin").write_bytes((tmp_path / "v.bin").read_bytes()[:-20])
    (tmp_path / "bad.txt").write_text("the 1 2 3\ngood 1 x 3\n")
    (tmp_path / "nan.txt").write_text("good 1 nan 3\n")
    (tmp_path / "nohead.bin").write_bytes(b"good 1 2 3\n")
    for name, message in (("cut.bin", r"cut.bin: ends inside vector 5 of 5"),
                          ("bad.txt", r"bad.txt:2: not a number in the vector of 'good'"),
                          ("nan.txt", r"nan.txt:1: the vector of 'good' has 3 values, not all finite"),
                          ("nohead.bin", r"nohead.bin: not a word2vec binary file"),
                          ("missing.txt", r"missing.txt: no such embeddings file, and not a name of pretrained "
                                          r"vectors \(known: glove.6B.50d")):
        with pytest.raises(UserError, match=message):
            dh.load_embeddings(str(tmp_path / name), vocab, 3)


# --------------------------------------------------------------------------------------------------- real data

@needs_shared
def test_mr_reads_as_cp1252_with_every_sentence_and_no_mojibake():
    data = dh.load_classification(str(SHARED / "mr"), valid_fraction=0.1, test_fraction=0.1)
    everything = data.train.labels + data.valid.labels + data.test.labels
    assert everything.count("pos") == 5331 and everything.count("neg") == 5331
    assert data.encoding == "cp1252"
    words = {w for t in data.train.texts + data.valid.texts + data.test.texts for w in t}
    assert {"\x85", "\x92", "\x93"}.isdisjoint("".join(words))  # no C1 control characters
    assert not any("Ã" in w or "â€" in w for w in words)  # no UTF-8-read-as-latin-1 mojibake
    assert "…" in words and any("é" in w for w in words)


@needs_shared
def test_trec_has_6_coarse_and_50_fine_labels_and_its_given_test_split():
    coarse = dh.load_classification(str(SHARED / "trec"), label_mode="coarse")
    fine = dh.load_classification(str(SHARED / "trec"), label_mode="fine")
    assert coarse.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(set(fine.train.labels + fine.valid.labels)) == 50
    assert len(coarse.test.texts) == 500
    assert len(coarse.train.texts) + len(coarse.valid.texts) == 5452


@needs_shared
def test_shared_copies_match_the_registry_hashes():
    for name, folder in (("trec", "trec"), ("cr", "cr"), ("tinyshakespeare", "tinyshakespeare")):
        for download in dh.REGISTRY[name].files:
            local = SHARED / folder / download.filename
            if name == "tinyshakespeare":
                local = SHARED / folder / "input.txt"
            assert hashlib.sha256(local.read_bytes()).hexdigest() == download.sha256, local


# --------------------------------------------------------------------------------------------------- downloads

@pytest.fixture
def local_server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www; yields (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_download_verifies_extracts_and_is_cached(local_server, tmp_path, monkeypatch):
    www, url = local_server
    with tarfile.open(www / "corpus.tar.gz", "w:gz") as t:
        for split in ("train", "valid", "test"):
            data = (f"{split} text for the model\n" * 50).encode()
            info = tarfile.TarInfo(f"corpus/toy.{split}.txt")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    entry = dh.Dataset("lm", (dh.Download(url + "corpus.tar.gz", sha256(www / "corpus.tar.gz"), "corpus.tar.gz"),),
                       "toy", path="corpus", archive="corpus.tar.gz")
    monkeypatch.setitem(dh.REGISTRY, "toy", entry)
    cache = tmp_path / "cache"
    corpus = dh.load_lm_corpus("toy", "word", cache_dir=str(cache))
    assert corpus.train[:2] == ["train", "text"] and corpus.test[0] == "test"
    (www / "corpus.tar.gz").unlink()  # a second use needs no network
    assert dh.load_lm_corpus("toy", "word", cache_dir=str(cache)).valid == corpus.valid


def test_download_with_a_wrong_hash_is_refused_and_not_kept(local_server, tmp_path, monkeypatch):
    www, url = local_server
    (www / "input.txt").write_text("tampered\n")
    monkeypatch.setitem(dh.REGISTRY, "toy", dh.Dataset("lm", (dh.Download(url + "input.txt", "0" * 64, "input.txt"),),
                                                       "toy", path="input.txt"))
    with pytest.raises(UserError, match="SHA-256 is .* expected 0000"):
        dh.fetch("toy", str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "cache" / "toy") == []
    monkeypatch.setitem(dh.REGISTRY, "gone", dh.Dataset("lm", (dh.Download(url + "gone.txt", "0" * 64, "g.txt"),),
                                                        "gone", path="g.txt"))
    with pytest.raises(UserError, match="gone.txt: download failed"):
        dh.fetch("gone", str(tmp_path / "cache"))


def test_named_vectors_are_downloaded_verified_unpacked_and_cached(local_server, tmp_path, monkeypatch):
    """--embeddings NAME: the archive is checked against its SHA-256, the one member is unpacked, and a second
    use needs no network; a wrong hash keeps nothing, and an entry with no hash recorded is never downloaded."""
    www, url = local_server
    with zipfile.ZipFile(www / "toy.zip", "w") as z:
        z.writestr("toy.3d.txt", "good 1 2 3\nfilm 4 5 6\n")
        z.writestr("toy.5d.txt", "good 1 2 3 4 5\n")
    monkeypatch.setattr(dh, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(dh.VECTORS, "toy.3d", dh.Vectors(dh.Download(url + "toy.zip", sha256(www / "toy.zip"),
                                                                     "toy.zip"), "toy.3d.txt", "toy"))
    vocab = dh.Vocab(["<pad>", "<unk>", "good", "film"])
    matrix, found = dh.load_embeddings("toy.3d", vocab, 3)
    assert found == 2 and matrix[3].tolist() == [4, 5, 6]
    assert sorted(os.listdir(tmp_path / "cache" / "vectors")) == ["toy.3d.txt", "toy.zip"]
    (www / "toy.zip").unlink()
    assert dh.load_embeddings("toy.3d", vocab, 3)[1] == 2
    (www / "other.zip").write_bytes(b"not what was published")
    monkeypatch.setitem(dh.VECTORS, "toy.bad", dh.Vectors(dh.Download(url + "other.zip", "0" * 64, "other.zip"),
                                                          "x.txt", "toy"))
    with pytest.raises(UserError, match="other.zip: SHA-256 is .* expected 0000"):
        dh.load_embeddings("toy.bad", vocab, 3)
    assert not os.path.exists(tmp_path / "cache" / "vectors" / "other.zip")
    with pytest.raises(UserError, match=r"glove.6B.300d: no SHA-256 is recorded for "
                                        r"https://nlp.stanford.edu/data/glove.6B.zip yet"):
        dh.load_embeddings("glove.6B.300d", vocab, 300)


def test_a_registry_entry_can_name_its_class_files(tmp_path, monkeypatch):
    """As SUBJ: a zip whose folder holds quote.tok.gt9.5000 (subjective), plot.tok.gt9.5000 and a README."""
    archive = tmp_path / "subjectivity.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("subjectivity/quote.tok.gt9.5000", "".join(f"i loved scene {i}\n" for i in range(30)))
        z.writestr("subjectivity/plot.tok.gt9.5000", "".join(f"he goes to town {i}\n" for i in range(30)))
        z.writestr("subjectivity/README", "not a class\n")
    monkeypatch.setitem(dh.REGISTRY, "toy", dh.Dataset(
        "classify", (dh.Download(archive.as_uri(), sha256(archive), "subjectivity.zip"),), "toy",
        path="subjectivity", archive="subjectivity.zip",
        classes=(("subjective", "quote.tok.gt9.5000"), ("objective", "plot.tok.gt9.5000"))))
    data = dh.load_classification("toy", cache_dir=str(tmp_path / "cache"))
    assert data.label_names == ["objective", "subjective"]
    assert sum(len(split.texts) for split in (data.train, data.valid, data.test)) == 60


def test_file_urls_work_too(tmp_path, monkeypatch):
    source = tmp_path / "source.txt"
    source.write_text("first line\nsecond line\n" * 20)
    monkeypatch.setitem(dh.REGISTRY, "toy", dh.Dataset("lm", (dh.Download(source.as_uri(), sha256(source), "a.txt"),),
                                                       "toy", path="a.txt"))
    assert dh.load_lm_corpus("toy", "char", cache_dir=str(tmp_path / "cache")).train.startswith("first line")


@pytest.mark.parametrize("kind", ["tar-dotdot", "tar-absolute", "tar-symlink", "zip-dotdot"])
def test_archives_that_escape_are_refused(tmp_path, kind):
    archive = tmp_path / ("evil.zip" if kind.startswith("zip") else "evil.tar")
    if kind == "zip-dotdot":
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("../escaped.txt", "gotcha")
    else:
        with tarfile.open(archive, "w") as t:
            info = tarfile.TarInfo({"tar-dotdot": "data/../../escaped.txt", "tar-absolute": "/tmp/escaped.txt",
                                    "tar-symlink": "link"}[kind])
            if kind == "tar-symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                t.addfile(info)
            else:
                info.size = 6
                t.addfile(info, io.BytesIO(b"gotcha"))
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(UserError, match="evil"):
        dh.extract_safely(str(archive), str(destination))
    assert not (tmp_path / "escaped.txt").exists() and os.listdir(destination) == []


# --------------------------------------------------------------------------------------------------- input bounds

def refused(call, message):
    with pytest.raises(UserError) as error:
        call()
    assert str(error.value) == message
    return message


def test_what_is_not_a_regular_file_is_refused_before_it_is_opened(tmp_path, no_hang):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    refused(lambda: dh.read_text(fifo), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: dh.read_text_with_encoding("/dev/null", "auto"),
            "/dev/null: not a regular file (a character device), expected a text file")
    refused(lambda: dh.load_lm_corpus(str(fifo)), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: dh.load_classification(str(fifo)), f"{fifo}: not a regular file (a FIFO), expected a text file")
    refused(lambda: dh.load_embeddings(str(fifo), dh.Vocab(["<pad>", "<unk>", "a"]), 3),
            f"{fifo}: not a regular file (a FIFO), expected a word-vector file")


def test_a_fifo_inside_a_data_folder_is_refused_not_opened_nor_skipped(tmp_path, no_hang):
    def folder(name, regular, fifo):
        path = tmp_path / name
        for entry in regular:
            (path / entry).parent.mkdir(parents=True, exist_ok=True)
            (path / entry).write_text("pos\tgood one\nneg\tbad one\n")
        (path / fifo).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path / fifo)
        return path, f"{path / fifo}: not a regular file (a FIFO), expected a text file"

    split, message = folder("splits", ["valid.txt"], "train.txt")  # named by split
    refused(lambda: dh.load_lm_corpus(str(split)), message)
    refused(lambda: dh.load_classification(str(split)), message)
    single, message = folder("single", ["book.txt"], "more.txt")  # one text file and a FIFO beside it
    refused(lambda: dh.load_lm_corpus(str(single)), message)
    per_class, message = folder("perclass", ["pos.txt"], "neg.txt")  # one file per class
    refused(lambda: dh.load_classification(str(per_class)), message)
    class_folders, message = folder("classes", ["pos/1.txt"], "neg/2.txt")  # a folder per class, a file per example
    refused(lambda: dh.load_classification(str(class_folders)), message)


def test_a_fifo_swapped_in_after_the_check_does_not_block_the_open(tmp_path, monkeypatch, no_hang):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    monkeypatch.setattr(dh, "check_regular", lambda path, expected="": os.stat(tmp_path))  # the check passed
    refused(lambda: dh.read_text(fifo), f"{fifo}: not a regular file (a FIFO), expected a text file")


def test_a_text_too_large_for_the_memory_available_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    big.write_bytes(b"some words\n" * (dh.SMALL_TEXT // 11 + 1))
    size = big.stat().st_size
    monkeypatch.setattr(config, "available_memory", lambda: size * dh.TEXT_MEMORY_FACTOR - 1)
    with pytest.raises(UserError) as error:
        dh.read_text(big)
    assert str(error.value) == (f"{big}: {size:,} bytes is too large to read into memory here: its text and tokens "
                                f"take about {dh.TEXT_MEMORY_FACTOR} times that (16.0 MiB), and 16.0 MiB are "
                                "available; split the file or free memory")
    with pytest.raises(UserError, match="bytes is too large to read into memory"):
        dh.load_lm_corpus(str(big))  # the corpus of a language model, read through read_text
    monkeypatch.setattr(config, "available_memory", lambda: size * dh.TEXT_MEMORY_FACTOR)
    assert dh.read_text(big).startswith("some words\n")
    monkeypatch.setattr(config, "available_memory", lambda: None)  # unknown (no /proc/meminfo): read it
    assert len(dh.read_text(big)) == size
    small = tmp_path / "small.txt"
    small.write_text("a few words\n")
    monkeypatch.setattr(config, "available_memory", lambda: 1)  # a small file is read without asking
    assert dh.read_text(small) == "a few words\n"


def labelled(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{label}\tsentence {i} of {label}\n" for i, label in enumerate(rows)))
    return path


def test_a_classifier_needs_two_labels(tmp_path):
    one = labelled(tmp_path / "one.txt", ["pos"] * 30)
    cdata = dh.load_classification(str(one))
    refused(lambda: dh.check_labels(cdata),
            f"{one}: every training example has label 'pos'; a classifier needs at least two labels")
    refused(lambda: dh.check_labels(cdata, cv=3),
            f"{one}: every example has label 'pos'; a classifier needs at least two labels")
    embedded = dh.load_classification(None)
    embedded = embedded._replace(train=embedded.train._replace(labels=["email"] * len(embedded.train.labels)))
    with pytest.raises(UserError, match=r"^the embedded default \(standard-library docstrings\): every training "):
        dh.check_labels(embedded)
    two = dh.load_classification(str(labelled(tmp_path / "two.txt", ["pos", "neg"] * 15)))
    dh.check_labels(two)
    dh.check_labels(two, cv=3, valid_fraction=0.1, seed=1)


def test_a_label_only_outside_training_is_refused_naming_it_and_the_split(tmp_path):
    given = tmp_path / "given"
    labelled(given / "train.txt", ["a", "b"] * 10)
    labelled(given / "dev.txt", ["a", "b", "c"])
    cdata = dh.load_classification(str(given))
    assert cdata.label_names == ["a", "b", "c"]
    refused(lambda: dh.check_labels(cdata),
            f"label 'c' occurs in the validation split ({given / 'dev.txt'}) but never in the training split "
            f"({given / 'train.txt'}); a classifier learns only the labels it trains on: add training examples of "
            "it, or remove its 1 example")
    # Cut by fraction: a label of one example that the seed put into the test split.
    path = labelled(tmp_path / "cut.txt", ["a", "b"] * 20 + ["rare"])
    seed = next(s for s in range(100) if "rare" in dh.load_classification(str(path), seed=s).test.labels)
    refused(lambda: dh.check_labels(dh.load_classification(str(path), seed=seed)),
            f"label 'rare' occurs in the test split (cut from {path} by --test_fraction) but never in the training "
            f"split ({path}); a classifier learns only the labels it trains on: add training examples of it, or "
            "remove its 1 example")
    # Cross-validation: the fold whose test part holds the one example has none to train on.
    cdata = dh.load_classification(str(path), seed=seed)
    with pytest.raises(UserError, match=r"^--cv 4: in fold [1-4], label 'rare' occurs in the (test|validation) part "
                                        r"but not in the training part \(1 example in all\)"):
        dh.check_labels(cdata, cv=4, valid_fraction=0.1, seed=seed)


def test_encoding_a_split_checks_its_labels_too():
    cfg = config.named_config("classify")
    texts = [["some", "words"]] * 4
    train = dh.LabelledExamples(texts, ["a", "b", "a", "b"])
    one = dh.LabelledExamples(texts, ["a"] * 4)
    other = dh.LabelledExamples(texts[:1], ["c"])
    refused(lambda: dh.encode_classification(cfg, one, one, one, ["a", "b"]),
            "every training example has label 'a'; a classifier needs at least two labels")
    refused(lambda: dh.encode_classification(cfg, train, train, other, ["a", "b", "c"]),
            "label 'c' occurs in the test split but never in the training split; a classifier learns only the "
            "labels it trains on")
    assert dh.encode_classification(cfg, train, train, train, ["a", "b"]).label_names == ["a", "b"]


def test_a_pretrained_embedding_too_wide_for_memory_is_refused_before_it_is_allocated(tmp_path, monkeypatch):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 1 2 3\n")
    monkeypatch.setattr(config, "available_memory", lambda: 1 << 30)
    cfg = config.apply_overrides(config.named_config("classify"), {"embeddings": str(vectors),
                                                                   "embedding_size": str(2 ** 31 - 1)})
    with pytest.raises(UserError, match=r"^the model needs about [\d,.]+ GiB .* and 1\.0 GiB are available"):
        dh.pretrained_embedding(cfg, dh.Vocab(["<pad>", "<unk>", "good"]))
