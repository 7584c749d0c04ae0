"""End-to-end runs of the classifier: train.py --task classify, CV, evaluation counts, sample.py, bad input."""
import contextlib
import csv
import io
import json

import numpy as np
import pytest

import sample
import train
from conftest import clearly_above_chance, one_line_error, run_cli

WORDS = {"sport": "ball goal team match score coach league win player pitch".split(),
         "food": "bread soup cheese salad spice oven recipe sugar tomato dinner".split(),
         "tech": "code chip laptop server cloud screen robot network data kernel".split()}
FILLER = "the a of and to in is it was on".split()


def topic_sentences(count, seed, labels=tuple(WORDS)):
    """(label, sentence): a few topic words among filler words, 3 to 14 tokens long."""
    rng = np.random.RandomState(seed)
    examples = []
    for i in range(count):
        label = labels[i % len(labels)]
        n = rng.randint(3, 15)
        words = [rng.choice(WORDS[label]) if rng.rand() < 0.4 else rng.choice(FILLER) for _ in range(n)]
        words[rng.randint(n)] = rng.choice(WORDS[label])
        examples.append((label, " ".join(words)))
    return examples


def write_labelled(path, count, seed, labels=tuple(WORDS)):
    """LABEL<TAB>sentence lines (see topic_sentences)."""
    path.write_text("".join(f"{label}\t{sentence}\n" for label, sentence in topic_sentences(count, seed, labels)))
    return path


def classify_args(run_dir, *extra):
    return ["--config", "classify", "--run_dir", str(run_dir), "--hidden_size", "16", "--embedding_size", "16",
            "--num_steps", "16", "--batch_size", "8", "--max_max_epoch", "4", "--summary_every", "5", *extra]


@pytest.fixture(scope="module")
def topic_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("topics")
    write_labelled(folder / "train.txt", 300, seed=0)
    write_labelled(folder / "test.txt", 93, seed=1)  # 93: not a multiple of the batch size
    return folder


@pytest.fixture(scope="module")
def trained_classifier(topic_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cls") / "run"
    assert train.main(classify_args(run_dir, "--data", str(topic_data))) == 0
    return run_dir


def test_classifier_learns_and_evaluates_every_example(trained_classifier):
    results = json.loads((trained_classifier / "results.json").read_text())
    assert results["test"]["examples"] == 93
    assert sum(map(sum, results["test"]["confusion_matrix"])) == 93
    assert clearly_above_chance(results["test"]["accuracy"], 93, classes=3)
    assert set(results["test"]["per_class"]) == set(WORDS)
    assert all(0 <= c["f1"] <= 1 for c in results["test"]["per_class"].values())
    assert json.loads((trained_classifier / "labels.json").read_text())["labels"] == sorted(WORDS)
    assert json.loads((trained_classifier / "vocab.json").read_text())["tokens"][:2] == ["<pad>", "<unk>"]


def test_sample_classifies_new_text_from_the_checkpoint(trained_classifier, tmp_path):
    out = io.StringIO()
    code = sample.main(["--run_dir", str(trained_classifier), "--text", "the team scored a goal in the match",
                        "--text", "soup and bread for dinner", "--all_probs"], out=out)
    assert code == 0
    lines = out.getvalue().strip().split("\n")
    assert [line.split("\t")[0] for line in lines] == ["sport", "food"]
    probabilities = [float(p.split("=")[1]) for p in lines[0].split("\t")[2].split()]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1) < 1e-2
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("laptop server network\n\ncloud code kernel chip\n")
    out = io.StringIO()
    assert sample.main(["--run_dir", str(trained_classifier), "--file", str(sentences)], out=out) == 0
    assert [line.split("\t")[0] for line in out.getvalue().strip().split("\n")] == ["tech", "tech"]


def cv_args(run_dir, data, *extra):
    # Frozen after epoch 1 (the learning rate drops to 1e-30): with patience 1 every fold stops after epoch 2.
    return classify_args(run_dir, "--data", str(data), "--cv", "3", "--max_max_epoch", "4", "--patience", "1",
                         "--max_epoch", "1", "--lr_decay", "1e-30", *extra)


def test_cross_validation_reports_every_fold_then_trains_the_final_model(topic_data, tmp_path, capsys):
    run_dir = tmp_path / "cv"
    assert train.main(cv_args(run_dir, topic_data / "train.txt")) == 0
    out = capsys.readouterr().out
    assert out.startswith("data: train.txt (utf-8); 3 labels; 300 examples in 3-fold cross-validation: each fold "
                          "tests on about 100, validates on 0.1 of the rest and trains on the others; then a final "
                          "model trains on all 300\n")
    results = json.loads((run_dir / "cv_results.json").read_text())
    assert [(fold["stopped"]["why"], fold["stopped"]["epochs_trained"], fold["best"]["epoch"])
            for fold in results["per_fold"]] == [("patience", 2, 1)] * 3
    assert results["folds"] == 3 and len(results["accuracy_per_fold"]) == 3
    assert results["mean_accuracy"] == pytest.approx(np.mean(results["accuracy_per_fold"]))
    assert sum(fold["test"]["examples"] for fold in results["per_fold"]) == 300  # the folds cover the data once
    # Each fold keeps its own splits; their test parts are the data once more.
    tests = [(run_dir / f"fold_{k}" / "data" / "test.tsv").read_text().splitlines() for k in range(3)]
    assert all(lines[0] == "label\tsentence" for lines in tests) and sum(len(lines) - 1 for lines in tests) == 300
    # The final model: the mean best epoch (1) on all 300 examples, in the run directory itself.
    assert (results["final_model"]["epochs"], results["final_model"]["examples"]) == (1, 300)
    final = json.loads((run_dir / "results.json").read_text())
    assert (final["valid"], final["test"], final["stopped"]["epochs_trained"]) == (None, None, 1)
    assert "nothing was held out" in final["held_out"]
    assert json.loads((run_dir / "config.json").read_text())["max_max_epoch"] == 1
    assert sorted(p.name for p in (run_dir / "data").iterdir()) == ["train.tsv"]
    assert len((run_dir / "data" / "train.tsv").read_text().splitlines()) == 301
    assert not (run_dir / "best").exists()
    # The same command again trains nothing: no fold, no final model.
    saved = sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*.index"))
    assert train.main(cv_args(run_dir, topic_data / "train.txt")) == 0
    out = capsys.readouterr().out
    assert out.count("not trained again") == 4 and "epoch 1/" not in out and "run directory:" not in out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*.index")) == saved
    # Running the folds again with another model is refused (the top-level config.json guards them).
    line = one_line_error(run_cli("train.py", *classify_args(run_dir, "--data", str(topic_data / "train.txt"), "--cv",
                                                             "3", "--max_max_epoch", "2", "--keep_prob", "0.3",
                                                             "--max_epoch", "1", "--lr_decay", "1e-30")))
    assert "keep_prob=0.5" in line and "keep_prob=0.3" in line
    check_final_model_is_used_by_sample_and_export(run_dir, tmp_path)


def check_final_model_is_used_by_sample_and_export(run_dir, tmp_path):
    """sample.py and export.py find the cross-validation's final model by the run directory's name alone, and the
    exported model answers as sample.py does."""
    from test_export import ask_fresh_process
    import export
    sentences = ["the team scored a goal in the match", "soup and bread for dinner", "laptop server network"]
    out = io.StringIO()
    assert sample.main(["--run_dir", str(run_dir), "--all_probs", *[a for s in sentences for a in ("--text", s)]],
                       out=out) == 0
    lines = [line.split("\t") for line in out.getvalue().strip().split("\n")]
    assert [line[-1] for line in lines] == sentences and {line[0] for line in lines} <= set(WORDS)
    assert export.main(["--run_dir", str(run_dir), "--out", str(tmp_path / "model")]) == 0
    answer = ask_fresh_process(tmp_path, [(tmp_path / "model", "serving_default", {"sentences": sentences})])[0]
    assert answer["label"] == [line[0] for line in lines]
    np.testing.assert_allclose([max(p) for p in answer["probabilities"]], [float(line[1]) for line in lines],
                               atol=2e-3)


def test_cv_final_false_leaves_the_folds_alone(topic_data, tmp_path, capsys):
    run_dir = tmp_path / "cv"
    write_labelled(tmp_path / "few.txt", 60, seed=2)
    assert train.main(classify_args(run_dir, "--data", str(tmp_path / "few.txt"), "--cv", "2", "--max_max_epoch",
                                    "1", "--cv_final", "false")) == 0
    assert "final model" not in capsys.readouterr().out
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "results.json").exists()
    assert "not trained (--cv_final false)" in json.loads((run_dir / "cv_results.json").read_text())[
        "final_model"]["note"]


def test_the_saved_test_split_classifies_as_train_py_evaluated_it(trained_classifier, topic_data, capsys):
    """RUN_DIR/data/test.tsv: sample.py --eval gives the accuracy results.json holds; read as --data, RUN_DIR/data
    gives the run's own examples again."""
    import data_handler
    out = io.StringIO()
    assert sample.main(["--run_dir", str(trained_classifier), "--eval",
                        str(trained_classifier / "data" / "test.tsv")], out=out) == 0
    results = json.loads((trained_classifier / "results.json").read_text())
    right = round(results["test"]["accuracy"] * 93)
    assert f"accuracy  {results['test']['accuracy']:.4f} ({right} of 93)" in out.getvalue()
    again = data_handler.load_classification(str(trained_classifier / "data"))
    first = data_handler.load_classification(str(topic_data), valid_fraction=0.1, test_fraction=0.1)
    assert (again.valid, again.test) == (first.valid, first.test)
    # The same training examples (reading shuffles a training split with the seed, as for any data).
    assert sorted(zip(map(tuple, again.train.texts), again.train.labels)) == \
        sorted(zip(map(tuple, first.train.texts), first.train.labels))


@pytest.mark.parametrize("pooling,extra", [("last", []), ("max", ["--bidirectional"])])
def test_other_poolings_train(topic_data, tmp_path, pooling, extra):
    run_dir = tmp_path / pooling
    assert train.main(classify_args(run_dir, "--data", str(topic_data), "--pooling", pooling, "--max_max_epoch",
                                    "3", *extra)) == 0
    assert clearly_above_chance(json.loads((run_dir / "results.json").read_text())["test"]["accuracy"], 93, 3)


def test_the_glove_recipe_trains_from_vectors(topic_data, tmp_path, capsys):
    """--config classify_glove (vectors, a bidirectional layer, max pooling) on the topic sentences with 50-wide
    vectors for half of its words: the topics' vectors point three different ways."""
    rng = np.random.RandomState(3)
    directions = {label: rng.randn(50) for label in WORDS}
    lines = [f"{word} {' '.join(f'{x:.4f}' for x in directions[label] + 0.3 * rng.randn(50))}"
             for label, words in WORDS.items() for word in words[::2]]
    (tmp_path / "vectors.txt").write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "glove"
    assert train.main(["--config", "classify_glove", "--run_dir", str(run_dir), "--data", str(topic_data),
                       "--embeddings", str(tmp_path / "vectors.txt"), "--hidden_size", "16", "--num_steps", "16",
                       "--batch_size", "8", "--max_max_epoch", "3"]) == 0
    assert "embeddings: 15 of 42 words found" in capsys.readouterr().out
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["bidirectional"], saved["pooling"], saved["embedding_size"]) == (True, "max", 50)
    assert clearly_above_chance(json.loads((run_dir / "results.json").read_text())["test"]["accuracy"], 93, 3)


def test_bad_classification_input_gets_one_clear_line(tmp_path):
    folder = tmp_path / "perclass"
    folder.mkdir()
    (folder / "reviews.pos").write_text("a fine film\nlovely\n")
    (folder / "reviews.neg").write_text("\n\n")
    line = one_line_error(run_cli("train.py", *classify_args(tmp_path / "r1", "--data", str(folder))))
    assert "neg" in line and "no examples" in line

    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("just a sentence\nanother one here\n")
    line = one_line_error(run_cli("train.py", *classify_args(tmp_path / "r2", "--data", str(unlabelled))))
    assert "unlabelled.txt" in line and "label" in line

    given = tmp_path / "given"
    given.mkdir()
    write_labelled(given / "train.txt", 60, seed=0, labels=("sport", "food"))
    (given / "test.txt").write_text("sport\tgoal team\ntech\tcode chip\n")
    line = one_line_error(run_cli("train.py", *classify_args(tmp_path / "r3", "--data", str(given))))
    assert "tech" in line

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("goal 0.1 0.2 0.3\nteam 0.1 0.2 0.3\n")
    line = one_line_error(run_cli("train.py", *classify_args(tmp_path / "r4", "--data", str(given / "train.txt"),
                                                             "--embeddings", str(vectors))))
    assert "vectors.txt" in line and "3" in line and "16" in line


def test_empty_lines_are_skipped_and_counted(tmp_path):
    data = write_labelled(tmp_path / "train.txt", 60, seed=0)
    data.write_text(data.read_text().replace("\n", "\n\n", 5))
    result = run_cli("train.py", *classify_args(tmp_path / "r", "--data", str(data), "--max_max_epoch", "1"),
                     timeout=300)
    assert result.returncode == 0, result.stderr
    assert "5 empty lines skipped" in result.stdout


# --------------------------------------------------------------------------------------------------- tables, --eval

def write_tables(folder):
    """The topic sentences as a CSV training split with its own column names and a comma, quotes and a line break
    inside quoted texts, and a JSON-lines test split (a comma in its texts, a field more)."""
    folder.mkdir()
    train = [(label, f"{sentence}, \"{sentence.split()[0]}\"\nmore") for label, sentence in topic_sentences(300, 0)]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([("id", "Body", "Topic")] +
                                                      [(i, text, label) for i, (label, text) in enumerate(train)])
    (folder / "train.csv").write_text(buffer.getvalue())
    (folder / "test.jsonl").write_text("".join(json.dumps({"Topic": label, "id": i, "Body": f"{text}, more"}) + "\n"
                                               for i, (label, text) in enumerate(topic_sentences(93, 1))))
    return folder


@pytest.fixture(scope="module")
def table_classifier(tmp_path_factory):
    data = write_tables(tmp_path_factory.mktemp("tables") / "data")
    run_dir = data.parent / "run"
    assert train.main(classify_args(run_dir, "--data", str(data), "--text_column", "body", "--label_column",
                                    "Topic", "--max_max_epoch", "3")) == 0
    return run_dir


def evaluated(run_dir, *args):
    out = io.StringIO()
    assert sample.main(["--run_dir", str(run_dir), *args], out=out) == 0
    return out.getvalue()


def test_eval_gives_exactly_what_training_recorded_in_every_format(table_classifier, tmp_path):
    """Trained on tables (the columns named by flags); --eval of the given test split prints exactly the report of
    results.json's test evaluation (the best checkpoint, both), and so do its predictions file read back, and the
    same sentences as LABEL<TAB>text lines."""
    results = json.loads((table_classifier / "results.json").read_text())
    assert results["test"]["examples"] == 93
    assert clearly_above_chance(results["test"]["accuracy"], 93, classes=3)
    test_split = table_classifier.parent / "data" / "test.jsonl"
    predictions = tmp_path / "p.csv"
    report = evaluated(table_classifier, "--eval", str(test_split), "--predictions", str(predictions))
    assert report == sample.report_text(results["test"], str(test_split))
    correct = int(report.split("\n")[1].split("(")[1].split()[0])
    assert correct / 93 == results["test"]["accuracy"]
    assert "macro-F1  " in report and "gold \\ predicted" in report
    rows = list(csv.reader(io.StringIO(predictions.read_text())))
    assert rows[0] == ["text", "label", "predicted", "probability"] and len(rows) == 94
    assert rows[1][0] == json.loads(test_split.read_text().split("\n")[0])["Body"]  # the text as written
    assert sum(row[1] == row[2] for row in rows[1:]) == correct and all(0 < float(r[3]) <= 1 for r in rows[1:])
    # The predictions file is a table --eval reads (its text and label columns given for this run's Body, Topic).
    tab = tmp_path / "test.txt"
    tab.write_text("".join(f"{label}\t{text}\n" for text, label, _, _ in rows[1:]))
    for args in (["--eval", str(predictions), "--text_column", "text", "--label_column", "2"], ["--eval", str(tab)]):
        assert evaluated(table_classifier, *args).split("\n")[1:] == report.split("\n")[1:]


def test_eval_refuses_labels_and_options_it_cannot_use(table_classifier, tmp_path):
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("food\tsoup\nmusic\tsong\nmusic\tguitar\n")
    line = one_line_error(run_cli("sample.py", "--run_dir", str(table_classifier), "--eval", str(unknown)))
    assert line == (f"error: {unknown}: label 'music' (2 examples) is not one the model trained on (food, sport, "
                    "tech)")
    for args, message in [(["--predictions", "p.csv"], "--predictions: is for --eval"),
                          (["--eval", str(unknown), "--text", "soup"], "--text: is for labelling sentences, not "
                                                                        "for --eval"),
                          (["--eval", str(unknown), "--predictions", str(unknown)],
                           f"--predictions: {unknown} is the --eval file itself; write them elsewhere")]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert sample.main(["--run_dir", str(table_classifier), *args], out=io.StringIO()) == 1
        assert err.getvalue() == f"error: {message}\n"
