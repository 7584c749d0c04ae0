"""data_handler: vocabularies, LM corpora, labelled layouts, splits and cross-validation, a task's encoded data."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import config
import data_handler as dh
import text_io
from config import UserError


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")


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
    vocab = dh.build_vocab([text[:-1]], specials=text_io.LM_SPECIALS["char"])
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


def read_table(path, text="", label=""):
    reader = dh._Reader("auto", "coarse", dh.Columns(text, label))
    examples = reader.labelled_file(path)
    return examples, reader.skipped_empty


def test_table_headers_in_any_column_order_are_never_trained_on(tmp_path):
    for name, content in [("a.csv", "id,Review,SENTIMENT\n1,A fine film,pos\n2,dull,neg\n"),
                          ("b.csv", "label,text\npos,A fine film\nneg,dull\n"),
                          ("c.tsv", "Sentiment\tid\tsentence\npos\t1\tA fine film\nneg\t2\tdull\n"),
                          ("d.txt", "sentence\tlabel\nA fine film\tpos\ndull\tneg\n")]:
        (tmp_path / name).write_text(content)
        examples, _ = read_table(tmp_path / name)
        assert examples == ([["a", "fine", "film"], ["dull"]], ["pos", "neg"]), name
    (tmp_path / "e.csv").write_text("body,stars\nA fine film,5\n")  # names the defaults do not know, given
    assert read_table(tmp_path / "e.csv", "body", "Stars")[0] == ([["a", "fine", "film"]], ["5"])
    assert read_table(tmp_path / "e.csv", "1", "stars")[0] == ([["a", "fine", "film"]], ["5"])


def test_csv_with_quoted_commas_and_line_breaks(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\n"Long, and ""slow"":\nbut fine",pos\n\n"no, never",neg\n')
    examples, skipped = read_table(path)
    assert examples.labels == ["pos", "neg"] and skipped == 1
    assert examples.texts == [["long", ",", "and", '"', "slow", '"', ":", "but", "fine"], ["no", ",", "never"]]
    kept = dh._Reader("auto", "coarse", keep_text=True).labelled_file(path)
    assert kept.texts == ['Long, and "slow":\nbut fine', "no, never"]


def test_json_lines_with_extra_fields_and_number_labels(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 7, "stars": 5, "label": 1, "text": "A fine film", "meta": {"a": [1]}}\n\n'
                    '{"text": "dull", "label": 0}\n{"text": "", "label": 0}\n')
    examples, skipped = read_table(path)
    assert examples == ([["a", "fine", "film"], ["dull"]], ["1", "0"]) and skipped == 2
    refused(lambda: read_table(path, label="stars"), f"{path}:3: no field 'stars' (fields: 'text', 'label')")
    refused(lambda: read_table(path, "4", "1"),
            f"{path}: --text_column 4: JSON lines name their fields; give the field's name")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok", "label": 1}\n{"text": ["a"], "label": 1}\n')
    refused(lambda: read_table(tmp_path / "bad.jsonl"),
            f"{tmp_path / 'bad.jsonl'}:2: field 'text' is a JSON array, expected a string")


def test_a_table_without_a_header_is_refused_unless_its_columns_are_numbered(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("pos,A fine film\nneg,dull\n")
    refused(lambda: read_table(path),
            f"{path}:1: no header naming a text or a label column (first row: 'pos', 'A fine film'); add one such "
            "as 'text,label', or number the columns from 1 (--text_column 2 --label_column 1)")
    assert read_table(path, "2", "1")[0] == ([["a", "fine", "film"], ["dull"]], ["pos", "neg"])
    refused(lambda: read_table(path, "3", "1"),
            f"{path}:1: --text_column 3: there are only 2 columns ('pos', 'A fine film')")
    path.write_text("text,label\npos,A fine film\n")  # numbers do not make a header a sentence
    assert read_table(path, "2", "1")[0] == ([["a", "fine", "film"]], ["pos"])


def test_ambiguous_tables_name_the_columns_found(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,text,review,label\n1,a,b,pos\n")
    refused(lambda: read_table(path),
            f"{path}:1: 'text' and 'review' could each be the text column; choose one with --text_column")
    assert read_table(path, text="review")[0].texts == [["b"]]
    path.write_text("id,text,stars\n1,a,5\n")
    refused(lambda: read_table(path), f"{path}:1: no label column among 'id', 'text', 'stars' (expected one "
                                      "named label, class, sentiment, category, ...): name it with --label_column")
    refused(lambda: read_table(path, label="score"),
            f"{path}:1: no column 'score' (columns: 'id', 'text', 'stars'): name the file's column with --label_column")
    refused(lambda: read_table(path, label="text"), f"{path}:1: the text and the label column are both 'text'")
    path.write_text("text,label\na,pos\nb, more,neg\n")
    refused(lambda: read_table(path),
            f"{path}:3: 3 columns where the first row has 2 (a delimiter inside a text must be quoted)")


def test_a_tab_separated_file_without_a_header_keeps_its_old_meaning(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("pos\tA fine film\tignored\nneg\tdull\n")  # LABEL<TAB>text, as it was always read
    assert read_table(path)[0] == ([["a", "fine", "film"], ["dull"]], ["pos", "neg"])
    path.write_text('pos\t"quoted"\tx\nneg\tdull\ty\n')  # quotes are text in the old layout
    assert read_table(path)[0].texts == [['"', "quoted", '"'], ["dull"]]
    assert read_table(path, "3", "1")[0] == ([["x"], ["y"]], ["pos", "neg"])  # numbered: read as a table


def test_a_label_named_like_a_column_stays_an_example(tmp_path):
    """A headerless LABEL<TAB>text file whose first label is a column name ("question") is not a header: a tab-
    separated header names both a text and a label column."""
    path = tmp_path / "train.tsv"
    path.write_text("question\tWhat is the capital of France ?\nanswer\tParis\n")
    assert read_table(path)[0] == ([["what", "is", "the", "capital", "of", "france", "?"], ["paris"]],
                                   ["question", "answer"])
    refused(lambda: dh.choose_column(["label", "text"], "text", "0", "f.csv"), "f.csv: --text_column 0: columns are "
            "numbered from 1")


def test_a_saved_split_reads_back_as_the_same_examples_quotes_included(tmp_path):
    examples = dh.LabelledExamples([['"', "great", '"', "film", ",", "he", "said"], ["it", "'s", '"', "ok"],
                                    ["dull"]], ["pos", "pos", "neg"])
    (tmp_path / "train.tsv").write_text(dh.labelled_text(examples))
    again = read_table(tmp_path / "train.tsv")[0]
    assert (again.texts, again.labels) == (examples.texts, examples.labels)


def test_a_folder_of_table_splits(tmp_path):
    (tmp_path / "train.csv").write_text("label,text\n" + "".join(f"{'ab'[i % 2]},words {i}\n" for i in range(20)))
    (tmp_path / "valid.jsonl").write_text('{"text": "words", "label": "a"}\n{"text": "more", "label": "b"}\n')
    (tmp_path / "test.tsv").write_text("text\tlabel\nwords\ta\n")
    data = dh.load_classification(str(tmp_path))
    assert (len(data.train.texts), len(data.valid.texts), len(data.test.texts)) == (20, 2, 1)
    assert data.label_names == ["a", "b"] and ["words", "0"] in data.train.texts
    refused(lambda: dh.examples_to_evaluate(str(tmp_path), config.named_config("classify"), dh.Columns()),
            f"{tmp_path}: a folder of splits (train.csv, valid.jsonl, test.tsv); give the one to evaluate, such as "
            f"{tmp_path / 'test.tsv'}")


def test_column_keys_are_checked_with_the_config():
    classify = config.named_config("classify")
    assert config.apply_overrides(classify, {"text_column": "2", "label_column": "Stars"}).label_column == "Stars"
    refused(lambda: config.apply_overrides(classify, {"text_column": "0"}),
            "--text_column: column numbers start at 1, got '0'")
    refused(lambda: config.apply_overrides(classify, {"text_column": "body", "label_column": "Body"}),
            "--text_column and --label_column: both name column 'body'")
    refused(lambda: config.apply_overrides(config.Config(), {"label_column": "tag"}),
            "--label_column: for --task classify (a language model reads text, not tables)")


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


# --------------------------------------------------------------------------------------------------- input bounds

def refused(call, message):
    with pytest.raises(UserError) as error:
        call()
    assert str(error.value) == message
    return message


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
