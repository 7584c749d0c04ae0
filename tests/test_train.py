"""End-to-end runs of train.py on tiny configs: files written, learning, resume, TensorBoard, bad input."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import train
from conftest import event_scalars, one_line_error, run_cli, tiny_lm_args


def test_test_config_cli_finishes_and_writes_its_files(tmp_path):
    result = run_cli("train.py", "--config", "test", "--run_dir", str(tmp_path / "run"), timeout=300)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "config.json").read_text())["hidden_size"] == 2
    tokens = json.loads((run_dir / "vocab.json").read_text())["tokens"]
    import data_handler
    corpus = data_handler.load_lm_corpus(None, "word")
    assert tokens[:2] == ["<unk>", "<eos>"] and len(tokens) == min(10000, len(set(corpus.train)) + 1)  # + <unk>
    assert len(set(tokens)) == len(tokens)
    assert (run_dir / "checkpoints" / "checkpoint").exists() and list((run_dir / "best").glob("*.index"))
    assert list((run_dir / "train").glob("events.*")) and list((run_dir / "valid").glob("events.*"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["perplexity"] > 1
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr  # TF's log lines are silenced


def test_training_lowers_validation_perplexity(trained_lm):
    valid = event_scalars(trained_lm / "valid", "perplexity")
    assert len(valid) == 3
    per_epoch = [valid[s] for s in sorted(valid)]
    assert per_epoch[2] < per_epoch[0]
    assert per_epoch[2] < 0.5 * 500  # far below the uniform guess over the 500-word vocabulary
    train_loss = event_scalars(trained_lm / "train", "loss")
    steps = sorted(train_loss)
    assert steps[0] == 1 and len(steps) == steps[-1]  # a loss at every step, summary_every=1
    assert np.mean([train_loss[s] for s in steps[-20:]]) < np.mean([train_loss[s] for s in steps[:20]]) - 0.5


def test_learning_rate_follows_the_ptb_schedule(trained_lm):
    lr = event_scalars(trained_lm / "train", "learning_rate")
    per_epoch = sorted(set(round(v, 6) for v in lr.values()), reverse=True)
    assert per_epoch == [1.0, 0.5, 0.25]  # max_epoch 1, lr_decay 0.5


def test_graph_is_finalized_and_does_not_grow(tmp_path):
    import config
    import data_handler
    cfg = config.apply_overrides(config.named_config("test"), {"max_max_epoch": "1", "max_steps": "30"})
    corpus = data_handler.load_lm_corpus(None, "word")
    vocab = data_handler.build_vocab([corpus.train], 1, 500, data_handler.LM_SPECIALS["word"])
    splits = {k: vocab.encode(getattr(corpus, k)) for k in ("train", "valid", "test")}
    run = train.LanguageModelRun(cfg, len(vocab), splits)
    os.makedirs(tmp_path / "run")
    assert train.fit(cfg, run, str(tmp_path / "run"), resuming=False) == 0
    assert run.graph.finalized  # creating any op inside the loop would have raised
    ops = len(run.graph.get_operations())
    assert train.fit(cfg, run, str(tmp_path / "run"), resuming=True) == 0 and len(run.graph.get_operations()) == ops


def test_resume_continues_step_epoch_and_learning_rate_exactly(tmp_path):
    extra = ["--max_max_epoch", "2", "--max_epoch", "1", "--keep_prob", "0.8", "--optimizer", "adam",
             "--learning_rate", "0.01"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(tiny_lm_args(whole, *extra)) == 0
    steps_per_epoch = max(event_scalars(whole / "train", "loss")) // 2
    stop_at = steps_per_epoch + steps_per_epoch // 3  # mid-way through the second epoch
    assert train.main(tiny_lm_args(parts, *extra, "--max_steps", str(stop_at))) == 0
    assert train.main(tiny_lm_args(parts, *extra)) == 0  # same run_dir: continues from the checkpoint
    uninterrupted, resumed = event_scalars(whole / "train", "loss"), event_scalars(parts / "train", "loss")
    assert sorted(resumed) == sorted(uninterrupted)
    np.testing.assert_allclose([resumed[s] for s in sorted(resumed)],
                               [uninterrupted[s] for s in sorted(uninterrupted)], rtol=1e-5)
    lr = event_scalars(parts / "train", "learning_rate")
    assert lr[stop_at + 1] == pytest.approx(0.005)  # second epoch's decayed rate, restored after the restart
    valid = [event_scalars(d / "valid", "perplexity") for d in (whole, parts)]
    assert valid[0].keys() == valid[1].keys()
    np.testing.assert_allclose(list(valid[0].values()), list(valid[1].values()), rtol=1e-5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_serves_train_and_valid_scalars(trained_lm):
    port = free_port()
    tensorboard = [sys.executable, "-c", "from tensorboard.main import run_main; run_main()"]
    server = subprocess.Popen(tensorboard + ["--logdir", str(trained_lm), "--host", "127.0.0.1", "--port", str(port),
                                             "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found, deadline = {}, time.time() + 90
        wanted = [(run, tag) for run in ("train", "valid") for tag in ("loss", "perplexity")]
        while time.time() < deadline and len(found) < len(wanted):
            for run, tag in wanted:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run={run}&tag={tag}"
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        series = json.loads(response.read())
                except (OSError, ValueError):
                    continue
                if series:
                    found[run, tag] = series
            time.sleep(1)
        assert set(found) == set(wanted)
        assert len(found["valid", "perplexity"]) == 3  # one point per epoch
        for run, tag in wanted:  # every served point is the logged value at its step (TensorBoard may downsample)
            logged = event_scalars(trained_lm / run, tag)
            served = {step: value for _, step, value in found[run, tag]}
            assert len(served) >= min(len(logged), 500) and max(served) == max(logged)
            np.testing.assert_allclose([served[s] for s in served], [logged[s] for s in served], rtol=1e-6)
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_bad_input_gets_one_clear_line(tmp_path):
    empty, binary, latin = tmp_path / "empty.txt", tmp_path / "blob.bin", tmp_path / "latin.txt"
    empty.write_text("")
    binary.write_bytes(bytes(range(256)) * 40)
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 100)
    run = ["--config", "test", "--run_dir", str(tmp_path / "r")]
    cases = [
        ([*run, "--data", str(tmp_path / "missing.txt")], "missing.txt"),
        ([*run, "--data", str(empty)], "empty"),
        ([*run, "--data", str(binary)], "binary"),
        ([*run, "--data", str(latin)], "byte 3"),
        ([*run, "--hiden_size=3"], "unknown config key '--hiden_size'"),
        ([*run, "--hidden_size=-3"], "--hidden_size: must be positive"),
        ([*run, "--config", "huge"], "unknown config 'huge'"),
    ]
    for args, expected in cases:
        line = one_line_error(run_cli("train.py", *args))
        assert expected in line, (args, line)


def test_a_run_dir_whose_checkpoint_does_not_match_is_refused(trained_lm):
    line = one_line_error(run_cli("train.py", *tiny_lm_args(trained_lm, "--hidden_size", "32")))
    assert "hidden_size=16" in line and "hidden_size=32" in line
    line = one_line_error(run_cli("train.py", *tiny_lm_args(trained_lm, "--vocab_size", "400")))
    assert "vocab_size" in line
    line = one_line_error(run_cli("sample.py", "--run_dir", str(trained_lm / "nope")))
    assert "no such run directory" in line


def test_xla_training_follows_the_same_loss_curve(tmp_path):
    """XLA auto-clustering (train.py --xla) is a fast path: the same seed gives the same losses within float noise."""
    losses = {}
    for xla in ("false", "true"):
        run_dir = tmp_path / f"xla-{xla}"
        result = run_cli("train.py", *tiny_lm_args(run_dir, "--max_steps", "40", "--xla", xla), timeout=300)
        assert result.returncode == 0, result.stderr
        losses[xla] = event_scalars(run_dir / "train", "loss")
    assert sorted(losses["true"]) == sorted(losses["false"]) == list(range(1, 41))
    np.testing.assert_allclose([losses["true"][s] for s in range(1, 41)], [losses["false"][s] for s in range(1, 41)],
                               rtol=2e-3)


def test_fast_paths_follow_the_same_loss_curve(tmp_path):
    """The compiled loss (--xla_loss, on by default) is exact: the same seed gives the same losses within float
    noise. --precision bfloat16 rounds matmul operands: its losses stay within bfloat16 noise of float32's, step by
    step, and it learns as much."""
    steps = 60
    losses = {}
    for name, extra in {"plain": ["--no_xla_loss"], "xla_loss": [], "bfloat16": ["--precision", "bfloat16"]}.items():
        run_dir = tmp_path / name
        assert train.main(tiny_lm_args(run_dir, "--max_steps", str(steps), *extra)) == 0
        curve = event_scalars(run_dir / "train", "loss")
        assert sorted(curve) == list(range(1, steps + 1))
        losses[name] = np.array([curve[step] for step in range(1, steps + 1)])
    np.testing.assert_allclose(losses["xla_loss"], losses["plain"], rtol=1e-4)
    np.testing.assert_allclose(losses["bfloat16"], losses["plain"], rtol=2e-2)
    learned = losses["plain"][:10].mean() - losses["plain"][-10:].mean()
    assert learned > 0.3  # the curve goes somewhere, so agreeing on it means something
    assert abs(losses["bfloat16"][-10:].mean() - losses["plain"][-10:].mean()) < 0.05 * learned


def test_a_stop_on_an_epochs_last_batch_still_validates_that_epoch(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(tiny_lm_args(run_dir, "--max_max_epoch", "2")) == 0
    steps_per_epoch = min(event_scalars(run_dir / "valid", "perplexity"))
    other = tmp_path / "stopped"
    assert train.main(tiny_lm_args(other, "--max_max_epoch", "2", "--max_steps", str(steps_per_epoch))) == 0
    assert list(event_scalars(other / "valid", "perplexity")) == [steps_per_epoch]
    assert (other / "best" / "best.json").exists()
    # The same command again trains nothing more: the limit is checked before each step.
    assert train.main(tiny_lm_args(other, "--max_max_epoch", "2", "--max_steps", str(steps_per_epoch))) == 0
    assert max(event_scalars(other / "train", "loss")) == steps_per_epoch
    assert "Raise --max_steps" in capsys.readouterr().out


def test_a_split_too_small_for_one_batch_is_refused(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("one two three four five six seven eight nine ten\n" * 10)
    assert train.main(["--config", "test", "--data", str(small), "--run_dir", str(tmp_path / "r")]) == 1
    assert "too few for one batch" in capsys.readouterr().err
