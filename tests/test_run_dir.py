"""run_dir: the layout, atomic JSON files, config/vocab/labels round trips, choosing and restoring checkpoints."""
import json
import os

import pytest

import config
import data_handler
import run_dir
from config import UserError


def test_config_vocab_and_labels_round_trip(tmp_path):
    run = run_dir.RunDir(tmp_path / "run")
    cfg = config.apply_overrides(config.named_config("char"), {"hidden_size": "64"})
    vocab = data_handler.Vocab(["<unk>", "a", "é", "\n"])
    run.prepare(cfg, vocab, ["neg", "pos"])
    assert run.load_config() == cfg and run.load_vocab() == vocab and run.load_labels() == ["neg", "pos"]
    assert json.loads(open(run.config_path).read())["hidden_size"] == 64
    assert sorted(os.listdir(run.path)) == ["config.json", "labels.json", "vocab.json"]  # no temporary files left
    # A resumed run must find the vocabulary it was trained with.
    run.prepare(cfg, vocab, ["neg", "pos"], resuming=True)
    with pytest.raises(UserError, match="vocab.json: the vocabulary built from the data differs"):
        run.prepare(cfg, data_handler.Vocab(["<unk>", "b"]), None, resuming=True)


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
    with pytest.raises(UserError, match="nope: no such run directory"):
        run_dir.RunDir(tmp_path / "nope").load_config()
    with pytest.raises(UserError, match="labels.json: no such file"):
        run_dir.RunDir(tmp_path).load_labels()
    with pytest.raises(UserError, match="no run found under"):
        run_dir.newest(str(tmp_path))


def test_default_path_and_newest(tmp_path):
    assert run_dir.default_path("small", "") == os.path.join("runs", "small")
    assert run_dir.default_path("my.json", "data/mr/") == os.path.join("runs", "my-mr")
    for name in ("a", "b"):
        run_dir.RunDir(tmp_path / name).save_config(config.Config())
    os.utime(tmp_path / "a", (1, 1))
    assert run_dir.newest(str(tmp_path)).path == str(tmp_path / "b")


def test_checkpoints_are_chosen_explicit_then_best_then_latest_and_restored(tmp_path):
    import rnn_model as rm
    tf = rm.tf
    run = run_dir.RunDir(tmp_path)
    with tf.Graph().as_default():
        value = tf.get_variable("value", [], initializer=tf.zeros_initializer())
        assign = tf.assign(value, tf.placeholder_with_default(0.0, []))
        saver = tf.train.Saver()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            with pytest.raises(UserError, match="no checkpoint found"):
                run.choose_checkpoint()
            sess.run(assign, {assign.op.inputs[1]: 1.0})
            latest = saver.save(sess, os.path.join(run.checkpoint_dir, "model.ckpt"), global_step=1)
            assert run.choose_checkpoint() == latest == run.latest_checkpoint()
            sess.run(assign, {assign.op.inputs[1]: 2.0})
            best = saver.save(sess, os.path.join(run.best_dir, "model.ckpt"), global_step=2)
            assert run.choose_checkpoint() == best  # best before latest
            assert run.choose_checkpoint(latest) == latest  # an explicit one before both
            with pytest.raises(UserError, match="nope.ckpt: no such checkpoint"):
                run.choose_checkpoint(str(tmp_path / "nope.ckpt"))
            run.restore(sess, saver, latest)
            assert sess.run(value) == 1.0
    with tf.Graph().as_default():
        tf.get_variable("value", [2])  # another shape than the checkpoint's
        with tf.Session() as sess:
            with pytest.raises(UserError, match="the checkpoint does not match this model"):
                run.restore(sess, tf.train.Saver(), latest)
