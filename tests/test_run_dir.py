"""run_dir: the layout, atomic JSON files, config/vocab/labels round trips, the lock and clean-up; and
checkpoints.RunCheckpoints: choosing and restoring a run's checkpoints."""
import json
import os
import re

import pytest

import config
import checkpoints
import data_handler
import run_dir
from config import UserError


def test_config_vocab_and_labels_round_trip(tmp_path):
    run = run_dir.RunDir(tmp_path / "run")
    cfg = config.apply_overrides(config.named_config("char"), {"hidden_size": "64"})
    vocab = data_handler.Vocab(["<unk>", "a", "é", "\n"])
    run.save_config_and_vocab(cfg, vocab, ["neg", "pos"])
    assert run.load_config() == cfg and run.load_vocab() == vocab and run.load_labels() == ["neg", "pos"]
    assert json.loads(open(run.config_path).read())["hidden_size"] == 64
    # ... and no temporary files left
    assert sorted(os.listdir(run.path)) == ["config.json", "labels.json", "runtime.json", "vocab.json"]
    # A resumed run must find the vocabulary it was trained with.
    run.save_config_and_vocab(cfg, vocab, ["neg", "pos"], resuming=True)
    with pytest.raises(UserError, match="vocab.json: the vocabulary built from the data differs"):
        run.save_config_and_vocab(cfg, data_handler.Vocab(["<unk>", "b"]), None, resuming=True)


def test_a_config_written_before_a_key_existed_still_loads(tmp_path):
    run = run_dir.RunDir(tmp_path)
    values = config.to_dict(config.named_config("small"))
    del values["eval_batch_size"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert run.load_config().evaluation_batch_size == 20


@pytest.mark.parametrize("content,message", [("{not json", "not valid JSON"), ("[1]", "expected a JSON object"),
                                             ('{"colour": 1}', "unknown config key 'colour'"),
                                             ('{"hidden_size": "many"}', "key 'hidden_size' should be int")])
def test_bad_json_files_are_one_line_naming_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(UserError) as error:
        run_dir.RunDir(tmp_path).load_config()
    assert str(error.value).startswith(str(tmp_path / "config.json")) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_run_and_files_are_named(tmp_path):
    with pytest.raises(UserError, match="nope: no such run \\(no run in "):
        run_dir.RunDir(tmp_path / "nope").load_config()
    with pytest.raises(UserError, match="labels.json: no such file"):
        run_dir.RunDir(tmp_path).load_labels()
    with pytest.raises(UserError, match="no run found under"):
        run_dir.newest(str(tmp_path))


def test_a_missing_run_names_the_runs_beside_it(tmp_path):
    for name in ("small", "char-tinyshakespeare", "classify-trec"):
        run_dir.RunDir(tmp_path / name).save_config(config.Config())
    (tmp_path / "notes").mkdir()  # not a run: not listed
    with pytest.raises(UserError) as error:
        run_dir.RunDir(tmp_path / "char-input").load_config()
    assert str(error.value) == (f"{tmp_path / 'char-input'}: no such run (runs here: char-tinyshakespeare, "
                                "classify-trec, small)")
    for k in range(4):
        run_dir.RunDir(tmp_path / f"r{k}").save_config(config.Config())
    assert str(run_dir.missing(str(tmp_path / "x"))).endswith("(runs here: char-tinyshakespeare, classify-trec, r0, "
                                                            "r1, r2, ...)")


def test_default_names_come_from_the_data_as_given(tmp_path, monkeypatch):
    runs = lambda name: os.path.join("runs", name)  # noqa: E731
    assert run_dir.default_path("small", "") == runs("small")
    assert run_dir.default_path("char", "tinyshakespeare") == runs("char-tinyshakespeare")  # a registry name
    assert run_dir.default_path("char", "../x/tinyshakespeare/input.txt") == runs("char-tinyshakespeare")
    assert run_dir.default_path("char", "books/my_book.txt") == runs("char-my_book")
    assert run_dir.default_path("classify", "data/ptb/train.txt") == runs("classify-ptb")
    assert run_dir.default_path("my.json", "data/mr/") == runs("my-mr")
    assert run_dir.default_path(os.path.join("runs", "x", "config.json"), "") == runs("x")  # that config's run
    (tmp_path / "shakespeare").mkdir()
    monkeypatch.chdir(tmp_path / "shakespeare")
    assert run_dir.default_path("char", "input.txt") == runs("char-shakespeare")  # the folder it is in


def test_newest(tmp_path):
    for name in ("a", "b"):
        run_dir.RunDir(tmp_path / name).save_config(config.Config())
    os.utime(tmp_path / "a", (1, 1))
    assert run_dir.newest(str(tmp_path)).path == str(tmp_path / "b")


def finished_run(path, epochs=2, why="schedule", cluster=None, **keys):
    """A run directory as a finished run leaves it (without TensorFlow: empty checkpoint files name the steps)."""
    run = run_dir.RunDir(path)
    cfg = config.apply_overrides(config.named_config("test"), {"max_max_epoch": str(epochs), **keys})
    run.save_config_and_vocab(cfg, data_handler.Vocab(["<unk>", "a"]), cluster=cluster)
    for folder in (run.checkpoint_dir, run.best_dir):
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, "model.ckpt-100.index"), "w").close()
    run.save_results({"task": "lm", "best": {"step": 100, "epoch": epochs, "perplexity": 61.5},
                      "valid": {"loss": 4.119, "perplexity": 61.5}, "test": {"loss": 4.0, "perplexity": 54.6},
                      "stopped": {"why": why, "detail": f"the schedule ended: {epochs} of --max_max_epoch {epochs} "
                                  "epochs trained", "epochs_trained": epochs, "global_step": 100,
                                  "best_epoch": epochs}, "cluster": cluster and {**cluster, "global_step": 100}})
    return run, cfg


def test_a_finished_run_rerun_says_so_and_names_what_trains_more(tmp_path):
    run, cfg = finished_run(tmp_path / "run")
    said = run.check_rerun(cfg, None)
    assert said.startswith(f"{run}: complete, nothing left to train (the schedule ended: 2 of --max_max_epoch 2")
    assert "(step 100): valid loss 4.119 ppl 61.50  test loss 4.000 ppl 54.60" in said
    assert "--max_max_epoch above 2" in said and "resuming" not in said
    assert run.check_rerun(config.apply_overrides(cfg, {"max_max_epoch": "3"}), None) is None  # resumes, trains more
    # Results of an earlier checkpoint (a schedule raised, then interrupted): not finished, it resumes.
    open(os.path.join(run.checkpoint_dir, "model.ckpt-150.index"), "w").close()
    assert run.check_rerun(cfg, None) is None


@pytest.mark.parametrize("keys,cluster,named", [
    ({"precision": "bfloat16"}, None, "--precision=bfloat16 would train nothing"),
    ({"device": "gpu", "max_steps": "50"}, None, "--max_steps=50, --device=gpu would train nothing"),
    ({}, {"workers": 2, "replicas": "sync"}, "a cluster of 2 workers (sync) (it trained in a single process) would")])
def test_a_finished_run_asked_to_run_otherwise_trains_nothing(tmp_path, keys, cluster, named):
    run, cfg = finished_run(tmp_path / "run")
    with pytest.raises(UserError) as error:
        run.check_rerun(config.apply_overrides(cfg, keys), cluster)
    assert named in str(error.value) and "give another --run_dir" in str(error.value)
    assert str(error.value).startswith(f"{run}: complete (the schedule ended") and "\n" not in str(error.value)


def test_a_run_resumes_only_in_the_runtime_it_trained_in(tmp_path):
    sync2, async3 = {"workers": 2, "replicas": "sync"}, {"workers": 3, "replicas": "async"}
    for trained, resumed in ((None, sync2), (sync2, None), (sync2, async3)):
        run, cfg = finished_run(tmp_path / str(resumed), cluster=trained)
        os.remove(run.results_path)  # interrupted: it resumes, with changed resumable keys too
        assert run.check_rerun(config.apply_overrides(cfg, {"precision": "bfloat16"}), trained) is None
        with pytest.raises(UserError, match=f"trained in {re.escape(run_dir.runtime_name(trained))}; resumed in "
                                            f"{re.escape(run_dir.runtime_name(resumed))} its global step"):
            run.check_rerun(cfg, resumed)
    # A run from before runtime.json: its results.json says how it trained; without either, it is not known.
    run, cfg = finished_run(tmp_path / "old", cluster=sync2)
    os.remove(run.runtime_path)
    assert run.load_cluster() == (True, sync2)
    os.remove(run.results_path)
    assert run.load_cluster() == (False, None) and run.check_rerun(cfg, None) is None


def test_checkpoints_are_chosen_explicit_then_best_then_latest_and_restored(tmp_path):
    from tf1 import tf
    run = run_dir.RunDir(tmp_path)
    saved_ones = checkpoints.RunCheckpoints(run)
    with tf.Graph().as_default():
        value = tf.get_variable("value", [], initializer=tf.zeros_initializer())
        new_value = tf.placeholder(tf.float32, [])
        assign = tf.assign(value, new_value)
        saver = tf.train.Saver(max_to_keep=10)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            with pytest.raises(UserError, match="no checkpoint found"):
                saved_ones.use_candidates()
            saved = {}
            for step in (1, 2, 12):
                sess.run(assign, {new_value: float(step)})
                saved[step] = saver.save(sess, os.path.join(run.checkpoint_dir, "model.ckpt"), global_step=step)
            sess.run(assign, {new_value: 5.0})
            best = saver.save(sess, os.path.join(run.best_dir, "model.ckpt"), global_step=5)
            assert checkpoints.listed(run.checkpoint_dir) == [saved[12], saved[2], saved[1]]  # by step, not by name
            assert saved_ones.resume_candidates() == [saved[12], best, saved[2], saved[1]]  # newest step first
            assert saved_ones.use_candidates() == [best, saved[12], saved[2], saved[1]]
            assert saved_ones.use_candidates(saved[1]) == [saved[1]]  # a named one alone
            with pytest.raises(UserError, match="nope.ckpt: no such checkpoint"):
                saved_ones.use_candidates(str(tmp_path / "nope.ckpt"))
            with pytest.raises(UserError, match="config.json: not a checkpoint"):
                run.save_config(config.Config()) or saved_ones.use_candidates(run.config_path)
            assert saved_ones.restore_for_resume(sess, saver) == saved[12]
            assert sess.run(value) == 12.0
    with tf.Graph().as_default():
        tf.get_variable("value", [2])  # another shape than the checkpoint's
        with tf.Session() as sess:
            with pytest.raises(UserError, match="the checkpoint does not match this model"):
                checkpoints.restore(sess, tf.train.Saver(), best)


def test_the_lock_refuses_a_second_holder_and_passes_on_after_a_death(tmp_path, capsys):
    import multiprocessing
    run = run_dir.RunDir(tmp_path / "run")
    with run.locked():
        assert "process" in (tmp_path / "run" / "lock").read_text()
        with pytest.raises(UserError, match=r"run: in use by process \d+ on "):
            with run_dir.RunDir(tmp_path / "run").locked():
                pass
    assert not (tmp_path / "run").exists()  # a start that wrote nothing leaves neither the lock nor the folder
    with run.locked():
        run.save_config(config.Config())
    assert (tmp_path / "run" / "lock").read_text() == ""  # released cleanly: nothing to take over
    # A process that dies holding the lock (kill -9 leaves its line in the file) passes it on with a note.
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=hold_forever, args=(run.path, ready))
    holder.start()
    assert ready.wait(30)
    with pytest.raises(UserError, match=f"in use by process {holder.pid} "):
        with run.locked():
            pass
    holder.kill()
    holder.join()
    capsys.readouterr()
    with run.locked():
        pass
    assert f"taking over from process {holder.pid} on " in capsys.readouterr().err


def hold_forever(path, ready):
    import time
    with run_dir.RunDir(path).locked():
        ready.set()
        time.sleep(600)


def test_interrupted_writes_are_cleaned_up_and_nothing_of_the_users(tmp_path):
    run = run_dir.RunDir(tmp_path)
    for folder in (run.checkpoint_dir, os.path.join(run.path, "corpus"), run.fold(0).best_dir):
        os.makedirs(folder)
    leftovers = [os.path.join(run.path, "config.json.graphlstm-0123abcd.tmp"),
                 os.path.join(run.path, "corpus", "train.txt.graphlstm-89abcdef.tmp"),
                 os.path.join(run.fold(0).best_dir, "best.json.graphlstm-00000000.tmp"),
                 os.path.join(run.checkpoint_dir, "model.ckpt-7.data-00000-of-00001.tempstate123"),
                 os.path.join(run.checkpoint_dir, "model.ckpt-7.index.tempstate18446744073709551615"),
                 os.path.join(run.checkpoint_dir, "checkpoint.tmp" + "4f2a" * 8),
                 os.path.join(run.checkpoint_dir, "model.ckpt-7.meta.tmp" + "0" * 32)]
    kept = [os.path.join(run.checkpoint_dir, name) for name in ("checkpoint", "model.ckpt-7.index",
                                                                 "model.ckpt-7.data-00000-of-00001")]
    users = [os.path.join(run.path, name) for name in ("notes.tmp", "x.graphlstm-0123abcd.tmp.txt", "a_temp",
                                                        os.path.join("corpus", "draft.tmp"),
                                                        os.path.join("checkpoints", "mine.tmp"),
                                                        os.path.join("checkpoints", "model.tempstate1"),
                                                        os.path.join("checkpoints", "checkpoint.tmp4f2a"))]
    for path in leftovers + kept + users:
        open(path, "w").close()
    os.makedirs(os.path.join(run.checkpoint_dir, "model.ckpt-9_temp"))
    assert sorted(run.remove_interrupted_writes()) == sorted(leftovers + [os.path.join(run.checkpoint_dir,
                                                                                       "model.ckpt-9_temp")])
    assert all(os.path.exists(path) for path in kept + users)
    assert not any(os.path.exists(path) for path in leftovers)
