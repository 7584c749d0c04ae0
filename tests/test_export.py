"""export.py: SavedModels of each task, used as a stranger would use them (a fresh process that imports nothing of
this repository, TF2's tf.saved_model.load, and saved_model_cli), agree with sample.py."""
import json
import subprocess
import sys

import numpy as np
import pytest

import export
import run_dir
import sample
import train
from conftest import one_line_error, run_cli, tiny_lm_args
from test_classify import classify_args, write_labelled

# Sentences a tokenizer can get wrong: case, clitics, punctuation runs, digits, non-ASCII text, HTML breaks, a
# sentence longer than num_steps (cut, as in training), unknown words.
TRICKY = ["The BALL, the goal!!! And the team's coach didn't score.", "code&chip -- laptop's server (cloud)...",
          "soup ñandú Café naïve résumé 日本語 😀 sugar", "3.14 1,000 2nd $5 under_score tomato<br />dinner",
          "   kernel\tnetwork\u00a0data\u3000robot   ", "zzqx unheardof blorp", "'tis n't won't ''quoted'' rock'n'roll",
          " ".join(["match"] * 10 + ["bread"] * 30)]
GENERATE_DEFAULTS = dict(temperature=1.0, top_k=0, top_p=1.0, greedy=False, beam_width=0, length_penalty=0.0,
                         stop=[], allow_unk=False)
CLIENT = r"""
import importlib.util, json, sys
import tensorflow as tf
assert importlib.util.find_spec("rnn_model") is None and importlib.util.find_spec("graph_text") is None
answers = []
for folder, signature, inputs in json.load(open(sys.argv[1])):
    outputs = tf.saved_model.load(folder).signatures[signature](
        **{k: tf.constant(v, tf.string if k == "stop" else None) for k, v in inputs.items()})
    answers.append({k: [x.decode() if isinstance(x, bytes) else x for x in v.numpy().tolist()]
                    if v.shape.rank else v.numpy().item() for k, v in outputs.items()})
json.dump(answers, sys.stdout)
"""


@pytest.fixture(scope="module")
def runs(trained_lm, tmp_path_factory):
    """A word LM, a character LM and a bidirectional classifier, each exported."""
    folder = tmp_path_factory.mktemp("export")
    char_run, classifier_run = folder / "char", folder / "classify"
    assert train.main(tiny_lm_args(char_run, "--level", "char", "--max_steps", "40")) == 0
    write_labelled(folder / "train.txt", 200, seed=0)
    assert train.main(classify_args(classifier_run, "--data", str(folder / "train.txt"), "--bidirectional", "true",
                                    "--max_max_epoch", "2")) == 0
    exported = {}
    for name, run in (("word", trained_lm), ("char", char_run), ("classify", classifier_run)):
        exported[name] = (run, folder / f"{name}-model")
        assert export.main(["--run_dir", str(run), "--out", str(exported[name][1])]) == 0
    return exported


def ask_fresh_process(tmp_path, requests):
    """Each (model folder, signature, inputs) answered by a new Python process outside the repository."""
    (tmp_path / "requests.json").write_text(json.dumps([[str(f), s, i] for f, s, i in requests]))
    (tmp_path / "client.py").write_text(CLIENT)
    done = subprocess.run([sys.executable, "client.py", "requests.json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                                                       "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def sampled(run, *args):
    out = __import__("io").StringIO()
    assert sample.main(["--run_dir", str(run), "--generator", "plain", *args], out=out) == 0
    return out.getvalue()


def test_exported_models_answer_as_sample_py_in_a_fresh_process(runs, tmp_path):
    word_run, word_model = runs["word"]
    char_run, char_model = runs["char"]
    classifier_run, classifier_model = runs["classify"]
    texts = ["the value of the", "a new line\nand <unk> zzqx words\n\n here", "ROMEO: what light, ñ?",
             "\ufeffWindows\r\nline ends\rhere"]
    generate = [(word_model, dict(prime="the value of", length=30, seed=[3, 4])),
                (word_model, dict(prime="zzqx  the\nvalue", length=12, temperature=1.5, top_k=20, seed=[7])),
                (word_model, dict(prime="", length=12, seed=[1], top_p=0.7)),
                (word_model, dict(prime="the", length=12, seed=[0, 1], beam_width=3, length_penalty=0.6)),
                (word_model, dict(prime="the", length=40, seed=[2], stop=["the", "of a"], greedy=True)),
                (char_model, dict(prime="Thé vaλue", length=50, temperature=0.8, top_k=5, top_p=0.9, seed=[0, 11])),
                (char_model, dict(prime="T", length=30, seed=[0], stop=["e "], allow_unk=True))]
    generate = [(folder, dict(GENERATE_DEFAULTS, **inputs)) for folder, inputs in generate]
    requests = [(folder, "generate", inputs) for folder, inputs in generate]
    requests += [(word_model, "score", {"text": texts}), (char_model, "serving_default", {"text": texts}),
                 (classifier_model, "serving_default", {"sentences": TRICKY})]
    answers = ask_fresh_process(tmp_path, requests)

    for (folder, inputs), answer in zip(generate, answers):
        run = word_run if folder == word_model else char_run
        flags = ["--prime", inputs["prime"], "--length", str(inputs["length"])] + [
            flag for key in ("temperature", "top_k", "top_p", "length_penalty") if inputs[key] != GENERATE_DEFAULTS[key]
            for flag in (f"--{key}", str(inputs[key]))] + ["--argmax"] * inputs["greedy"] + \
            ["--allow_unk"] * inputs["allow_unk"] + [flag for stop in inputs["stop"] for flag in ("--stop", stop)]
        if inputs["beam_width"]:
            expected = sampled(run, *flags, "--beam_width", str(inputs["beam_width"]), "--num_samples",
                               str(len(inputs["seed"])))
            shown = [f"--- beam {i + 1} of {len(inputs['seed'])} (log-probability {log_p:.4f}) ---\n{text}\n"
                     for i, (text, log_p) in enumerate(zip(answer["text"], answer["log_probability"]))]
            assert "".join(shown) == expected, inputs
            continue
        for seed, text in zip(inputs["seed"], answer["text"]):
            assert text + "\n" == sampled(run, *flags, "--seed", str(seed)), (inputs, seed)

    for run, answer in ((word_run, answers[len(generate)]), (char_run, answers[len(generate) + 1])):
        r = run_dir.RunDir(run)
        cfg, vocab = r.load_config(), r.load_vocab()
        for i, text in enumerate(texts):
            text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")  # as sample.py reads a file
            log_likelihood, tokens, unknown = sample.text_log_likelihood(cfg, vocab, r, None, text)
            assert (answer["tokens"][i], answer["unknown_tokens"][i]) == (tokens, unknown), text
            np.testing.assert_allclose(answer["log_likelihood"][i], log_likelihood, rtol=1e-5, atol=1e-4)
            if tokens:
                np.testing.assert_allclose(answer["perplexity"][i], np.exp(-log_likelihood / tokens), rtol=1e-5)
                np.testing.assert_allclose(answer["bits_per_character"][i],
                                           -log_likelihood / np.log(2) / len(text), rtol=1e-5)
        assert sum(answer["unknown_tokens"]) > 0

    r = run_dir.RunDir(classifier_run)
    label_names = r.load_labels()
    probabilities = sample.sentence_probabilities(r.load_config(), r.load_vocab(), label_names, r, None,
                                                  TRICKY)
    answer = answers[len(generate) + 2]
    assert answer["class_names"] == label_names
    np.testing.assert_allclose(answer["probabilities"], probabilities, atol=1e-5)
    assert answer["label"] == [label_names[i] for i in probabilities.argmax(1)]


def test_saved_model_cli_runs_the_signatures_and_assets_travel(runs):
    classifier_run, classifier_model = runs["classify"]
    word_run, word_model = runs["word"]
    for name in ("config.json", "vocab.json", "labels.json"):
        assert (classifier_model / "assets" / name).read_text() == (classifier_run / name).read_text()
    assert not (word_model / "assets" / "labels.json").exists()
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    shown = subprocess.run(cli + ["show", "--dir", str(word_model), "--all"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for signature in ("generate", "score", "serving_default"):
        assert f"signature_def['{signature}']" in shown.stdout
    ran = subprocess.run(cli + ["run", "--dir", str(classifier_model), "--tag_set", "serve", "--signature_def",
                                "serving_default", "--input_exprs", 'sentences=["ball goal team", "soup oven"]'],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    r = run_dir.RunDir(classifier_run)
    probabilities = sample.sentence_probabilities(r.load_config(), r.load_vocab(), r.load_labels(), r, None,
                                                  ["ball goal team", "soup oven"])
    labels = [r.load_labels()[i] for i in probabilities.argmax(1)]
    assert f"[b'{labels[0]}' b'{labels[1]}']" in ran.stdout, ran.stdout
    ran = subprocess.run(cli + ["run", "--dir", str(word_model), "--tag_set", "serve", "--signature_def", "score",
                                "--input_exprs", 'text=["the value of the"]'], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-2000:]
    r = run_dir.RunDir(word_run)
    log_likelihood, tokens, _ = sample.text_log_likelihood(r.load_config(), r.load_vocab(), r, None,
                                                           "the value of the")
    printed = ran.stdout.split("log_likelihood")[1]
    assert float(printed.split("[")[1].split("]")[0]) == pytest.approx(log_likelihood, rel=1e-4), ran.stdout
    assert f"[{tokens}]" in ran.stdout.split("Result for output key tokens:")[1], ran.stdout


def test_generate_refuses_requests_out_of_range(runs):
    """A bad request fails with a message naming the input (TF Serving's INVALID_ARGUMENT), not garbage."""
    from tf1 import tf
    _, word_model = runs["word"]
    good = dict(GENERATE_DEFAULTS, prime="the", length=5, seed=[1])
    with tf.Graph().as_default(), tf.Session() as sess:
        meta = tf.saved_model.loader.load(sess, [tf.saved_model.SERVING], str(word_model))
        signature = meta.signature_def["generate"]

        def run(**changes):
            inputs = dict(good, **changes)
            return sess.run(signature.outputs["text"].name,
                            {signature.inputs[k].name: v for k, v in inputs.items()})
        assert len(run()) == 1 and len(run(seed=[1, 2, 3])) == 3
        for changes, message in ((dict(length=-1), "length: must not be negative"),
                                 (dict(temperature=0.0), "temperature: must be positive"),
                                 (dict(top_k=-2), "top_k: must not be negative"),
                                 (dict(top_p=1.5), "top_p: must be in \\(0, 1\\]"),
                                 (dict(beam_width=2, seed=[1, 2, 3]), "seed: at most beam_width results"),
                                 (dict(stop=["the", ""]), "stop: must not be empty"),
                                 (dict(stop=["zzqx"]), "stop: a stop text holds a character or word not in"),
                                 (dict(seed=[-1]), "seed: must not be negative")):
            with pytest.raises(tf.errors.InvalidArgumentError, match=message):
                run(**changes)
        score = meta.signature_def["score"]
        outputs = [score.outputs[k].name for k in ("perplexity", "bits_per_character", "log_likelihood")]
        assert np.all(np.isfinite(sess.run(outputs, {score.inputs["text"].name: ["the value"]})))
        for texts in ([""], ["the value", " \n "]):  # a text of no tokens has no perplexity: refused, not NaN
            with pytest.raises(tf.errors.InvalidArgumentError, match="text: a text has no tokens to score"):
                sess.run(outputs, {score.inputs["text"].name: texts})


def test_export_refuses_bad_input_in_one_line(runs, tmp_path):
    word_run, word_model = runs["word"]
    assert "exists and is not an empty folder" in one_line_error(
        run_cli("export.py", "--run_dir", str(word_run), "--out", str(word_model)))
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    for name in ("config.json", "vocab.json"):
        (untrained / name).write_text((word_run / name).read_text())
    assert "no checkpoint found" in one_line_error(
        run_cli("export.py", "--run_dir", str(untrained), "--out", str(tmp_path / "model")))
    assert not (tmp_path / "model").exists()
    assert "nothing: no such run (" in one_line_error(
        run_cli("export.py", "--run_dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "model")))
    (tmp_path / "a_file").write_text("")
    assert "a_file" in one_line_error(
        run_cli("export.py", "--run_dir", str(word_run), "--out", str(tmp_path / "a_file" / "model")))
