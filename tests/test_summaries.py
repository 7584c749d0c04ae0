"""summaries.py and what a run shows in TensorBoard: a real tensorboard server over a language-model run and a
classifier run, read back over its HTTP API (scalars in their tags, the projector, texts, HParams, PR curves)."""
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
import data_handler
import run_dir
import summaries
import train
from conftest import event_scalars
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


@pytest.fixture(scope="module")
def board(trained_lm):
    """TensorBoard over the language-model run and, beside it, a classifier run of 3 classes."""
    classifier = trained_lm.parent / "classifier"
    write_labelled(trained_lm.parent / "topics.txt", 240, seed=0)
    assert train.main(classify_args(classifier, "--data", str(trained_lm.parent / "topics.txt"),
                                    "--max_max_epoch", "2")) == 0
    server = TensorBoard(trained_lm.parent)
    yield server
    server.close()


def test_scalars_come_in_their_groups_with_the_logged_values(board, trained_lm):
    tags = board.wait_for("data/plugin/scalars/tags", lambda t: "run/valid" in t and "run/train" in t)
    train_tags = list(tags["run/train"])
    for tag in ("metrics/loss", "metrics/perplexity", "metrics/learning_rate", "optimization/gradient_norm",
                "optimization/gradient_sparsity/embedding"):
        assert tag in train_tags
    assert sorted(tags["run/valid"]) == ["metrics/loss", "metrics/perplexity"]
    assert all(tag.startswith(("metrics/", "optimization/")) for tag in train_tags)
    # TensorBoard orders card groups alphabetically: the metrics come first, the best checkpoint's numbers last.
    groups = sorted({tag.split("/")[0] for run_tags in tags.values() for tag in run_tags})
    assert groups == ["metrics", "optimization", "results"]
    for run, tag in (("train", "metrics/loss"), ("valid", "metrics/perplexity")):
        series = board.wait_for(f"data/plugin/scalars/scalars?run=run/{run}&tag={tag}", lambda s: len(s) > 0)
        logged = event_scalars(trained_lm / run, tag)
        served = {step: value for _, step, value in series}
        assert len(served) >= min(len(logged), 500) and max(served) == max(logged)
        np.testing.assert_allclose([served[s] for s in served], [logged[s] for s in served], rtol=1e-6)
    assert len(event_scalars(trained_lm / "valid", "metrics/perplexity")) == 3  # one point per epoch
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
    samples = board.wait_for("data/plugin/text/text?run=run/valid&tag=text/generated_sample",
                             lambda s: len(s) == 3)
    texts = [entry["text"] for entry in samples]
    assert len(set(texts)) >= 2 and all(text.startswith("<pre><code>") for text in texts)
    epoch_ends = sorted(event_scalars(trained_lm / "valid", "metrics/perplexity"))
    assert sorted(entry["step"] for entry in samples) == epoch_ends
    mistakes = board.wait_for("data/plugin/text/text?run=classifier/valid&tag=text/misclassified_validation_sentences",
                              lambda s: len(s) == 2)
    accuracy = event_scalars(trained_lm.parent / "classifier" / "valid", "metrics/accuracy")
    examples = json.loads((trained_lm.parent / "classifier" / "results.json").read_text())["valid"]["examples"]
    for entry in mistakes:  # each epoch: the first 8 mistakes, each with two different labels and its probability
        rows = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", entry["text"], re.S)]
        rows = [row for row in rows if row]  # the header row has <th> cells
        assert len(rows) == min(summaries.MISCLASSIFIED_SHOWN, round((1 - accuracy[entry["step"]]) * examples))
        for true, predicted, sentence in rows:
            label, probability = re.fullmatch(r"(\w+) \(([\d.]+)\)", predicted).groups()
            assert {true, label} <= {"sport", "food", "tech"} and true != label and 0 < float(probability) <= 1
            assert sentence.strip()
    confusion = board.wait_for("data/plugin/text/text?run=classifier/valid&tag=text/confusion_matrix",
                               lambda s: len(s) == 2)
    assert "sport" in confusion[-1]["text"]


def test_pr_curves_one_per_class_each_epoch(board, trained_lm):
    tags = board.wait_for("data/plugin/pr_curves/tags", lambda t: "classifier/valid" in t)
    assert sorted(tags["classifier/valid"]) == ["food/pr_curves", "sport/pr_curves", "tech/pr_curves"]
    curves = board.wait_for("data/plugin/pr_curves/pr_curves?run=classifier/valid&tag=sport/pr_curves",
                            lambda c: c.get("classifier/valid"))["classifier/valid"]
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
    groups = board.wait_for("data/plugin/hparams/session_groups", lambda g: len(g.get("sessionGroups", [])) == 2,
                            body=body)["sessionGroups"]
    by_task = {group["hparams"]["task"]: group for group in groups}
    lm, classifier = by_task["lm"], by_task["classify"]
    assert lm["hparams"]["hidden_size"] == 16 and lm["hparams"]["level"] == "word"
    results = json.loads((trained_lm / "results.json").read_text())
    metrics = {m["name"]["tag"]: m["value"] for m in lm["metricValues"]}
    assert metrics["results/valid_perplexity"] == pytest.approx(results["valid"]["perplexity"], rel=1e-6)
    assert metrics["results/test_perplexity"] == pytest.approx(results["test"]["perplexity"], rel=1e-6)
    classifier_metrics = {m["name"]["tag"] for m in classifier["metricValues"]}
    assert {"results/valid_accuracy", "results/valid_loss"} <= classifier_metrics
    experiment = board.get("data/plugin/hparams/experiment", {"experimentName": ""})
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} >= {"results/valid_perplexity",
                                                                         "results/test_accuracy"}
