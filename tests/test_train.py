"""End-to-end runs of train.py on tiny configs: files written, learning, resume, early stopping, bad input."""
import contextlib
import dataclasses
import json
import os

import numpy as np
import pytest

import config
import stopping
import train
from conftest import event_scalars, native_bfloat16, one_line_error, run_cli, tiny_lm_args


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
    # Two TensorBoard runs: the step summaries in train/, everything else in the run's own folder.
    assert list((run_dir / "train").glob("events.*")) and list(run_dir.glob("events.*"))
    assert not (run_dir / "valid").exists() and not (run_dir / "test").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["test"]["perplexity"] > 1
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr  # TF's log lines are silenced


def test_training_lowers_validation_perplexity(trained_lm):
    valid = event_scalars(trained_lm, "metrics/perplexity")
    assert len(valid) == 3
    per_epoch = [valid[s] for s in sorted(valid)]
    assert per_epoch[2] < per_epoch[0]
    assert per_epoch[2] < 0.5 * 500  # far below the uniform guess over the 500-word vocabulary
    train_loss = event_scalars(trained_lm / "train", "metrics/loss")
    steps = sorted(train_loss)
    assert steps[0] == 1 and len(steps) == steps[-1]  # a loss at every step, summary_every=1
    assert np.mean([train_loss[s] for s in steps[-20:]]) < np.mean([train_loss[s] for s in steps[:20]]) - 0.5


def test_learning_rate_follows_the_ptb_schedule(trained_lm):
    lr = event_scalars(trained_lm / "train", "metrics/learning_rate")
    per_epoch = sorted(set(round(v, 6) for v in lr.values()), reverse=True)
    assert per_epoch == [1.0, 0.5, 0.25]  # max_epoch 1, lr_decay 0.5


@pytest.mark.parametrize("task", ["lm", "classify"])
def test_the_run_loop_adds_no_op_to_the_graph(tmp_path, monkeypatch, task):
    """Build the graph once, then only run it: with finalize switched off (so that adding an op would not raise),
    a whole run with validation (the language model's sample, the classifier's PR curves and texts), checkpoints,
    summaries and a resume leaves the op count as it was built."""
    import cluster
    import data_handler
    import run_dir
    from test_classify import write_labelled
    if task == "lm":
        cfg = config.apply_overrides(config.named_config("test"), {"summary_every": "5", "vocab_size": "500",
                                                                   "checkpoint_every": "100"})
    else:
        cfg = config.apply_overrides(config.named_config("classify"), {
            "data": str(write_labelled(tmp_path / "topics.txt", 150, seed=0)), "hidden_size": "8",
            "embedding_size": "8", "num_steps": "16", "batch_size": "10", "summary_every": "5"})
    data = data_handler.task_data(cfg)
    built = {}

    class UnfinalizedRuntime(cluster.LocalRuntime):
        @contextlib.contextmanager
        def building(self):
            with super().building() as graph:
                yield graph
            graph._finalized = False  # undo finalize: a later op would be added silently, and counted

    def counting_build(*args):
        g = build(*args)
        built[g.graph] = len(g.graph.get_operations())
        return g

    build = train.build_training_graph
    monkeypatch.setattr(train, "build_training_graph", counting_build)
    run = run_dir.RunDir(tmp_path / "run")
    for epochs, resuming in ((1, False), (2, True)):
        cfg = dataclasses.replace(cfg, max_max_epoch=epochs)
        with stopping.StopRequest() as stop:
            assert train.train(cfg, data, run, resuming, UnfinalizedRuntime(cfg), stop) == 0
    assert len(built) == 2 and (tmp_path / "run" / "results.json").exists()
    for graph, ops_when_built in built.items():
        assert not graph.finalized and len(graph.get_operations()) == ops_when_built


def test_resume_continues_step_epoch_and_learning_rate_exactly(tmp_path):
    extra = ["--max_max_epoch", "2", "--max_epoch", "1", "--keep_prob", "0.8", "--optimizer", "adam",
             "--learning_rate", "0.01"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(tiny_lm_args(whole, *extra)) == 0
    steps_per_epoch = max(event_scalars(whole / "train", "metrics/loss")) // 2
    stop_at = steps_per_epoch + steps_per_epoch // 3  # mid-way through the second epoch
    assert train.main(tiny_lm_args(parts, *extra, "--max_steps", str(stop_at))) == 0
    assert train.main(tiny_lm_args(parts, *extra)) == 0  # same run_dir: continues from the checkpoint
    uninterrupted, resumed = event_scalars(whole / "train", "metrics/loss"), event_scalars(parts / "train", "metrics/loss")
    assert sorted(resumed) == sorted(uninterrupted)
    np.testing.assert_allclose([resumed[s] for s in sorted(resumed)],
                               [uninterrupted[s] for s in sorted(uninterrupted)], rtol=1e-5)
    lr = event_scalars(parts / "train", "metrics/learning_rate")
    assert lr[stop_at + 1] == pytest.approx(0.005)  # second epoch's decayed rate, restored after the restart
    valid = [event_scalars(d, "metrics/perplexity") for d in (whole, parts)]
    assert valid[0].keys() == valid[1].keys()
    np.testing.assert_allclose(list(valid[0].values()), list(valid[1].values()), rtol=1e-5)


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
    assert line == f"error: {trained_lm / 'nope'}: no such run (no run in {trained_lm})"
    line = one_line_error(run_cli("train.py", "--resume", "--run_dir", str(trained_lm.parent / "nope")))
    # Beside the shared fixture's run, other test modules may have trained runs of their own.
    assert line.startswith(f"error: {trained_lm.parent / 'nope'}: no such run (runs here: ") and \
        trained_lm.name in line.split("runs here: ")[1]


TRAINED_LM = ("--max_max_epoch", "3", "--max_epoch", "1", "--keep_prob", "0.9")  # conftest's trained_lm


def test_a_finished_run_rerun_prints_its_results_and_trains_nothing(trained_lm, capsys):
    valid_before = event_scalars(trained_lm / "valid", "metrics/perplexity")
    results = json.loads((trained_lm / "results.json").read_text())
    capsys.readouterr()
    assert train.main(tiny_lm_args(trained_lm, *TRAINED_LM)) == 0
    out = capsys.readouterr().out
    assert "resuming at step" not in out and f"{trained_lm}: complete, nothing left to train" in out
    assert f"valid loss {results['valid']['loss']:.3f} ppl {results['valid']['perplexity']:.2f}" in out
    assert "--max_max_epoch above 3" in out
    # Asked to run otherwise, with a resumable key changed or in a cluster, it refuses in one line.
    for extra in (["--precision", "bfloat16"], ["--device", "gpu"], ["--local_cluster", "2"]):
        assert train.main(tiny_lm_args(trained_lm, *TRAINED_LM, *extra)) == 1
        err = capsys.readouterr().err.strip()
        assert "would train nothing" in err and "--run_dir" in err and "\n" not in err, err
    assert event_scalars(trained_lm / "valid", "metrics/perplexity") == valid_before
    assert json.loads((trained_lm / "results.json").read_text()) == results


def test_an_unfinished_run_resumes_with_changed_keys_but_not_in_another_runtime(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(tiny_lm_args(run_dir, "--max_steps", "5")) == 0
    assert json.loads((run_dir / "runtime.json").read_text()) == {"cluster": None}
    capsys.readouterr()
    assert train.main(tiny_lm_args(run_dir, "--max_steps", "5", "--local_cluster", "2")) == 1  # before any process
    assert "trained in a single process; resumed in a cluster of 2 workers (sync)" in capsys.readouterr().err
    assert not (run_dir / "logs").exists()
    assert train.main(tiny_lm_args(run_dir, "--max_steps", "8", "--eval_batch_size", "4")) == 0
    assert "resuming at step 5 (epoch 1, batch 5)" in capsys.readouterr().out


def test_default_run_names(tmp_path, monkeypatch):
    import run_dir

    def run_of(*argv):
        return train.parse_command_line(list(argv))[2].path
    assert run_of("--config", "char", "--data", "tinyshakespeare") == os.path.join("runs", "char-tinyshakespeare")
    assert run_of("--config", "char", "--data", "../x/tinyshakespeare/input.txt") == \
        os.path.join("runs", "char-tinyshakespeare")
    saved = tmp_path / "runs" / "x"
    run_dir.RunDir(saved).save_config(config.named_config("test"))
    monkeypatch.chdir(tmp_path)
    assert run_of("--config", os.path.join("runs", "x", "config.json")) == os.path.join("runs", "x")


def training_losses(tmp_path, name, steps, *extra):
    run_dir = tmp_path / name
    assert train.main(tiny_lm_args(run_dir, "--max_steps", str(steps), *extra)) == 0
    curve = event_scalars(run_dir / "train", "metrics/loss")
    assert sorted(curve) == list(range(1, steps + 1))
    return np.array([curve[step] for step in range(1, steps + 1)])


def assert_same_curve(losses, reference, first_steps_rtol, window_fraction):
    """Two runs of one seed: the first 5 steps agree to first_steps_rtol (before float noise compounds), and every
    window of 10 steps has a mean within window_fraction of what the reference learned over the run."""
    np.testing.assert_allclose(losses[:5], reference[:5], rtol=first_steps_rtol)
    learned = reference[:10].mean() - reference[-10:].mean()
    assert learned > 0.3  # the curve goes somewhere, so agreeing on it means something
    windows = [(losses[i:i + 10].mean(), reference[i:i + 10].mean()) for i in range(0, len(reference), 10)]
    assert max(abs(a - b) for a, b in windows) < window_fraction * learned, windows


def test_fast_paths_follow_the_same_loss_curve(tmp_path):
    """XLA auto-clustering (--xla) and the compiled loss (--xla_loss, on by default) only change the order of float
    sums: the same seed gives the same losses within float noise."""
    plain = training_losses(tmp_path, "plain", 60, "--no_xla_loss")
    assert_same_curve(training_losses(tmp_path, "xla_loss", 60), plain, 1e-4, 0.02)
    assert_same_curve(training_losses(tmp_path, "xla", 60, "--no_xla_loss", "--xla"), plain, 2e-3, 0.02)


@pytest.mark.skipif(not native_bfloat16(), reason="the CPU has no bfloat16 instructions (no amx_bf16 or "
                                                   "avx512_bf16 in /proc/cpuinfo); emulated bfloat16 is slow and "
                                                   "oneDNN rounds it another way")
def test_bfloat16_follows_the_float32_loss_curve(tmp_path):
    """--precision bfloat16 rounds matmul operands to 8 bits of mantissa: its first losses stay within bfloat16
    noise of float32's, and it learns as much."""
    plain = training_losses(tmp_path, "plain", 60)
    assert_same_curve(training_losses(tmp_path, "bfloat16", 60, "--precision", "bfloat16"), plain, 2e-2, 0.05)


def test_a_stop_on_an_epochs_last_batch_still_validates_that_epoch(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(tiny_lm_args(run_dir, "--max_max_epoch", "2")) == 0
    steps_per_epoch = min(event_scalars(run_dir, "metrics/perplexity"))
    other = tmp_path / "stopped"
    assert train.main(tiny_lm_args(other, "--max_max_epoch", "2", "--max_steps", str(steps_per_epoch))) == 0
    assert list(event_scalars(other, "metrics/perplexity")) == [steps_per_epoch]
    assert (other / "best" / "best.json").exists()
    # The same command again trains nothing more: the limit is checked before each step.
    assert train.main(tiny_lm_args(other, "--max_max_epoch", "2", "--max_steps", str(steps_per_epoch))) == 0
    assert max(event_scalars(other / "train", "metrics/loss")) == steps_per_epoch
    assert "Raise --max_steps" in capsys.readouterr().out


def test_a_split_too_small_for_one_batch_is_refused(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("one two three four five six seven eight nine ten\n" * 10)
    assert train.main(["--config", "test", "--data", str(small), "--run_dir", str(tmp_path / "r")]) == 1
    assert "too few for one batch" in capsys.readouterr().err


def frozen_after_one_epoch(run_dir, *extra):
    """A run that learns in epoch 1 and then cannot change (the learning rate drops to 1e-30, far below a weight's
    rounding step): every later validation equals epoch 1's, so none is better."""
    return tiny_lm_args(run_dir, "--max_max_epoch", "6", "--max_epoch", "1", "--lr_decay", "1e-30", "--patience",
                        "2", *extra)


def test_early_stopping_ends_a_run_that_no_longer_improves_and_evaluates_the_best(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train.main(frozen_after_one_epoch(run_dir)) == 0
    assert "early stopping: no better validation perplexity since epoch 1 (--patience 2)" in capsys.readouterr().out
    results = json.loads((run_dir / "results.json").read_text())
    valid = event_scalars(run_dir, "metrics/perplexity")
    steps_per_epoch = min(valid)
    assert sorted(valid) == [steps_per_epoch * k for k in (1, 2, 3)]  # epochs 2 and 3 ran, 4 to 6 did not
    assert results["stopped"] == {"why": "patience", "epochs_trained": 3, "global_step": 3 * steps_per_epoch,
                                  "best_epoch": 1, "detail": "early stopping: no better validation perplexity in "
                                  "the 2 epochs after epoch 1 (--patience 2)"}
    assert results["best"]["step"] == steps_per_epoch
    assert results["checkpoint"] == str(run_dir / "best" / f"model.ckpt-{steps_per_epoch}")
    assert results["valid"]["perplexity"] == pytest.approx(valid[steps_per_epoch], rel=1e-6)

    # Interrupted after epoch 2 (--max_steps), the resumed run remembers the epoch without improvement it had.
    parts = tmp_path / "parts"
    assert train.main(frozen_after_one_epoch(parts, "--max_steps", str(2 * steps_per_epoch))) == 0
    assert train.main(frozen_after_one_epoch(parts, "--max_steps", "0")) == 0
    assert json.loads((parts / "results.json").read_text())["stopped"] == results["stopped"]
    assert sorted(event_scalars(parts, "metrics/perplexity")) == sorted(valid)

    # A run already out of patience stops at once when run again: no epoch more, the same results.
    capsys.readouterr()
    assert train.main(frozen_after_one_epoch(run_dir)) == 0
    assert "early stopping" in capsys.readouterr().out
    assert sorted(event_scalars(run_dir, "metrics/perplexity")) == sorted(valid)
    assert json.loads((run_dir / "results.json").read_text())["stopped"] == results["stopped"]

    # A finished schedule says so.
    done = tmp_path / "done"
    assert train.main(tiny_lm_args(done, "--max_max_epoch", "2")) == 0
    assert json.loads((done / "results.json").read_text())["stopped"]["why"] == "schedule"


def test_help_shows_the_defaults_of_the_config_named(capsys):
    for argv, hidden, optimizer in ((["--config", "char", "--help"], 256, "'adam'"), (["--help"], 200, "'sgd'"),
                                    (["--config=classify_glove", "--help"], 150, "'adam'")):
        with pytest.raises(SystemExit):
            train.main(argv)
        text = capsys.readouterr().out
        assert f"LSTM units per layer [default {hidden}]" in text
        assert f'"sgd", "adam" or "rmsprop" [default {optimizer}]' in text
