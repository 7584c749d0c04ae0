"""Text in: bytes decoded to str (encodings, line ends, one-line errors for what is not text) and str cut into tokens.

Tables (CSV, TSV, JSON lines) are decoded into records here; which column is the text and which the label is
data_handler's to decide. Language models see a text as words (whitespace-separated, `<eos>` at each line end, as the
PTB files) or characters; classifiers see sentences through `tokenize`, a lower-casing word tokenizer. graph_text.py
repeats both tokenizers as graph ops for the SavedModel. The special tokens that vocabularies start with are here
too, beside the tokenizer that emits `<eos>`. Nothing here imports TensorFlow.
"""
import csv
import io
import json
import os
import re
import stat

import config
from config import UserError

LM_SPECIALS = {"word": ("<unk>", "<eos>"), "char": ("<unk>",)}
CLASSIFY_SPECIALS = ("<pad>", "<unk>")  # <pad> = 0, which the classifier's mask treats as no token
# "auto" tries these in order; cp1252 before latin-1 because corpora such as MR were written on Windows: its 0x85 is
# an ellipsis and 0x91-0x97 are quotes and dashes, which latin-1 would turn into invisible control characters.
AUTO_ENCODINGS = ("utf-8", "cp1252", "latin-1")
# Bytes of memory a text file takes per byte of it, at the peak of reading and tokenizing it: the bytes, the decoded
# str (up to 4 bytes a character) and its tokens; measured 12 (words, characters) to 14 (labelled sentences) on
# English text. A file whose size times this exceeds the memory available is refused before it is read.
TEXT_MEMORY_FACTOR = 16
SMALL_TEXT = 1 << 20  # bytes: a file this small cannot exhaust memory, so /proc/meminfo is not read for it


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


def table_text(rows, delimiter):
    """Rows as CSV (delimiter ",") or TSV ("\\t") text with standard quoting, which table_rows reads back."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def table_rows(text, delimiter, source):
    """(line, cells) of each record of CSV or TSV text, read by the csv module with standard quoting (a quoted
    field may hold the delimiter, line breaks and doubled quotes); line is where the record starts, and a blank
    line is a record of no cells. Strict: a quote left open would otherwise swallow the rest of the file silently."""
    reader = csv.reader(io.StringIO(text.rstrip("\n")), delimiter=delimiter, strict=True)
    rows, start, kind = [], 1, "TSV" if delimiter == "\t" else "CSV"
    try:
        for cells in reader:
            rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as e:
        if "end of data" in str(e):
            raise UserError(f"{source}:{start}: a quoted field that starts in this record is never closed") from None
        if "field limit" in str(e):
            raise UserError(f"{source}:{start}: a field of more than {csv.field_size_limit():,} characters (a quote "
                            "never closed?)") from None
        raise UserError(f"{source}:{reader.line_num}: not valid {kind} ({e})") from None
    return rows


def json_records(text, source):
    """(line, object) of each non-blank line of JSON-lines text; a line that is not a JSON object is refused,
    naming it."""
    records = []
    for number, line in enumerate(lines_of(text.rstrip("\n")), 1):  # the last line's end ends no record
        if not line.strip():
            records.append((number, None))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{source}:{number}: not a JSON object ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # an integer of thousands of digits; nesting past the stack
            raise UserError(f"{source}:{number}: not a JSON object ({str(e)[:80]})") from None
        if not isinstance(value, dict):
            raise UserError(f"{source}:{number}: not a JSON object (a JSON {json_kind(value)}; expected one "
                            "object per line)")
        records.append((number, value))
    return records


def json_kind(value):
    """What a decoded JSON value is, in JSON's words."""
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "null")


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
