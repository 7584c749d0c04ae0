"""The reliability matrix: damaged checkpoints, diverging runs, two runs on one directory, leftovers of interrupted
writes, sizes that cannot fit, a full disk, and sample.py given what does not fit the run. Each row is a damage (or
none), a command, and the one-line error or the recovery expected. Runs are in-process on tiny configs, so the
matrix costs a few TensorFlow graphs, not a process each."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import checkpoints
import chief
import run_dir
import sample
import train
from test_classify import classify_args, write_labelled

LM = ["--config", "test", "--vocab_size", "500", "--hidden_size", "8", "--checkpoint_every", "300",
      "--max_max_epoch", "1"]


def lm_args(path, *extra):
    return [*LM, "--run_dir", str(path), *extra]


@pytest.fixture(scope="module")
def finished_lm(tmp_path_factory):
    """One epoch (1,680 steps) with a checkpoint every 300: checkpoints/ keeps 1200, 1500, 1680; best/ 1680."""
    path = tmp_path_factory.mktemp("reliability") / "lm"
    assert train.main(lm_args(path)) == 0
    return path


@pytest.fixture
def run_copy(finished_lm, tmp_path):
    """The finished run as it stands before it writes its results: resumed, it restores its newest checkpoint (a
    finished one only prints its results)."""
    path = tmp_path / "lm"
    shutil.copytree(finished_lm, path)
    (path / "results.json").unlink()
    return path


def steps_in(folder):
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in folder.glob("model.ckpt-*.index"))


def data_file(path, step, folder="checkpoints"):
    return path / folder / f"model.ckpt-{step}.data-00000-of-00001"


def truncate(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def zero(path):
    path.write_bytes(bytes(len(path.read_bytes())))


def scramble(path):
    path.write_bytes(np.random.RandomState(0).bytes(len(path.read_bytes())))


def write_not_finite(path, step):
    """Rewrites checkpoint `step` whole and readable, but with every float variable NaN."""
    from tf1 import tf
    prefix = str(path / "checkpoints" / f"model.ckpt-{step}")
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    values = [reader.get_tensor(n) for n in names]
    values = [np.full_like(v, np.nan) if v.dtype.kind == "f" else v for v in values]
    with tf.Graph().as_default(), tf.Session() as sess:
        sess.run(tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                                   tensors=[tf.constant(v) for v in values]))


def resume(path, capsys):
    """Restores and trains nothing (the step limit is where the run stands): (exit code, stdout, stderr)."""
    code = train.main(lm_args(path, "--max_steps", "1680"))
    out, err = capsys.readouterr()
    return code, out, err


DAMAGED_LATEST = [("truncated .data", lambda p: truncate(data_file(p, 1680))),
                  ("zeroed .data", lambda p: zero(data_file(p, 1680))),
                  ("random bytes in .data", lambda p: scramble(data_file(p, 1680))),
                  ("truncated .index", lambda p: truncate(p / "checkpoints" / "model.ckpt-1680.index")),
                  ("NaN variables", lambda p: write_not_finite(p, 1680))]


@pytest.mark.parametrize("name,damage", DAMAGED_LATEST, ids=[name for name, _ in DAMAGED_LATEST])
def test_a_damaged_latest_checkpoint_is_passed_over_for_the_newest_intact_one(run_copy, capsys, name, damage):
    """The newest intact checkpoint among the latest and the best: here the best one of the same step."""
    damage(run_copy)
    code, out, err = resume(run_copy, capsys)
    assert code == 0 and "Traceback" not in err
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and re.match(r"warning: .*checkpoints/model\.ckpt-1680: .*; trying the next", warnings[0])
    assert "resuming at step 1680 " in out


def test_resume_takes_the_newest_intact_checkpoint_of_latest_and_best(run_copy, capsys):
    """Latest 1680 damaged, best 1680 gone, latest 1500 intact: 1500; with the best at 1680 intact: 1680."""
    truncate(data_file(run_copy, 1680))
    for part in (run_copy / "best").glob("model.ckpt-1680.*"):
        part.rename(run_copy / part.name)
    code, out, err = resume(run_copy, capsys)
    assert code == 0 and "resuming at step 1500 " in out


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage \x00\x01", b'model_checkpoint_path: "nowhere-1"\n'])
def test_a_damaged_checkpoint_list_hides_no_checkpoint(run_copy, capsys, content):
    (run_copy / "checkpoints" / "checkpoint").write_bytes(content)
    code, out, err = resume(run_copy, capsys)
    assert code == 0 and err == "" and "resuming at step 1680 " in out


def test_when_no_checkpoint_is_intact_one_line_says_so(run_copy, capsys):
    for data in (run_copy / "checkpoints").glob("*.data-*"):
        truncate(data)
    truncate(data_file(run_copy, 1680, "best"))
    code, out, err = resume(run_copy, capsys)
    lines = err.strip().splitlines()
    assert code == 1 and lines[-1].startswith("error: ") and "no intact checkpoint (4 damaged)" in lines[-1]
    assert len(lines) == 5 and all(line.startswith("warning: ") for line in lines[:-1])


def test_sample_falls_back_from_a_damaged_best_checkpoint(run_copy, capsys):
    zero(data_file(run_copy, 1680, "best"))
    assert sample.main(["--run_dir", str(run_copy), "--length", "5"]) == 0
    err = capsys.readouterr().err
    assert "best/model.ckpt-1680: unreadable" in err and "Traceback" not in err


@pytest.mark.parametrize("make_bad,message", [
    (lambda p: p / "vocab.json", "vocab.json: not a checkpoint"),
    (lambda p: p / "checkpoints", "checkpoints: not a checkpoint"),
    (lambda p: p / "checkpoints" / "model.ckpt-1", "model.ckpt-1: no such checkpoint")])
def test_sample_refuses_a_checkpoint_that_is_not_one(finished_lm, capsys, make_bad, message):
    assert sample.main(["--run_dir", str(finished_lm), "--checkpoint", str(make_bad(finished_lm))]) == 1
    assert_one_line(capsys.readouterr().err, message)


def assert_one_line(err, message):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_sample_refuses_options_of_the_other_task(finished_lm, tmp_path, capsys):
    assert sample.main(["--run_dir", str(finished_lm), "--text", "a sentence"]) == 1
    assert_one_line(capsys.readouterr().err, "--text: is for a classifier")
    data = write_labelled(tmp_path / "topics.txt", 60, seed=0)
    classifier = tmp_path / "classifier"
    assert train.main(classify_args(classifier, "--data", str(data), "--max_max_epoch", "1")) == 0
    capsys.readouterr()
    assert sample.main(["--run_dir", str(classifier), "--prime", "the", "--text", "goal"]) == 1
    assert_one_line(capsys.readouterr().err, "--prime: is for a language model")
    for option in (["--score", "-"], ["--num_samples", "3"], ["--generator", "xla"]):
        assert sample.main(["--run_dir", str(classifier), *option, "--text", "goal"]) == 1
        assert_one_line(capsys.readouterr().err, f"{option[0]}: is for a language model")


@pytest.mark.parametrize("learning_rate,what", [("1e9", "loss jumped to"), ("1e38", "loss is inf")])
def test_a_diverging_run_stops_before_saving_garbage(tmp_path, capsys, learning_rate, what):
    """A learning rate that makes the loss explode (finite) or overflow, in the second epoch of a run whose first
    was validated: one line naming the step and the levers, exit 1; the checkpoints from before the divergence and
    the validated best stay, no result is recorded, and the run resumes with a sane learning rate."""
    path = tmp_path / "run"
    assert train.main(lm_args(path, "--max_max_epoch", "2", "--max_steps", "1800")) == 0  # epoch 1 validated
    capsys.readouterr()
    # Summaries every step: a NaN gradient reaches the histograms in the very step that diverges.
    assert train.main(lm_args(path, "--max_max_epoch", "2", "--learning_rate", learning_rate,
                              "--summary_every", "1")) == 1
    err = capsys.readouterr().err
    assert_one_line(err, "training diverged. Lower --learning_rate")
    diverged_at = int(re.search(r"step (\d+): ", err).group(1))
    assert what in err and diverged_at > 1800 and "resumes from step 1800" in err
    assert steps_in(path / "checkpoints") and max(steps_in(path / "checkpoints")) == 1800
    assert steps_in(path / "best") == [1680] and json.loads((path / "best" / "best.json").read_text())["step"] == 1680
    assert not (path / "results.json").exists()
    for prefix in checkpoints.RunCheckpoints(run_dir.RunDir(path)).resume_candidates():
        assert checkpoints.problem(prefix) is None
    assert train.main(lm_args(path, "--max_max_epoch", "2", "--learning_rate", "0.5")) == 0
    assert "resuming at step 1800 " in capsys.readouterr().out
    assert json.loads((path / "results.json").read_text())["test"]["perplexity"] < 500


class Step:
    def __init__(self, loss, gradient_norm=1.0):
        self.metrics, self.gradient_norm = {"loss": loss}, gradient_norm


def test_one_bad_batch_is_not_a_divergence_but_three_in_a_row_are():
    from config import UserError
    from stopping import DivergenceGuard
    guard = DivergenceGuard(num_outputs=6, run=None)  # limit 2 ln 6 + 3 x median
    for step in range(1, 51):
        assert guard.check_step(step, Step(0.1), 1.0)
    assert not guard.check_step(51, Step(9.0), 1.0)  # suspect: no checkpoint now, but no stop
    assert guard.check_step(52, Step(0.1), 1.0)
    assert not guard.check_step(53, Step(9.0), 1.0) and not guard.check_step(54, Step(9.0), 1.0)
    with pytest.raises(UserError, match="step 55: the training loss jumped to 9 .* for 3 steps"):
        guard.check_step(55, Step(9.0), 1.0)
    with pytest.raises(UserError, match="step 7: the gradient norm is inf"):
        DivergenceGuard(6, None).check_step(7, Step(1.0, float("inf")), 1.0)


def test_a_second_run_on_a_directory_in_use_is_refused(run_copy, capsys):
    with run_dir.RunDir(run_copy).locked():
        code, out, err = resume(run_copy, capsys)
    assert code == 1
    assert_one_line(err, f"in use by process {os.getpid()} on ")


def test_a_lock_left_by_a_dead_process_is_taken_over(run_copy, capsys):
    (run_copy / "lock").write_text("process 999999 on somewhere")
    code, out, err = resume(run_copy, capsys)
    assert code == 0 and "note: " in err and "taking over from process 999999 on somewhere" in err


def test_leftovers_of_interrupted_writes_go_and_three_checkpoints_stay_across_resumes(run_copy, capsys):
    for fake_step in (300, 600, 900):  # a directory from before the savers were told: 6 sets on disk
        for part in (run_copy / "checkpoints").glob("model.ckpt-1500.*"):
            shutil.copy(part, str(part).replace("-1500.", f"-{fake_step}."))
    (run_copy / "results.json.graphlstm-0badf00d.tmp").write_text("{")
    (run_copy / "notes.tmp").write_text("a user's own file")
    (run_copy / "checkpoints" / "draft.tmp").write_text("a user's own file")
    (run_copy / "checkpoints" / "model.ckpt-1700.data-00000-of-00001.tempstate99").write_bytes(b"x")
    for limit in (2000, 2300, 2600):  # each resumed process saves every 300 steps
        assert train.main(lm_args(run_copy, "--max_max_epoch", "2", "--max_steps", str(limit))) == 0
    err = capsys.readouterr().err
    assert "removed the temporary files of an interrupted write" in err
    assert not list(run_copy.glob("*graphlstm*")) and not list((run_copy / "checkpoints").glob("*tempstate*"))
    assert (run_copy / "notes.tmp").exists() and (run_copy / "checkpoints" / "draft.tmp").exists()
    assert steps_in(run_copy / "checkpoints") == [2300, 2400, 2600]  # of 2 + 2 + 2 saved, and 3 before
    assert len(list((run_copy / "best").glob("*.index"))) == 1


@pytest.mark.parametrize("extra,message", [
    (["--hidden_size", "100000"], "the model needs about"),
    (["--num_steps", "100000"], "--num_steps: at most 1000"),
    (["--hiden_size", "3"], "unknown config key '--hiden_size'"),
    (["--data", "/nonexistent/corpus.txt"], "corpus.txt"),
    (["--run_dir", "/proc/no/such/run"], "/proc/no/such/run: cannot create the run directory")])
def test_sizes_that_cannot_fit_and_bad_flags_are_one_line(tmp_path, capsys, extra, message):
    assert train.main(lm_args(tmp_path / "run", *extra)) == 1
    assert_one_line(capsys.readouterr().err, message)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_classifier_unroll_past_the_limit_is_refused(tmp_path, capsys):
    data = write_labelled(tmp_path / "topics.txt", 30, seed=0)
    assert train.main(classify_args(tmp_path / "run", "--data", str(data), "--num_steps", "100000")) == 1
    assert_one_line(capsys.readouterr().err, "--num_steps: at most 1000")


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a 16 MB tmpfs needs root: the full-disk case cannot be staged here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_run_resumes_once_there_is_room(small_disk, capsys):
    filler = small_disk / "filler"
    # ~800 KB left: the run directory and its saved splits (~470 KB of text), then a checkpoint's write fails.
    filler.write_bytes(bytes(16 * 2 ** 20 - 800 * 2 ** 10))
    path = small_disk / "run"
    assert train.main(lm_args(path, "--max_max_epoch", "2")) == 1
    err = capsys.readouterr().err
    assert_one_line(err, "No space left on device")
    assert "the last complete checkpoint is kept" in err
    filler.unlink()
    assert train.main(lm_args(path, "--max_max_epoch", "2")) == 0
    assert json.loads((path / "results.json").read_text())["test"]["perplexity"] > 1


def test_the_kill_stress_script_runs():
    """tests/stress_kill.py in brief (2 kills), so that it cannot rot; docs/reliability.md records a long run of it. Seed 5
    draws both kills in training, 1.85 s and 2.36 s after the loop starts: past the first checkpoints on any machine
    that trains this tiny model at all, so each restart has a checkpoint to resume from."""
    done = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "stress_kill.py"), "--trials", "2",
                           "--epochs", "3", "--seed", "5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"2 kills: [123] restarts \(the final one too\) checked", done.stdout)
    assert "equal the uninterrupted run's" in done.stdout


RUN_NAMES = ["exp[lr=1]*?{a,b}", "x" * 200, "-all of them: [a]*?{b} ünïcødé"]


@pytest.mark.parametrize("name", RUN_NAMES, ids=["patterns", "long", "dash-spaces-unicode-patterns"])
def test_any_name_a_user_can_type_is_a_run_directory(tmp_path, capsys, name):
    """Trains, resumes (pruning past 3 checkpoints), samples and scores in a folder of that name; the last name
    also holds the data and the export. TensorFlow reads checkpoint paths as patterns, so these need the alias."""
    folder = tmp_path / name
    folder.mkdir()
    path = folder / name
    data = None
    if name == RUN_NAMES[-1]:
        data = folder / "corpus [1].txt"
        data.write_text("".join(f"the {w} sat on the mat {w}\n" for w in ("cat", "dog", "hat", "rat") * 1200))
    extra = ["--data", str(data)] if data else []
    assert train.main([*LM, f"--run_dir={path}", *extra, "--max_steps", "300", "--checkpoint_every", "100"]) == 0
    assert train.main([*LM, f"--run_dir={path}", *extra, "--max_steps", "600", "--checkpoint_every", "100"]) == 0
    out, err = capsys.readouterr()
    assert "resuming at step 300 " in out and "error" not in err and "warning" not in err
    assert steps_in(path / "checkpoints") == [400, 500, 600]
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n")
    assert sample.main([f"--run_dir={path}", "--length", "5", "--generator", "plain"]) == 0
    assert sample.main([f"--run_dir={path}", "--score", str(text)]) == 0
    out, err = capsys.readouterr()
    assert "perplexity" in out and err == ""
    if data:
        import export
        assert export.main([f"--run_dir={path}", f"--out={folder / 'model [v1]'}"]) == 0
        assert (folder / "model [v1]" / "saved_model.pb").exists()
        assert [p.name for p in folder.iterdir() if "graphlstm" in p.name] == []  # no staging folder left


def signal_at(monkeypatch, task_class, at_call, signum, count=1):
    """Makes the `at_call`-th training step of task_class (counted across runs in this process) send signum to this
    process `count` times, as Slurm's or a user's signal would arrive while the step runs."""
    import tasks
    calls = {"n": 0}
    original = getattr(tasks, task_class).train_step

    def train_step(self, *args):
        calls["n"] += 1
        if calls["n"] == at_call:
            for _ in range(count):
                os.kill(os.getpid(), signum)
        return original(self, *args)
    monkeypatch.setattr(getattr(tasks, task_class), "train_step", train_step)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_and_the_run_resumes_exactly_there(run_copy, tmp_path, capsys, monkeypatch, signum, code):
    path = tmp_path / "signalled"
    signal_at(monkeypatch, "LanguageModel", 250, signum)
    assert train.main(lm_args(path, "--max_steps", "400")) == code
    out, err = capsys.readouterr()
    assert "interrupted at step 250; checkpoint saved" in out and "Traceback" not in err
    assert steps_in(path / "checkpoints") == [250]
    monkeypatch.undo()
    assert train.main(lm_args(path, "--max_steps", "400")) == 0
    assert "resuming at step 250 " in capsys.readouterr().out


def test_a_second_signal_during_the_save_lets_it_finish(tmp_path, capfd, monkeypatch):
    """SIGTERM, then SIGTERM again while the checkpoint is being written: the save completes, intact, and the run
    ends 143 (a signal outside a save would quit at once)."""
    path = tmp_path / "signalled"
    signal_at(monkeypatch, "LanguageModel", 250, signal.SIGTERM)
    original_save = checkpoints.save

    def save(sess, saver, folder, step):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the save runs
        return original_save(sess, saver, folder, step)
    monkeypatch.setattr(checkpoints, "save", save)
    assert train.main(lm_args(path, "--max_steps", "400")) == 143
    err = capfd.readouterr().err  # the signal handler writes to the descriptor
    assert "finishing the checkpoint being written, then stopping" in err and "Traceback" not in err
    assert steps_in(path / "checkpoints") == [250]
    assert checkpoints.problem(str(path / "checkpoints" / "model.ckpt-250")) is None


def test_a_signal_in_a_cross_validation_fold_stops_the_whole_run(tmp_path, capsys, monkeypatch):
    data = write_labelled(tmp_path / "topics.txt", 90, seed=0)
    path = tmp_path / "cv"
    args = classify_args(path, "--data", str(data), "--cv", "3", "--max_max_epoch", "2", "--patience", "0")
    signal_at(monkeypatch, "Classifier", 10, signal.SIGINT)  # in fold 0's second epoch (6 batches an epoch)
    assert train.main(args) == 130
    stopped_at = re.search(r"interrupted at step (\d+);", capsys.readouterr().out).group(1)
    assert (path / "fold_0" / "checkpoints").exists() and not (path / "fold_1").exists()
    written = [(p.name, p.stat().st_mtime_ns) for p in sorted((path / "fold_0" / "data").iterdir())]
    monkeypatch.undo()
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert f"resuming at step {stopped_at} " in out and (path / "cv_results.json").exists()
    # The splits are written when a run starts, not again on resume.
    assert [(p.name, p.stat().st_mtime_ns) for p in sorted((path / "fold_0" / "data").iterdir())] == written
    assert [name for name, _ in written] == ["test.tsv", "train.tsv", "valid.tsv"]


def test_a_signal_after_the_pretraining_language_model_stops_before_the_classifier(tmp_path, capsys, monkeypatch):
    data = write_labelled(tmp_path / "topics.txt", 300, seed=0)
    path = tmp_path / "pretrained"
    args = classify_args(path, "--data", str(data), "--pretrain_epochs", "1", "--max_max_epoch", "1")
    final_results = chief.Chief.final_results

    def signal_after_the_lm(self, global_step):
        results = final_results(self, global_step)
        if self.run.path.endswith("pretrain"):
            os.kill(os.getpid(), signal.SIGTERM)
        return results
    monkeypatch.setattr(chief.Chief, "final_results", signal_after_the_lm)
    assert train.main(args) == 143
    assert (path / "pretrain" / "best").exists() and not (path / "checkpoints").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert train.main(args) == 0 and (path / "results.json").exists()


def signal_on_run(monkeypatch, call, signum=signal.SIGTERM):
    """Sends signum to this process as the `call`-th Session.run of the process's sessions starts."""
    from tf1 import tf
    calls = {"n": 0}
    original = tf.Session.run

    def run(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(tf.Session, "run", run)


def test_a_signal_stops_generation_with_what_was_written(finished_lm, capsys, monkeypatch):
    """Runs 1 and 2 initialise the tables and restore, then each run generates a piece of 4 tokens: the signal as
    run 5 starts leaves the first two pieces written, a prefix of the uninterrupted text."""
    import io
    whole = io.StringIO()
    assert sample.main(["--run_dir", str(finished_lm), "--length", "40", "--generator", "plain"], whole) == 0
    monkeypatch.setattr(sample, "GENERATION_CHUNK", 4)
    cut = io.StringIO()
    signal_on_run(monkeypatch, 5)
    assert sample.main(["--run_dir", str(finished_lm), "--length", "40", "--generator", "plain"], cut) == 143
    assert capsys.readouterr().err.strip() == "interrupted"
    written = cut.getvalue()
    assert whole.getvalue().startswith(written) and 4 <= len(written.split()) <= 8 < len(whole.getvalue().split())


@pytest.mark.parametrize("what", ["score", "classify"])
def test_a_signal_stops_scoring_and_classifying_in_one_line(finished_lm, tmp_path, capsys, monkeypatch, what):
    if what == "score":
        text = tmp_path / "long.txt"
        text.write_text("the cat sat on the mat\n" * 5000)
        monkeypatch.setattr(sample, "SCORING_CHUNK", 100)
        args = ["--run_dir", str(finished_lm), "--score", str(text)]
    else:
        data = write_labelled(tmp_path / "topics.txt", 60, seed=0)
        classifier = tmp_path / "classifier"
        assert train.main(classify_args(classifier, "--data", str(data), "--max_max_epoch", "1")) == 0
        sentences = tmp_path / "sentences.txt"
        sentences.write_text("ball goal team\n" * 50)
        monkeypatch.setattr(sample, "CLASSIFYING_CHUNK", 10)
        args = ["--run_dir", str(classifier), "--file", str(sentences)]
    capsys.readouterr()
    signal_on_run(monkeypatch, 9, signal.SIGINT)  # after the restore and a first part (block) or two
    assert sample.main(args) == 130
    out, err = capsys.readouterr()
    assert err.strip() == "interrupted"
    assert "perplexity" not in out if what == "score" else 0 < len(out.splitlines()) < 50


def test_a_signal_during_export_leaves_no_partial_model(finished_lm, tmp_path, capsys, monkeypatch):
    import export
    from tf1 import tf
    original = tf.saved_model.Builder.save

    def save(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(tf.saved_model.Builder, "save", save)
    out = tmp_path / "exported"
    assert export.main(["--run_dir", str(finished_lm), "--out", str(out)]) == 143
    assert_one_line_of(capsys.readouterr().err, f"interrupted; nothing was written to {out}")
    assert not out.exists() and os.listdir(tmp_path) == []


def assert_one_line_of(err, text):
    assert err.strip() == text, err


def test_a_full_disk_at_start_names_the_path(small_disk, capsys):
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # every block taken
        with contextlib.suppress(OSError):
            while True:
                f.write(bytes(2 ** 16))
                f.flush()
    path = small_disk / "run"
    assert train.main(lm_args(path)) == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "No space left on device" in line and str(path) in line, line


def test_a_folder_of_the_users_is_refused_and_kept_whole(tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "corpus").mkdir(parents=True)
    (folder / "notes.tmp").write_text("mine")
    (folder / "corpus" / "draft.tmp").write_text("mine")
    assert train.main(lm_args(folder)) == 1
    assert_one_line(capsys.readouterr().err, "a folder of other files (notes.tmp), not a run directory")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == ["corpus", "corpus/draft.tmp",
                                                                             "notes.tmp"]


def test_a_failed_start_leaves_no_lock_behind(tmp_path, capsys):
    for folder in (tmp_path / "new", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        assert train.main(lm_args(folder, "--data", str(tmp_path / "missing.txt"))) == 1
        assert_one_line(capsys.readouterr().err, "missing.txt")
        assert (folder.name == "empty") == folder.exists() and not (folder / "lock").exists()


def test_a_named_damaged_checkpoint_is_refused_not_replaced(run_copy, capsys):
    zero(data_file(run_copy, 1500))
    named = str(run_copy / "checkpoints" / "model.ckpt-1500")
    assert sample.main(["--run_dir", str(run_copy), "--checkpoint", named, "--generator", "plain"]) == 1
    assert_one_line(capsys.readouterr().err, "model.ckpt-1500: the checkpoint is damaged: unreadable")


def test_a_best_json_without_its_metric_is_set_aside(run_copy, capsys):
    (run_copy / "best" / "best.json").write_text('{"step": 1680, "epoch": 1}')
    code, out, err = resume(run_copy, capsys)
    assert code == 0 and "best.json: expected numbers for step, epoch, perplexity" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("flags,message", [
    (["--top_k", "99999999999"], "--top_k: must be in [0, 2147483647]"),
    (["--num_samples", "50000000"], "--num_samples: must be in [1, 10,000]"),
    (["--length", "3000000000"], "--length: must be in [0, 1,073,741,823]"),
    (["--seed", str(2 ** 32)], "--seed: with --num_samples 1 it must be in [0, 2147483647]"),
    (["--temperature", "inf"], "--temperature: must be a positive number"),
    (["--length", "-1"], "--length: must be in [0, 1,073,741,823]"),
    (["--top_p", "0"], "--top_p: must be in (0, 1]"), (["--top_p", "nan"], "--top_p: must be in (0, 1]"),
    (["--top_p", "1.5"], "--top_p: must be in (0, 1]"),
    (["--beam_width", "-1"], "--beam_width: must be in [0, 1000]"),
    (["--beam_width", "99999999999"], "--beam_width: must be in [0, 1000]"),
    (["--beam_width", "2", "--num_samples", "3"], "--num_samples: at most --beam_width (2) best beams"),
    (["--beam_width", "2", "--top_p", "0.5"], "--top_p: is for sampling, not for --beam_width"),
    (["--length_penalty", "0.6"], "--length_penalty: is for --beam_width"),
    (["--length_penalty", "-1", "--beam_width", "2"], "--length_penalty: must be in [0, 10]"),
    (["--stop", ""], "--stop: must not be empty"),
    (["--stop", "zzqx unheard"], "--stop: 'zzqx' is not in the model's vocabulary")])
def test_sample_bounds_every_number_in_one_line(finished_lm, capsys, flags, message):
    assert sample.main(["--run_dir", str(finished_lm), *flags]) == 1
    assert_one_line(capsys.readouterr().err, message)


def test_a_config_file_that_is_deep_or_a_fifo_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    assert train.main(["--config", str(deep), "--run_dir", str(tmp_path / "run")]) == 1
    assert_one_line(capsys.readouterr().err, "deep.json: not a config or run file (JSON nested too deeply)")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert train.main(["--config", str(fifo), "--run_dir", str(tmp_path / "run")]) == 1  # would block if opened
    assert_one_line(capsys.readouterr().err, "fifo.json: not a regular file")


@pytest.mark.parametrize("flags", [["--length", "0", "--beam_width", "1000"],
                                   ["--stop", "the the the the the", "--length", "5"],
                                   ["--stop", "\n", "--top_p", "1e-30", "--length", "3"],
                                   ["--beam_width", "1", "--stop", "the", "--length", "3"]])
def test_whatever_a_user_types_gives_text(finished_lm, capsys, flags):
    """Extreme but valid settings generate (a stop that can never match, a nucleus of one token, the widest beam)."""
    assert sample.main(["--run_dir", str(finished_lm), "--generator", "plain", *flags]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and "Traceback" not in err
