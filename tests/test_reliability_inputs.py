"""The reliability matrix, inputs: numbers beyond what the libraries below accept, files that are not regular files
or too large for memory, and classification data without two labels to learn. Each row is a command and the one
line it must answer with (exit code 1, no traceback, no hang); every row is refused before TensorFlow builds a graph,
so the rows run in-process in a fraction of a second each."""
import json
import os

import pytest

import config
import sample
import text_io
import train
from test_classify import classify_args, write_labelled

LM = ["--config", "test", "--vocab_size", "500", "--hidden_size", "8", "--max_max_epoch", "1"]
FIFO = "not a regular file (a FIFO), expected a text file"


def lm_args(path, *extra):
    return [*LM, "--run_dir", str(path), *extra]


def one_line(capsys, message):
    """The run's whole stderr: one `error: ...` line holding message."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    return lines[0]


@pytest.fixture
def fifo(tmp_path, no_hang):
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("extra,message", [
    (["--seed", str(2 ** 32)], "--seed: at most 2147483646 (TensorFlow takes graph seeds modulo 2**31 - 1), got "
                               "4294967296"),
    (["--seed", str(2 ** 31 - 1)], "--seed: at most 2147483646"),  # TensorFlow would take it as seed 0
    (["--intra_op_threads", str(2 ** 31)], "--intra_op_threads: at most 1024 (TensorFlow starts a thread for each)"),
    (["--inter_op_threads", "5000"], "--inter_op_threads: at most 1024"),
    (["--forget_bias", "nan"], "--forget_bias: must be a finite number within float32's range (+-3.4e38), got nan"),
    (["--forget_bias=-inf"], "--forget_bias: must be a finite number within float32's range (+-3.4e38), got -inf"),
    (["--init_scale", "1e39"], "--init_scale: must be a finite number within float32's range"),
    (["--hidden_size", "1" + "0" * 400], "--hidden_size: at most 2147483647 (the int32 range of TensorFlow's shapes "
                                         "and feeds), got 100000000000000000000000... (401 characters)"),
    (["--batch_size", str(2 ** 31)], "--batch_size: at most 2147483647"),
    (["--vocab_size", str(2 ** 63)], "--vocab_size: at most 2147483647"),
    (["--max_steps", str(10 ** 30)], "--max_steps: at most 2147483647"),
    (["--checkpoint_every", str(2 ** 31)], "--checkpoint_every: at most 2147483647"),
    (["--summary_every", str(2 ** 64)], "--summary_every: at most 2147483647"),
    (["--num_layers", "101"], "--num_layers: at most 100"),
    (["--lr_decay", "1e10", "--max_max_epoch", "20"], "--lr_decay: 1e+10 per epoch for 19 epochs"),
])
def test_numbers_beyond_their_bound_are_one_line(tmp_path, capsys, extra, message):
    assert train.main(lm_args(tmp_path / "run", *extra)) == 1
    one_line(capsys, message)


@pytest.mark.parametrize("extra,message", [
    (["--cv", str(2 ** 31)], "--cv: at most 2147483647"),
    (["--embedding_size", str(2 ** 40)], "--embedding_size: at most 2147483647"),
    (["--eval_batch_size", str(2 ** 31)], "--eval_batch_size: at most 2147483647"),
])
def test_classifier_numbers_beyond_their_bound_are_one_line(tmp_path, capsys, extra, message):
    data = write_labelled(tmp_path / "topics.txt", 30, seed=0)
    assert train.main(classify_args(tmp_path / "run", "--data", str(data), *extra)) == 1
    one_line(capsys, message)


def test_a_huge_embedding_from_vectors_meets_the_memory_check_before_it_is_allocated(tmp_path, capsys, monkeypatch):
    data = write_labelled(tmp_path / "topics.txt", 30, seed=0)
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("ball 1 2 3\n")
    monkeypatch.setattr(config, "available_memory", lambda: 1 << 30)
    assert train.main(classify_args(tmp_path / "run", "--data", str(data), "--embeddings", str(vectors),
                                    "--embedding_size", str(2 ** 31 - 1))) == 1
    one_line(capsys, "the model needs about")


# --------------------------------------------------------------------------------------------------- files

def test_a_fifo_as_data_is_refused_not_opened(tmp_path, capsys, fifo):
    assert train.main(lm_args(tmp_path / "run", "--data", str(fifo))) == 1
    assert one_line(capsys, FIFO) == f"error: {fifo}: {FIFO}"
    assert train.main(classify_args(tmp_path / "run2", "--data", str(fifo))) == 1
    one_line(capsys, f"{fifo}: {FIFO}")


def test_a_device_as_data_is_refused(tmp_path, capsys):
    assert train.main(lm_args(tmp_path / "run", "--data", "/dev/null")) == 1
    one_line(capsys, "/dev/null: not a regular file (a character device), expected a text file")


def test_a_fifo_inside_a_data_folder_is_refused(tmp_path, capsys, no_hang):
    folder = tmp_path / "data"
    folder.mkdir()
    write_labelled(folder / "test.txt", 30, seed=1)
    os.mkfifo(folder / "train.txt")
    assert train.main(classify_args(tmp_path / "run", "--data", str(folder))) == 1
    one_line(capsys, f"{folder / 'train.txt'}: {FIFO}")
    assert train.main(lm_args(tmp_path / "run2", "--data", str(folder))) == 1
    one_line(capsys, f"{folder / 'train.txt'}: {FIFO}")


def test_a_fifo_as_word_vectors_is_refused(tmp_path, capsys, fifo):
    data = write_labelled(tmp_path / "topics.txt", 30, seed=0)
    assert train.main(classify_args(tmp_path / "run", "--data", str(data), "--embeddings", str(fifo),
                                    "--embedding_size", "3")) == 1
    one_line(capsys, f"{fifo}: not a regular file (a FIFO), expected a word-vector file")


def test_a_text_too_large_for_memory_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"the words of a corpus\n" * (text_io.SMALL_TEXT // 22 + 1))
    monkeypatch.setattr(config, "available_memory", lambda: 8 << 20)
    assert train.main(lm_args(tmp_path / "run", "--data", str(corpus))) == 1
    one_line(capsys, f"{corpus}: {corpus.stat().st_size:,} bytes is too large to read into memory here: its text "
                     f"and tokens take about {text_io.TEXT_MEMORY_FACTOR} times that (16.0 MiB), and 8.0 MiB are "
                     "available; split the file or free memory")


def fake_run(path, cfg, tokens, labels=None):
    """A run directory as far as sample.py reads it before it opens a checkpoint: config, vocabulary, labels."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config.to_dict(cfg)))
    (path / "vocab.json").write_text(json.dumps({"tokens": tokens}))
    if labels:
        (path / "labels.json").write_text(json.dumps({"labels": labels}))
    return path


def test_sample_refuses_a_fifo_to_score_or_to_classify(tmp_path, capsys, fifo):
    lm = fake_run(tmp_path / "lm", config.named_config("test"), ["<unk>", "<eos>", "the"])
    assert sample.main(["--run_dir", str(lm), "--score", str(fifo)]) == 1
    one_line(capsys, f"{fifo}: {FIFO}")
    classifier = fake_run(tmp_path / "cls", config.named_config("classify"), ["<pad>", "<unk>", "ball"],
                          ["food", "sport"])
    assert sample.main(["--run_dir", str(classifier), "--file", str(fifo)]) == 1
    one_line(capsys, f"{fifo}: {FIFO}")


# --------------------------------------------------------------------------------------------------- labels

def test_a_classifier_of_one_label_is_refused(tmp_path, capsys):
    data = write_labelled(tmp_path / "sport.txt", 40, seed=0, labels=("sport",))
    assert train.main(classify_args(tmp_path / "run", "--data", str(data))) == 1
    one_line(capsys, f"{data}: every training example has label 'sport'; a classifier needs at least two labels")
    assert train.main(classify_args(tmp_path / "cv", "--data", str(data), "--cv", "3")) == 1
    one_line(capsys, f"{data}: every example has label 'sport'; a classifier needs at least two labels")
    assert not (tmp_path / "cv" / "fold_0").exists()


def test_a_label_only_in_the_test_split_is_refused(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    write_labelled(folder / "train.txt", 40, seed=0, labels=("sport", "food"))
    write_labelled(folder / "test.txt", 12, seed=1)  # sport, food and tech
    assert train.main(classify_args(tmp_path / "run", "--data", str(folder))) == 1
    one_line(capsys, f"label 'tech' occurs in the test split ({folder / 'test.txt'}) but never in the training split "
                     f"({folder / 'train.txt'}); a classifier learns only the labels it trains on: add training "
                     "examples of it, or remove its 4 examples")


def test_a_label_too_rare_for_the_folds_is_refused_before_the_first_fold(tmp_path, capsys):
    data = write_labelled(tmp_path / "topics.txt", 40, seed=0, labels=("sport", "food"))
    data.write_text(data.read_text() + "tech\tcode chip laptop\n")
    assert train.main(classify_args(tmp_path / "run", "--data", str(data), "--cv", "4")) == 1
    line = one_line(capsys, "--cv 4: in fold ")
    assert "label 'tech' occurs in the " in line and "(1 example in all)" in line
    assert not (tmp_path / "run" / "fold_0").exists()
