"""summaries.py and what a run shows in TensorBoard: a real tensorboard server over a language-model run, a
classifier run with its pretraining language model and a 2-fold cross-validation, read back over its HTTP API (two
TensorBoard runs per run directory, scalars in their tags, the projector, texts, HParams, PR curves)."""
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import checkpoints
import config
import data_handler
import run_dir
import summaries
import train
from conftest import event_scalars, tiny_lm_args
from test_classify import classify_args, write_labelled


def test_projector_metadata_marks_specials_and_names_whitespace(tmp_path):
    vocab = data_handler.Vocab(["<unk>", "\n", " ", "a", "\t"])
    summaries.write_projector_files(run_dir.RunDir(tmp_path), "model/embedding", vocab, [3, 2, 9, 1, 0])
    tmp_path = tmp_path / "train"
    rows = [line.split("\t") for line in (tmp_path / "metadata.tsv").read_text().splitlines()]
    assert rows == [["token", "training_count", "special"], ["<unk>", "3", "yes"], ["\\n", "2", "no"],
                    ["<space>", "9", "no"], ["a", "1", "no"], ["\\t", "0", "no"]]
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "model/embedding"' in config and 'metadata_path: "metadata.tsv"' in config
    counts = summaries.token_counts(vocab, [np.array([0, 3, 3]), np.array([4])])
    assert counts.tolist() == [1, 0, 0, 2, 1]


def test_misclassified_table_escapes_markdown():
    table = summaries.misclassified_table([("a | b", "pos", "neg", 0.875)])
    assert table.splitlines()[2] == "| pos | neg (0.88) | a \\| b |"
    assert summaries.misclassified_table([]) == "every validation sentence was labelled right"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """A tensorboard server on a free 127.0.0.1 port, read over its HTTP API."""

    def __init__(self, logdir):
        self.port = free_port()
        command = [sys.executable, "-c", "from tensorboard.main import run_main; run_main()", "--logdir", str(logdir),
                   "--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "1"]
        self.server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def get(self, path, body=None, form="json"):
        """The answer (form: "json", "text" or "bytes"), or None until the server has it."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
        except OSError:
            return None
        return json.loads(data) if form == "json" else data.decode() if form == "text" else data

    def wait_for(self, path, ready, body=None, form="json", timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            answer = self.get(path, body, form)
            if answer and ready(answer):
                return answer
            time.sleep(1)
        raise AssertionError(f"tensorboard never answered {path} as expected (last: {str(answer)[:500]})")

    def close(self):
        self.server.terminate()
        self.server.wait(timeout=20)


# The run directories of the board, as TensorBoard names their runs (a fold's and a pretraining LM's under theirs).
RUN_DIRS = ("run", "classifier", "classifier/pretrain", "cv/fold_0", "cv/fold_1")


@pytest.fixture(scope="module")
def board(trained_lm):
    """TensorBoard over the language-model run and, beside it, a classifier run of 3 classes started from a language
    model (--pretrain_epochs) and a 2-fold cross-validation of one epoch."""
    topics = write_labelled(trained_lm.parent / "topics.txt", 240, seed=0)
    assert train.main(classify_args(trained_lm.parent / "classifier", "--data", str(topics), "--max_max_epoch", "2",
                                    "--pretrain_epochs", "1", "--summary_every", "1")) == 0  # the LM: 2 steps
    assert train.main(classify_args(trained_lm.parent / "cv", "--data", str(topics), "--max_max_epoch", "1",
                                    "--cv", "2", "--cv_final", "false")) == 0  # the folds' runs alone
    server = TensorBoard(trained_lm.parent)
    yield server
    server.close()


def test_each_run_directory_is_two_runs_with_train_and_valid_series_of_a_tag(board):
    """TensorBoard unchecks every run once there are more than 40: a run directory counts twice, its own folder
    (validation, test texts, HParams) and train/ (the step summaries), and the train and valid curves of its metric
    share a card."""
    runs = board.wait_for("data/runs", lambda r: "cv/fold_1/train" in r)
    assert sorted(runs) == sorted(f"{run}{folder}" for run in RUN_DIRS for folder in ("", "/train"))
    tags = board.wait_for("data/plugin/scalars/tags", lambda t: set(runs) <= set(t))
    for run in RUN_DIRS:
        metric = "metrics/perplexity" if run in ("run", "classifier/pretrain") else "metrics/accuracy"
        for series in (run, f"{run}/train"):
            assert {"metrics/loss", metric} <= set(tags[series])
            assert board.wait_for(f"data/plugin/scalars/scalars?run={series}&tag={metric}", lambda s: len(s) > 0)


def test_scalars_come_in_their_groups_with_the_logged_values(board, trained_lm):
    tags = board.wait_for("data/plugin/scalars/tags", lambda t: "run" in t and "run/train" in t)
    train_tags = list(tags["run/train"])
    for tag in ("metrics/loss", "metrics/perplexity", "metrics/learning_rate", "optimization/gradient_norm",
                "optimization/gradient_sparsity/embedding"):
        assert tag in train_tags
    # The run's own folder: validation per epoch, and the best checkpoint's validation and test numbers.
    assert sorted(tags["run"]) == ["metrics/loss", "metrics/perplexity", "results/test_loss",
                                   "results/test_perplexity", "results/valid_loss", "results/valid_perplexity"]
    assert all(tag.startswith(("metrics/", "optimization/")) for tag in train_tags)
    # TensorBoard orders card groups alphabetically: the metrics come first, the best checkpoint's numbers last.
    groups = sorted({tag.split("/")[0] for run_tags in tags.values() for tag in run_tags})
    assert groups == ["metrics", "optimization", "results"]
    for run, folder, tag in (("run/train", "train", "metrics/loss"), ("run", ".", "metrics/perplexity")):
        series = board.wait_for(f"data/plugin/scalars/scalars?run={run}&tag={tag}", lambda s: len(s) > 0)
        logged = event_scalars(trained_lm / folder, tag)
        served = {step: value for _, step, value in series}
        assert len(served) >= min(len(logged), 500) and max(served) == max(logged)
        np.testing.assert_allclose([served[s] for s in served], [logged[s] for s in served], rtol=1e-6)
    assert len(event_scalars(trained_lm, "metrics/perplexity")) == 3  # one point per epoch
    # Over the whole gradient, a batch of 16 x 8 tokens touches at most 128 of the 500 embedding rows.
    sparsity = event_scalars(trained_lm / "train", "optimization/gradient_sparsity/embedding")
    assert len(sparsity) > 10 and min(sparsity.values()) >= 1 - 128 / 500


def test_projector_shows_the_embedding_of_the_newest_checkpoint_with_the_vocabulary(board, trained_lm):
    info = board.wait_for("data/plugin/projector/info?run=run/train", lambda i: i.get("embeddings"))
    run = run_dir.RunDir(trained_lm)
    assert info["modelCheckpointPath"].endswith(checkpoints.listed(run.checkpoint_dir)[0].split("/")[-1])
    embedding = info["embeddings"][0]
    vocab = run.load_vocab()
    assert embedding["tensorName"] == "model/embedding" and embedding["tensorShape"] == [len(vocab), 16]
    metadata = board.wait_for("data/plugin/projector/metadata?run=run/train&name=model/embedding",
                              lambda m: "\t" in m, form="text")
    rows = [line.split("\t") for line in metadata.splitlines()]
    assert rows[0] == ["token", "training_count", "special"] and len(rows) == len(vocab) + 1
    counts = summaries.token_counts(vocab, data_handler.language_model_data(run.load_config()).splits["train"])
    assert [row[0] for row in rows[1:]] == [summaries.readable(t) for t in vocab.tokens]
    assert [int(row[1]) for row in rows[1:]] == counts.tolist()
    assert {row[0] for row in rows[1:] if row[2] == "yes"} == {"<unk>", "<eos>"}
    served = board.wait_for("data/plugin/projector/tensor?run=run/train&name=model/embedding", lambda t: t,
                            form="bytes")
    from tf1 import tf
    saved = tf.train.load_checkpoint(checkpoints.listed(run.checkpoint_dir)[0]).get_tensor("model/embedding")
    np.testing.assert_array_equal(np.frombuffer(served, np.float32).reshape(saved.shape), saved)


def test_text_tab_shows_a_new_sample_each_epoch_and_the_classifiers_mistakes(board, trained_lm):
    samples = board.wait_for("data/plugin/text/text?run=run&tag=text/generated_sample",
                             lambda s: len(s) == 3)
    texts = [entry["text"] for entry in samples]
    assert len(set(texts)) >= 2 and all(text.startswith("<pre><code>") for text in texts)
    epoch_ends = sorted(event_scalars(trained_lm, "metrics/perplexity"))
    assert sorted(entry["step"] for entry in samples) == epoch_ends
    mistakes = board.wait_for("data/plugin/text/text?run=classifier&tag=text/misclassified_validation_sentences",
                              lambda s: len(s) == 2)
    accuracy = event_scalars(trained_lm.parent / "classifier", "metrics/accuracy")
    examples = json.loads((trained_lm.parent / "classifier" / "results.json").read_text())["valid"]["examples"]
    for entry in mistakes:  # each epoch: the first 8 mistakes, each with two different labels and its probability
        rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", entry["text"], re.S)]
        rows = [row for row in rows if row]  # the header row has <th> cells
        assert len(rows) == min(summaries.MISCLASSIFIED_SHOWN, round((1 - accuracy[entry["step"]]) * examples))
        for true, predicted, sentence in rows:
            label, probability = re.fullmatch(r"(\w+) \(([\d.]+)\)", predicted).groups()
            assert {true, label} <= {"sport", "food", "tech"} and true != label and 0 < float(probability) <= 1
            assert sentence.strip()
    confusion = board.wait_for("data/plugin/text/text?run=classifier&tag=text/valid_confusion_matrix",
                               lambda s: len(s) == 2)
    assert "sport" in confusion[-1]["text"]
    tested = board.wait_for("data/plugin/text/text?run=classifier&tag=text/test_confusion_matrix",
                            lambda s: len(s) == 1)  # once, for the best checkpoint
    assert "sport" in tested[0]["text"]


def test_pr_curves_one_per_class_each_epoch(board, trained_lm):
    tags = board.wait_for("data/plugin/pr_curves/tags", lambda t: "classifier" in t)
    assert sorted(tags["classifier"]) == ["food/pr_curves", "sport/pr_curves", "tech/pr_curves"]
    curves = board.wait_for("data/plugin/pr_curves/pr_curves?run=classifier&tag=sport/pr_curves",
                            lambda c: c.get("classifier"))["classifier"]
    assert len(curves) == 2  # one per epoch
    last = curves[-1]
    assert len(last["precision"]) == len(last["recall"]) <= summaries.PR_THRESHOLDS
    # At threshold 0 every sentence counts as sport: all sport sentences are found, and the precision is their share.
    valid = json.loads((trained_lm.parent / "classifier" / "results.json").read_text())["valid"]
    assert last["recall"][0] == pytest.approx(1.0)
    assert last["precision"][0] == pytest.approx(valid["per_class"]["sport"]["support"] / valid["examples"])
    assert min(last["recall"]) < 1.0  # and higher thresholds leave some out


def test_hparams_compare_runs_by_config_with_their_final_metrics(board, trained_lm):
    body = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                      "STATUS_RUNNING"], "colParams": [], "startIndex": 0,
            "sliceSize": 10}
    groups = board.wait_for("data/plugin/hparams/session_groups",
                            lambda g: len(g.get("sessionGroups", [])) == len(RUN_DIRS), body=body)["sessionGroups"]
    # Each trial is named by its run directory: a fold and a pretraining language model under their own run's name.
    by_name = {group["name"]: group for group in groups}
    assert sorted(by_name) == sorted(RUN_DIRS)
    lm, classifier = by_name["run"], by_name["classifier"]
    assert lm["hparams"]["hidden_size"] == 16 and lm["hparams"]["level"] == "word"
    assert classifier["hparams"]["task"] == "classify" and by_name["classifier/pretrain"]["hparams"]["task"] == "lm"
    assert by_name["cv/fold_1"]["hparams"]["cv"] == 2
    results = json.loads((trained_lm / "results.json").read_text())
    metrics = {m["name"]["tag"]: m["value"] for m in lm["metricValues"]}
    assert metrics["results/valid_perplexity"] == pytest.approx(results["valid"]["perplexity"], rel=1e-6)
    assert metrics["results/test_perplexity"] == pytest.approx(results["test"]["perplexity"], rel=1e-6)
    classifier_metrics = {m["name"]["tag"] for m in classifier["metricValues"]}
    assert {"results/valid_accuracy", "results/valid_loss"} <= classifier_metrics


def test_hparams_lead_with_the_keys_that_tell_runs_apart(board):
    """The HParams table shows the first 5 keys and metrics at first: config.LEADING_KEYS, then the rest
    alphabetically; the validation and test metric before the losses."""
    experiment = board.wait_for("data/plugin/hparams/experiment", lambda e: e.get("hparamInfos"),
                                body={"experimentName": ""})
    names = [info["name"] for info in experiment["hparamInfos"]]
    leading = len(config.LEADING_KEYS)
    assert leading <= 5 and names[:leading] == sorted(config.LEADING_KEYS)
    assert names[leading:] == sorted(set(config.FIELDS) - set(config.LEADING_KEYS))
    assert [info.get("differs", False) for info in experiment["hparamInfos"]] == [True] * leading + [False] * (
        len(names) - leading)
    assert [info["name"]["tag"] for info in experiment["metricInfos"]][:4] == [
        "results/valid_perplexity", "results/test_perplexity", "results/valid_accuracy", "results/test_accuracy"]


def test_a_run_directory_of_the_older_layout_resumes_into_the_new_one(tmp_path):
    """A run written with valid/ and test/ event folders resumes: those are left as they were, and the new
    validation goes to the run's own folder."""
    run = tmp_path / "old"
    assert train.main(tiny_lm_args(run, "--max_max_epoch", "2", "--max_steps", "20")) == 0
    old = {}
    for folder in ("valid", "test"):
        (run / folder).mkdir()
        for source in run.glob("events.out.tfevents.*"):
            (run / folder / source.name).write_bytes(source.read_bytes())
        old.update({path: path.read_bytes() for path in (run / folder).iterdir()})
    assert train.main(tiny_lm_args(run, "--max_max_epoch", "2")) == 0
    assert {path: path.read_bytes() for folder in ("valid", "test") for path in (run / folder).iterdir()} == old
    epochs = event_scalars(run, "metrics/perplexity")
    assert len(epochs) == 2 and max(epochs) == max(event_scalars(run / "train", "metrics/loss"))
