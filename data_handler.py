"""Corpora as token ids: language-model texts and labelled sentences, their splits, cross-validation folds and
vocabularies, and a task's encoded data (TaskData).

Language models read one text (a file, a folder with train/valid/test files, a registry name, or the embedded
default) and see it through text_io's word or character view. Classifiers read labelled sentences in the common
layouts (see `load_classification`) and see them through `text_io.tokenize`. Vocabularies are frequency ordered,
built from the training split only and saved as JSON (by run_dir.py). Registry names are downloaded by datasets.py,
which also serves `python data_handler.py [NAME...]`. Nothing here imports TensorFlow, and nothing is pickled.
"""
import ast
import collections
import os
import re
import stat
import sys
import sysconfig
from typing import NamedTuple

import numpy as np

import batch_generator
import config
import datasets
import text_io
from config import UserError

SPLIT_NAMES = {"train": "train", "valid": "valid", "dev": "valid", "test": "test"}


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


# --------------------------------------------------------------------------------------------------- language models

class LMCorpus(NamedTuple):
    name: str
    source: str  # where the text came from, for the log
    train: object  # tokens: a list of words, or a str of characters
    valid: object
    test: object
    texts: tuple = ()  # the (train, valid, test) texts the tokens were cut from: the run directory keeps them


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
            raise UserError(f"{os.path.join(folder, entry)}: not a regular file ({text_io.file_kind(mode)}), "
                            "expected a text file")
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
                   cache_dir=datasets.CACHE_DIR):
    """Reads a language-model corpus: None (the embedded default), a registry name, a file (split by fraction), or
    a folder with train/valid/test files (or a single text file)."""
    if data is None:
        text = embedded_text()
        parts, name = split_by_fraction(text, valid_fraction, test_fraction), "pydoc"
        source = f"embedded default (Python's bundled documentation, pydoc_data.topics, {len(text):,} characters)"
    else:
        path, name = datasets.resolve_data(data, cache_dir)
        source = path
        if os.path.isdir(path):
            splits = find_split_files(path)
            files = [] if splits else file_names(path)
            if splits:
                parts = tuple(text_io.read_text(splits[s], encoding) if s in splits else "" for s in ("train", "valid",
                                                                                             "test"))
                if not parts[1]:
                    parts = split_by_fraction(parts[0], valid_fraction, 0.0)[:2] + (parts[2],)
            elif len(files) == 1:
                parts = split_by_fraction(text_io.read_text(os.path.join(path, files[0]), encoding), valid_fraction,
                                          test_fraction)
            else:
                raise UserError(f"{path}: expected one text file or train/valid/test files in the folder")
        else:
            parts = split_by_fraction(text_io.read_text(path, encoding), valid_fraction, test_fraction)
    tokens = [text_io.lm_words(part) if level == "word" else part for part in parts]
    if not len(tokens[0]):
        raise UserError(f"{data}: no {level}s in the training split")
    return LMCorpus(name, source, *tokens, texts=tuple(parts))


# --------------------------------------------------------------------------------------------------- classification

class LabelledExamples(NamedTuple):
    texts: list  # token lists (see text_io.tokenize)
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

# A table's columns by header name (case-insensitive) when --text_column / --label_column do not name them.
DEFAULT_COLUMNS = {
    "text": ("text", "sentence", "review", "content", "document", "body", "comment", "tweet", "message", "question",
             "utterance", "phrase"),
    "label": ("label", "class", "sentiment", "category", "target", "polarity", "intent", "topic", "emotion", "tag"),
}


class Columns(NamedTuple):
    """What --text_column and --label_column say: "" (the one header name of DEFAULT_COLUMNS found), a header name,
    or a column number from 1."""
    text: str = ""
    label: str = ""

    def numbered(self):
        """Whether both columns are given by number: then a file without a header can be read."""
        return column_number(self.text) is not None and column_number(self.label) is not None

    def names(self, role=None):
        """The lower-cased names that make a first row a header: the defaults and the names given (of one role)."""
        roles = (role,) if role else ("text", "label")
        given = {getattr(self, r).strip().lower() for r in roles if getattr(self, r) and
                 column_number(getattr(self, r)) is None}
        return {name for r in roles for name in DEFAULT_COLUMNS[r]} | given


def column_number(given):
    """The 0-based index of a column given by number from 1 (0 gives -1, which choose_column refuses), or None for
    a name."""
    given = given.strip()
    return int(given) - 1 if given.isascii() and given.isdigit() else None


def listed(cells, most=8):
    """A row's cells or an object's fields for a message: quoted, each and their number cut short."""
    shown = [repr(config.shown(str(c), 30)) for c in list(cells)[:most]]
    return ", ".join(shown) + (f", ... ({len(cells)} in all)" if len(cells) > most else "")


def choose_column(names, role, given, where):
    """The index in `names` (a header's cells, a JSON object's fields) of the text or the label column: by number,
    by the name given, or by the one name of DEFAULT_COLUMNS[role] present; else one line naming what was found."""
    number = column_number(given)
    if number is not None:
        if number < 0:
            raise UserError(f"{where}: --{role}_column {given.strip()}: columns are numbered from 1")
        if number >= len(names):
            raise UserError(f"{where}: --{role}_column {given.strip()}: there are only {len(names)} columns "
                            f"({listed(names)})")
        return number
    wanted = (given.strip().lower(),) if given else DEFAULT_COLUMNS[role]
    found = [i for i, name in enumerate(names) if str(name).strip().lower() in wanted]
    if len(found) == 1:
        return found[0]
    if found:
        candidates = " and ".join(repr(names[i]) for i in found)
        raise UserError(f"{where}: {candidates} could each be the {role} column; choose one with --{role}_column")
    if given:
        raise UserError(f"{where}: no column '{given}' (columns: {listed(names)}): name the file's column with "
                        f"--{role}_column")
    raise UserError(f"{where}: no {role} column among {listed(names)} (expected one named "
                    f"{', '.join(DEFAULT_COLUMNS[role][:4])}, ...): name it with --{role}_column")


def table_columns(names, columns, where):
    """(text index, label index) of a table's columns (see choose_column); they must differ."""
    text = choose_column(names, "text", columns.text, where)
    label = choose_column(names, "label", columns.label, where)
    if text == label:
        raise UserError(f"{where}: the text and the label column are both {names[text]!r}")
    return text, label


def json_field(record, key, role, where):
    """A JSON object's text (a string) or label (a string or an integer) as a str; null is empty (and skipped)."""
    value = record[key]
    if value is None:
        return ""
    if isinstance(value, str) or (role == "label" and isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    expected = "a string" if role == "text" else "a string or an integer"
    raise UserError(f"{where}: field '{key}' is a JSON {text_io.json_kind(value)}, expected {expected}")


class _Reader:
    """Reads labelled files, remembering the encodings used and the empty lines skipped. keep_text: an example's
    text is the sentence as written (sample.py --eval prints it), not its tokens."""

    def __init__(self, encoding, label_mode, columns=Columns(), keep_text=False):
        self.encoding, self.label_mode, self.columns, self.keep_text = encoding, label_mode, columns, keep_text
        self.encodings, self.skipped_empty = set(), 0

    def text(self, path):
        text, used = text_io.read_text_with_encoding(path, self.encoding)
        self.encodings.add(used)
        return text

    def add(self, examples, label, text):
        """Appends an example to LabelledExamples, or counts it as empty (no label, or no tokens)."""
        tokens = text_io.tokenize(text)
        if not label or not tokens:
            self.skipped_empty += 1
            return
        examples.texts.append(text if self.keep_text else tokens)
        examples.labels.append(label)

    def sentences(self, path):
        """The non-empty lines of a file (one sentence per line), counting the empty ones."""
        result = []
        for line in text_io.lines_of(self.text(path).rstrip("\n")):
            if line.strip():
                result.append(line)
            else:
                self.skipped_empty += 1
        return result

    def labelled_file(self, path):
        """Examples of a labelled file: a table (a .csv or .jsonl file; a tab-separated file whose first line is a
        header, see `table`, or whose columns are both given by number), else lines (see `labelled_lines`)."""
        extension = os.path.splitext(str(path))[1].lower()
        text = self.text(path)
        if extension == ".jsonl":
            return self.json_lines(path, text)
        if extension == ".csv":
            return self.table(path, text_io.table_rows(text, ",", path))
        first = next((line for line in text_io.lines_of(text) if line.strip()), "")
        # Without a header a tab-separated file stays LABEL<TAB>text lines, as it always was read.
        if "\t" in first and (self.columns.numbered() or self.header(first.split("\t"), both=True)):
            return self.table(path, text_io.table_rows(text, "\t", path))
        return self.labelled_lines(path, text)

    def header(self, cells, both=False):
        """Whether a first row is a header: it names a known column (DEFAULT_COLUMNS, or a name given); with `both`,
        a text column and a label column, so that a LABEL<TAB>text line whose label happens to be a column name
        ("question") is still read as an example."""
        named = {cell.strip().strip('"').lower() for cell in cells}
        if not both:
            return bool(named & self.columns.names())
        return all(named & self.columns.names(role) for role in ("text", "label"))

    def table(self, path, rows):
        """Examples of CSV or TSV records (text_io.table_rows). A first row that names a known column is the header
        and is never read as an example; without one, the columns must be given by number. Every record has as many
        cells as the first: more means a delimiter inside an unquoted text."""
        records = [(line, cells) for line, cells in rows if cells]
        self.skipped_empty += len(rows) - len(records)
        if not records:
            raise UserError(f"{path}: no records")
        line, first = records[0]
        has_header = self.header(first)
        if not has_header and not self.columns.numbered():
            raise UserError(f"{path}:{line}: no header naming a text or a label column (first row: {listed(first)}); "
                            "add one such as 'text,label', or number the columns from 1 (--text_column 2 "
                            "--label_column 1)")
        text_index, label_index = table_columns(first, self.columns, f"{path}:{line}")
        examples = LabelledExamples([], [])
        for line, cells in records[1:] if has_header else records:
            if len(cells) != len(first):
                raise UserError(f"{path}:{line}: {len(cells)} columns where the first row has {len(first)} (a "
                                "delimiter inside a text must be quoted)")
            self.add(examples, cells[label_index].strip(), cells[text_index])
        return examples

    def json_lines(self, path, text):
        """Examples of JSON lines, one object per line. The first object's fields choose the columns (by name:
        fields have no order to number), which every object must have; other fields are ignored."""
        examples, keys = LabelledExamples([], []), None
        for line, record in text_io.json_records(text, path):
            if record is None:
                self.skipped_empty += 1
                continue
            if keys is None:
                for role, given in zip(Columns._fields, self.columns):
                    if column_number(given) is not None:
                        raise UserError(f"{path}: --{role}_column {given}: JSON lines name their fields; give the "
                                        "field's name")
                names = list(record)
                keys = [names[i] for i in table_columns(names, self.columns, f"{path}:{line}")]
            missing = [key for key in keys if key not in record]
            if missing:
                raise UserError(f"{path}:{line}: no field '{missing[0]}' (fields: {listed(record)})")
            text, label = (json_field(record, key, role, f"{path}:{line}") for key, role in zip(keys, Columns._fields))
            self.add(examples, label.strip(), text)
        if keys is None:
            raise UserError(f"{path}: no records")
        return examples

    def labelled_lines(self, path, text):
        """Examples of a file of `LABEL<TAB>text` lines, `COARSE:fine text` lines (TREC), or `0 text` lines (a
        number label on every line)."""
        examples = LabelledExamples([], [])
        lines = text_io.lines_of(text.rstrip("\n"))
        # "1 a sentence" lines (the .all files of the CNN-era repositories): every line starts with a number.
        numbered = all(_NUMBER_LABEL.match(line) for line in lines if line.strip())
        for number, line in enumerate(lines, 1):
            if not line.strip():
                self.skipped_empty += 1
                continue
            trec = _TREC_LABEL.match(line)
            if numbered:
                label, text = line.split(None, 1)
            elif "\t" in line:
                label, text = line.split("\t")[:2]  # a third column is ignored, as it always was
            elif trec:
                coarse, fine, text = trec.groups()
                label = coarse if self.label_mode == "coarse" else f"{coarse}:{fine}"
            else:
                raise UserError(f"{path}:{number}: no label (expected LABEL<TAB>text or COARSE:fine text lines)")
            self.add(examples, label.strip(), text)
        return examples

    def class_files(self, paths_by_label):
        """Examples of one file per class, each line a sentence."""
        examples = LabelledExamples([], [])
        for label, path in paths_by_label.items():
            before = len(examples.texts)
            for sentence in self.sentences(path):
                self.add(examples, label, sentence)
            if len(examples.texts) == before:
                raise UserError(f"{path}: class '{label}' has no examples")
        return examples

    def class_folders(self, folder):
        """Examples of a folder of class folders, one text file per example (IMDB's aclImdb/train/pos/*.txt)."""
        examples = LabelledExamples([], [])
        for label in class_folder_names(folder):
            for entry in sorted(os.listdir(os.path.join(folder, label))):
                self.add(examples, label, self.text(os.path.join(folder, label, entry)))
        return examples

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
                        tokens = text_io.tokenize(paragraph)
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
                        seed=1234, cache_dir=datasets.CACHE_DIR, columns=Columns()):
    """Labelled sentences in any of these layouts:
    - a table: a .csv file, a .jsonl file, or a tab-separated file with a header, its columns chosen by `columns`
      (--text_column, --label_column) or by their header names;
    - a file of `LABEL<TAB>text` lines, TREC's `COARSE:fine text` lines, or `0 text` lines;
    - a folder with one file per class (rt-polarity.pos / rt-polarity.neg: the extension is the label; pos.txt /
      neg.txt: the name is the label), one sentence per line;
    - a folder of class folders with one example per file (aclImdb/train/pos/*.txt);
    - a folder whose entries are named by split (train.txt, dev.tsv, TREC.test, aclImdb/train and aclImdb/test),
      each in one of the layouts above (train.csv, dev.jsonl).
    Splits that are not given are cut from the training data by fraction, shuffled with the seed."""
    reader = _Reader(encoding, label_mode, columns)
    if data is None:
        given, name = {"train": embedded_docstrings()}, "stdlib-docstrings"
        sources = {"train": "the embedded default (standard-library docstrings)"}
        reader.encodings.add("utf-8")
    else:
        path, name = datasets.resolve_data(data, cache_dir)
        given, sources = read_given_splits(reader, path, datasets.REGISTRY.get(data))
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


def examples_to_evaluate(path, cfg, columns):
    """The labelled sentences of one file or folder, in any layout training reads, read as the run's config reads
    its data (encoding, label mode; `columns` as --text_column / --label_column), each text as written (sample.py
    --eval). A folder of splits is refused: which split to evaluate is the user's to say."""
    splits = find_split_files(path) if os.path.isdir(path) else {}
    if splits:
        names = ", ".join(os.path.basename(splits[s]) for s in ("train", "valid", "test") if s in splits)
        raise UserError(f"{path}: a folder of splits ({names}); "
                        f"give the one to evaluate, such as {splits.get('test', splits['train'])}")
    examples = _Reader(cfg.encoding, cfg.label_mode, columns, keep_text=True).any_layout(path)
    if not examples.texts:
        raise UserError(f"{path}: no labelled sentences")
    return examples


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


# --------------------------------------------------------------------------------------------------- a task's data

class TaskData(NamedTuple):
    """A task's data, encoded: what a run directory records (vocabulary, labels) and what batches are cut from."""
    vocab: Vocab
    label_names: list  # classify: class names in id order; lm: None
    splits: dict  # "train"/"valid"/"test" -> lm: id array; classify: (list of id arrays, label id array)
    initial_weights: dict  # weight name -> the array it starts from (--embeddings: "embedding"; --init_from: more)
    texts: dict = None  # split -> its text as a file the project reads back (split_text); RUN_DIR/data/ keeps them


def task_data(cfg):
    """The config's task data, split as the config says (cross-validation cuts its own folds instead)."""
    if cfg.task == "lm":
        return language_model_data(cfg)
    cdata = classification_data(cfg)
    return encode_classification(cfg, cdata.train, cdata.valid, cdata.test, cdata.label_names)


def language_model_data(cfg):
    """The corpus of the config as ids: a vocabulary from the training split, every split big enough to batch."""
    corpus = load_lm_corpus(cfg.data or None, cfg.level, cfg.encoding, cfg.valid_fraction, cfg.test_fraction,
                            datasets.CACHE_DIR)
    vocab = build_vocab([corpus.train], cfg.min_count, cfg.vocab_size, text_io.LM_SPECIALS[cfg.level])
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
    texts = {name: text for name, text in zip(("train", "valid", "test"), corpus.texts) if text}
    return TaskData(vocab, None, splits, pretrained_embedding(cfg, vocab), texts)


def classification_data(cfg):
    """The labelled examples as read, before encoding (cross-validation cuts folds from them)."""
    cdata = load_classification(cfg.data or None, cfg.encoding, cfg.label_mode, cfg.valid_fraction,
                                cfg.test_fraction, cfg.seed, datasets.CACHE_DIR,
                                Columns(cfg.text_column, cfg.label_column))
    check_labels(cdata, cfg.cv, cfg.valid_fraction, cfg.seed)
    print(f"data: {cdata.name} ({cdata.encoding}); {len(cdata.label_names)} labels; " + split_line(cfg, cdata)
          + (f"; {cdata.skipped_empty} empty lines skipped" if cdata.skipped_empty else ""))
    return cdata


def split_line(cfg, cdata):
    """How the examples are used, for the data line: the split, or cross-validation's folds (which ignore it)."""
    if not cfg.cv:
        return (f"examples train {len(cdata.train.texts):,} valid {len(cdata.valid.texts):,} test "
                f"{len(cdata.test.texts):,}")
    total = len(cdata.everything().texts)
    return (f"{total:,} examples in {cfg.cv}-fold cross-validation: each fold tests on about {total // cfg.cv:,}, "
            f"validates on {cfg.valid_fraction:g} of the rest and trains on the others"
            + (f"; then a final model trains on all {total:,}" if cfg.cv_final else ""))


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
    vocab = build_vocab(train.texts, cfg.min_count, cfg.vocab_size, text_io.CLASSIFY_SPECIALS)
    label_index = {label: i for i, label in enumerate(label_names)}
    splits = {}
    for name, examples in (("train", train), ("valid", valid), ("test", test)):
        unknown = sorted(set(examples.labels) - set(label_index))
        if unknown:
            raise UserError(f"{name} split: label '{unknown[0]}' is not one of the run's labels")
        splits[name] = ([vocab.encode(tokens).astype(np.int32) for tokens in examples.texts],
                        np.array([label_index[label] for label in examples.labels], np.int32))
    texts = {name: labelled_text(examples) for name, examples in (("train", train), ("valid", valid), ("test", test))
             if examples.texts}
    return TaskData(vocab, list(label_names), splits, pretrained_embedding(cfg, vocab), texts)


def labelled_text(examples):
    """Examples as a labelled TSV file that load_classification reads back as the same examples: a `label<TAB>
    sentence` header, then each example's label and its tokens joined by spaces (text_io.tokenize gives them back
    unchanged), quoted where a token needs it."""
    rows = [(label, " ".join(tokens)) for tokens, label in zip(examples.texts, examples.labels)]
    return text_io.table_text([("label", "sentence"), *rows], "\t")


def pretrained_embedding(cfg, vocab):
    """TaskData.initial_weights of --embeddings: {"embedding": [vocab, embedding_dim]}, or {} without it."""
    if not cfg.embeddings:
        return {}
    # The matrix is allocated here, before train.py checks the model's memory: a too-wide one is refused first.
    config.check_memory(cfg, len(vocab))
    matrix, found = datasets.load_embeddings(cfg.embeddings, vocab, cfg.embedding_dim, cfg.seed)
    print(f"embeddings: {found:,} of {len(vocab):,} words found in {cfg.embeddings}")
    return {"embedding": matrix}


if __name__ == "__main__":
    sys.exit(datasets.command_line(sys.argv[1:]))
