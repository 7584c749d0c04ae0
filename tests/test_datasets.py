"""datasets: the registry and its verified downloads, safe unpacking, and pretrained word vectors."""
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import config
import data_handler as dh
import datasets
import text_io
from config import UserError
from test_data_handler import SHARED, needs_shared


# --------------------------------------------------------------------------------------------------- word vectors

def test_embeddings_are_read_and_checked(tmp_path):
    vocab = dh.Vocab(["<pad>", "<unk>", "good", "film"])
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 3\nGood 1 2 3\ngood 9 9 9\nfilm 0.5 0.5 0.5\nother 1 1 1\n")
    matrix, found = datasets.load_embeddings(vectors, vocab, 3)
    assert found == 2 and matrix.shape == (4, 3)
    np.testing.assert_array_equal(matrix[2], [1, 2, 3])  # the first spelling of a lower-cased word wins
    np.testing.assert_array_equal(matrix[0], 0)
    assert np.abs(matrix[1]).max() <= 0.25
    with pytest.raises(UserError, match=r"vectors.txt:2: vectors have 3 dimensions, the model's embedding_size is 5"):
        datasets.load_embeddings(vectors, vocab, 5)


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
    vocab = dh.build_vocab([text_io.tokenize("A GOOD film, don't you think?")], specials=text_io.CLASSIFY_SPECIALS)
    matrix, found = datasets.load_embeddings(path, vocab, 3)
    assert found == 3  # good, film, n't of 10 tokens
    np.testing.assert_array_equal(matrix[vocab.id("good")], [1, 2, 3])
    np.testing.assert_array_equal(matrix[vocab.id("film")], np.float32([0.5, -0.25, 1e-3]))
    np.testing.assert_array_equal(matrix[vocab.id("n't")], [1, 0, 1])
    assert np.abs(matrix[vocab.id("think")]).max() <= 0.25 and not np.any(matrix[vocab.id("<pad>")])
    with pytest.raises(UserError, match="vectors have 3 dimensions, the model's embedding_size is 4"):
        datasets.load_embeddings(path, vocab, 4)


def test_the_glove_recipe_names_registry_vectors_of_its_width():
    import config
    cfg = config.named_config("classify_glove")
    assert cfg.embeddings in datasets.VECTORS and \
        datasets.VECTORS[cfg.embeddings].member == f"glove.6B.{cfg.embedding_size}d.txt"


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
            datasets.load_embeddings(str(tmp_path / name), vocab, 3)


# --------------------------------------------------------------------------------------------------- real data

@needs_shared
def test_shared_copies_match_the_registry_hashes():
    for name, folder in (("trec", "trec"), ("cr", "cr"), ("tinyshakespeare", "tinyshakespeare")):
        for download in datasets.REGISTRY[name].files:
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
    entry = datasets.Dataset("lm", (datasets.Download(url + "corpus.tar.gz", sha256(www / "corpus.tar.gz"),
                                                      "corpus.tar.gz"),), "toy", path="corpus", archive="corpus.tar.gz")
    monkeypatch.setitem(datasets.REGISTRY, "toy", entry)
    cache = tmp_path / "cache"
    corpus = dh.load_lm_corpus("toy", "word", cache_dir=str(cache))
    assert corpus.train[:2] == ["train", "text"] and corpus.test[0] == "test"
    (www / "corpus.tar.gz").unlink()  # a second use needs no network
    assert dh.load_lm_corpus("toy", "word", cache_dir=str(cache)).valid == corpus.valid


def test_download_with_a_wrong_hash_is_refused_and_not_kept(local_server, tmp_path, monkeypatch):
    www, url = local_server
    (www / "input.txt").write_text("tampered\n")
    monkeypatch.setitem(datasets.REGISTRY, "toy", datasets.Dataset(
        "lm", (datasets.Download(url + "input.txt", "0" * 64, "input.txt"),), "toy", path="input.txt"))
    with pytest.raises(UserError, match="SHA-256 is .* expected 0000"):
        datasets.fetch("toy", str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "cache" / "toy") == []
    monkeypatch.setitem(datasets.REGISTRY, "gone", datasets.Dataset(
        "lm", (datasets.Download(url + "gone.txt", "0" * 64, "g.txt"),), "gone", path="g.txt"))
    with pytest.raises(UserError, match="gone.txt: download failed"):
        datasets.fetch("gone", str(tmp_path / "cache"))


def test_named_vectors_are_downloaded_verified_unpacked_and_cached(local_server, tmp_path, monkeypatch):
    """--embeddings NAME: the archive is checked against its SHA-256, the one member is unpacked, and a second
    use needs no network; a wrong hash keeps nothing."""
    www, url = local_server
    with zipfile.ZipFile(www / "toy.zip", "w") as z:
        z.writestr("toy.3d.txt", "good 1 2 3\nfilm 4 5 6\n")
        z.writestr("toy.5d.txt", "good 1 2 3 4 5\n")
    monkeypatch.setattr(datasets, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(datasets.VECTORS, "toy.3d", datasets.Vectors(
        datasets.Download(url + "toy.zip", sha256(www / "toy.zip"), "toy.zip"), "toy.3d.txt", "toy"))
    vocab = dh.Vocab(["<pad>", "<unk>", "good", "film"])
    matrix, found = datasets.load_embeddings("toy.3d", vocab, 3)
    assert found == 2 and matrix[3].tolist() == [4, 5, 6]
    assert sorted(os.listdir(tmp_path / "cache" / "vectors")) == ["toy.3d.txt", "toy.zip"]
    (www / "toy.zip").unlink()
    assert datasets.load_embeddings("toy.3d", vocab, 3)[1] == 2
    (www / "other.zip").write_bytes(b"not what was published")
    monkeypatch.setitem(datasets.VECTORS, "toy.bad", datasets.Vectors(
        datasets.Download(url + "other.zip", "0" * 64, "other.zip"), "x.txt", "toy"))
    with pytest.raises(UserError, match="other.zip: SHA-256 is .* expected 0000"):
        datasets.load_embeddings("toy.bad", vocab, 3)
    assert not os.path.exists(tmp_path / "cache" / "vectors" / "other.zip")


def test_a_download_has_exactly_one_checksum():
    """Nothing is downloaded unverified: an entry with no checksum, two, or a malformed one does not even load."""
    for sha256_hex, md5_hex in (("", ""), ("0" * 64, "0" * 32), ("0" * 40, ""), ("", "0" * 64), ("", "A" * 32)):
        with pytest.raises(ValueError, match="a Download takes a SHA-256 or an MD5"):
            datasets.Download("https://example.org/f", sha256_hex, "f", md5=md5_hex)
    assert datasets.Download("https://example.org/f", "", "f", md5="0" * 32).checksum() == ("md5", "MD5", "0" * 32)


def fake_glove_zip(path, words, widths):
    """A zip laid out as glove.6B.zip, one glove.6B.<width>d.txt per width at its root; word i's vector is
    i, i + 1/4, i + 2/4, ... (exact in float32)."""
    with zipfile.ZipFile(path, "w") as z:
        for width in widths:
            z.writestr(f"glove.6B.{width}d.txt", "".join(f"{word} {' '.join(str(i + k / 4) for k in range(width))}\n"
                                                         for i, word in enumerate(words)))


def test_the_glove_recipe_downloads_glove_6b_verified_by_its_md5(local_server, tmp_path, monkeypatch, capsys):
    """--config classify_glove end to end, from its registry entry: glove.6B.zip (a small fake, served from
    127.0.0.1, its MD5 patched into the entry) is checked by MD5, its 50d member is unpacked into the cache and
    becomes the embedding. A wrong MD5 is refused in one line, and leaves neither the archive nor vectors behind."""
    www, url = local_server
    fake_glove_zip(www / "glove.6B.zip", ["the", "good", "film", "n't"], (50, 100))
    md5 = hashlib.md5((www / "glove.6B.zip").read_bytes()).hexdigest()
    cfg = config.named_config("classify_glove")
    entry = datasets.VECTORS[cfg.embeddings]

    def registered_with(md5_hex, cache):
        download = dataclasses.replace(entry.download, url=url + "glove.6B.zip", md5=md5_hex)
        monkeypatch.setitem(datasets.VECTORS, cfg.embeddings, dataclasses.replace(entry, download=download))
        monkeypatch.setattr(datasets, "CACHE_DIR", str(cache))
        return cache / "vectors"

    folder = registered_with(md5, tmp_path / "cache")
    vocab = dh.build_vocab([text_io.tokenize("The good film isn't bad")], specials=text_io.CLASSIFY_SPECIALS)
    matrix = dh.pretrained_embedding(cfg, vocab)["embedding"]
    assert "embeddings: 4 of 8 words found in glove.6B.50d" in capsys.readouterr().out
    np.testing.assert_array_equal(matrix[vocab.id("film")], [2 + k / 4 for k in range(50)])
    assert sorted(os.listdir(folder)) == ["glove.6B.50d.txt", "glove.6B.zip"]
    folder = registered_with("0" * 32, tmp_path / "other")
    with pytest.raises(UserError) as error:
        dh.pretrained_embedding(cfg, vocab)
    assert str(error.value) == f"{url}glove.6B.zip: MD5 is {md5}, expected {'0' * 32}; the file was not kept"
    assert os.listdir(folder) == []


def test_a_registry_entry_can_name_its_class_files(tmp_path, monkeypatch):
    """As SUBJ: a zip whose folder holds quote.tok.gt9.5000 (subjective), plot.tok.gt9.5000 and a README."""
    archive = tmp_path / "subjectivity.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("subjectivity/quote.tok.gt9.5000", "".join(f"i loved scene {i}\n" for i in range(30)))
        z.writestr("subjectivity/plot.tok.gt9.5000", "".join(f"he goes to town {i}\n" for i in range(30)))
        z.writestr("subjectivity/README", "not a class\n")
    monkeypatch.setitem(datasets.REGISTRY, "toy", datasets.Dataset(
        "classify", (datasets.Download(archive.as_uri(), sha256(archive), "subjectivity.zip"),), "toy",
        path="subjectivity", archive="subjectivity.zip",
        classes=(("subjective", "quote.tok.gt9.5000"), ("objective", "plot.tok.gt9.5000"))))
    data = dh.load_classification("toy", cache_dir=str(tmp_path / "cache"))
    assert data.label_names == ["objective", "subjective"]
    assert sum(len(split.texts) for split in (data.train, data.valid, data.test)) == 60


def test_file_urls_work_too(tmp_path, monkeypatch):
    source = tmp_path / "source.txt"
    source.write_text("first line\nsecond line\n" * 20)
    monkeypatch.setitem(datasets.REGISTRY, "toy", datasets.Dataset(
        "lm", (datasets.Download(source.as_uri(), sha256(source), "a.txt"),), "toy", path="a.txt"))
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
        datasets.extract_safely(str(archive), str(destination))
    assert not (tmp_path / "escaped.txt").exists() and os.listdir(destination) == []
