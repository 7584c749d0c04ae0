"""sample.py: generation from a language-model checkpoint (in-graph loop and one run per token) and its options."""
import io
import json

import numpy as np

import checkpoints
import config
import sample as sample_script
from conftest import one_line_error, run_cli


def sample(run_dir, *args):
    out = io.StringIO()
    assert sample_script.main(["--run_dir", str(run_dir), *args], out=out) == 0
    return out.getvalue()


def test_sample_is_deterministic_and_honours_its_options(trained_lm):
    a, b = sample(trained_lm, "--seed", "1", "--length", "40"), sample(trained_lm, "--seed", "1", "--length", "40")
    c = sample(trained_lm, "--seed", "2", "--length", "40")
    assert a == b and a != c
    assert len(a.split()) >= 30
    greedy = sample(trained_lm, "--argmax", "--length", "20", "--prime", "the")
    assert greedy == sample(trained_lm, "--argmax", "--length", "20", "--prime", "the", "--seed", "9")
    assert greedy == sample(trained_lm, "--top_k", "1", "--length", "20", "--prime", "the", "--seed", "5")
    assert greedy == sample(trained_lm, "--temperature", "0.001", "--length", "20", "--prime", "the")
    hot = [sample(trained_lm, "--temperature", "5", "--length", "20", "--seed", str(s)) for s in range(3)]
    assert len(set(hot)) == 3


def test_sample_survives_an_out_of_vocabulary_prime(trained_lm):
    text = sample(trained_lm, "--prime", "zzqx unheardofword the", "--length", "10")
    assert text.startswith("<unk> <unk> the")


def test_the_loop_with_and_without_xla_writes_the_same_text(trained_lm):
    """Greedy, sampled (both draw with the stateless seed (seed, t)), top-k, top-p and beams, with a prime longer
    than one token: XLA and the plain loop give the same text."""
    for args in (["--argmax"], ["--seed", "3"], ["--seed", "4", "--top_k", "20", "--temperature", "1.5"],
                 ["--top_p", "0.8", "--seed", "2"], ["--beam_width", "3", "--num_samples", "2"]):
        args = [*args, "--length", "30", "--prime", "the value of"]
        assert sample(trained_lm, *args, "--generator", "xla") == sample(trained_lm, *args, "--generator", "plain")


def test_top_k_only_draws_among_the_k_most_likely_tokens(trained_lm):
    """300 samples (one run, a row each) of one token at temperature 3: spread over the vocabulary, but over exactly
    3 tokens with --top_k 3, the greedy one among them."""
    first = {text.split()[-1] for text in decoded(trained_lm, 300, temperature=3.0)}
    first_top3 = {text.split()[-1] for text in decoded(trained_lm, 300, temperature=3.0, top_k=3)}
    greedy = decoded(trained_lm, 1, greedy=True)[0].split()[-1]
    assert len(first) > 10 and len(first_top3) == 3 and greedy in first_top3


def decoded(run_path, rows, length=1, **settings):
    """The texts of `rows` samples (seeds 0, 1, ...) after the prime "the", through sample.decode."""
    import run_dir
    from tf1 import tf
    run = run_dir.RunDir(run_path)
    cfg, vocab = run.load_config(), run.load_vocab()
    graph, decoders, saver, tables, _ = sample_script.generation_graph(cfg, vocab)
    model = decoders["plain"]
    with tf.Session(graph=graph) as sess:
        sess.run(tables)
        checkpoints.RunCheckpoints(run).restore_for_use(sess, saver)
        feed = {model.settings.prime: "the", model.settings.seeds: np.arange(rows)}
        feed.update({getattr(model.settings, name): value for name, value in settings.items()})
        return sample_script.decode(sess, model, feed, length)[0]


def test_sample_reports_bad_arguments_in_one_line(trained_lm):
    assert "--temperature: must be a positive number" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--temperature", "0"))
    assert "--top_k: must be in [0, 2147483647]" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--top_k", "-2"))
    assert "nope.ckpt: no such checkpoint" in one_line_error(run_cli("sample.py", "--run_dir", str(trained_lm),
                                                     "--checkpoint", str(trained_lm / "nope.ckpt")))


def test_blank_and_unknown_primes(trained_lm, tmp_path):
    assert sample(trained_lm, "--prime", "   ", "--length", "5", "--argmax") == \
        sample(trained_lm, "--length", "5", "--argmax")  # a blank word prime starts at <eos>, as no prime
    import json
    char_run = tmp_path / "char"
    char_run.mkdir()
    for name in ("config.json", "vocab.json"):
        (char_run / name).write_text((trained_lm / name).read_text())
    cfg = json.loads((char_run / "config.json").read_text())
    cfg["level"] = "char"
    (char_run / "config.json").write_text(json.dumps(cfg))
    (char_run / "vocab.json").write_text(json.dumps({"tokens": ["<unk>", "a", "b"]}))
    line = one_line_error(run_cli("sample.py", "--run_dir", str(char_run), "--prime", "xyz"))
    assert "--prime: none of its characters is in the model's vocabulary" in line


def test_batched_samples_equal_each_seed_alone(trained_lm):
    """--num_samples 4 --seed 3 draws the samples of seeds 3, 4, 5, 6 in one run; each equals its seed alone, on
    every generation path."""
    args = ["--length", "25", "--prime", "the value of", "--temperature", "1.3"]
    alone = [sample(trained_lm, *args, "--seed", str(seed), "--generator", "plain") for seed in range(3, 7)]
    assert len(set(alone)) == 4
    for generator in ("plain", "xla"):
        batched = sample(trained_lm, *args, "--seed", "3", "--num_samples", "4", "--generator", generator)
        headers = [line for line in batched.splitlines() if line.startswith("--- sample")]
        assert headers == [f"--- sample {i + 1} of 4 (--seed {3 + i}) ---" for i in range(4)]
        texts = [part.split("---\n", 1)[1] for part in batched.split("--- sample")[1:]]
        assert texts == alone, generator


def test_length_zero_prints_the_prime_on_every_path(trained_lm):
    for generator in ("plain", "xla"):
        assert sample(trained_lm, "--prime", "the value\nof", "--length", "0", "--generator", generator,
                      "--num_samples", "2") == "--- sample 1 of 2 (--seed 0) ---\nthe value\nof\n" \
                                               "--- sample 2 of 2 (--seed 1) ---\nthe value\nof\n"


def test_auto_takes_the_path_predicted_fastest_from_timings_made_once(trained_lm, tmp_path):
    """Without timings for this machine, auto answers with the plain loop and then times both loops into
    generation_speed.json; with them it picks by start-up + steps x step time."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(trained_lm, run)
    first = sample(run, "--length", "30", "--seed", "2")
    assert first == sample(trained_lm, "--length", "30", "--seed", "2", "--generator", "plain")
    speed = json.loads((run / "generation_speed.json").read_text())
    assert speed["machine"].startswith(config.cpu_description())
    for path in ("plain", "xla"):
        assert sorted(speed[path]) == ["start_s", "step_s"] and speed[path]["step_s"] < 0.1  # seconds, not ms
    written = (run / "generation_speed.json").stat().st_mtime_ns
    assert sample(run, "--length", "30", "--seed", "2") == first  # the same text whichever path it took
    assert (run / "generation_speed.json").stat().st_mtime_ns == written  # timed once

    choose = sample_script.choose_generator
    timings = {"machine": "m", "plain": {"start_s": 0.0, "step_s": 2e-4}, "xla": {"start_s": 1.0, "step_s": 1e-4}}
    assert choose("auto", timings, "m", 500) == ("plain", timings)  # 0.1 s against 1.05 s
    assert choose("auto", timings, "m", 50_000) == ("xla", timings)  # 10 s against 6 s
    assert choose("auto", timings, "another machine", 500) == ("plain", None)  # timed again
    assert choose("auto", {"machine": "m", "plain": {}}, "m", 500) == ("plain", None)  # a damaged cache too
    assert choose("xla", {}, "m", 500) == ("xla", {})


def test_score_is_the_evaluation_perplexity(trained_lm, tmp_path):
    """build_scorer computes what the language model's evaluation computes: on token ids whose length fills whole
    num_steps pieces at eval_batch_size 1 they agree to float32 rounding; `sample.py --score` on the test split's
    text agrees with train.py's evaluation of that split, the one extra first token aside."""
    import dataclasses
    import data_handler
    import rnn_model as rm
    import run_dir
    import tasks
    import text_io
    from tf1 import tf
    run = run_dir.RunDir(trained_lm)
    cfg = dataclasses.replace(run.load_config(), eval_batch_size=1)
    test_ids = data_handler.language_model_data(cfg).splits["test"].astype(np.int32)
    aligned = test_ids[:(len(test_ids) - 1) // cfg.num_steps * cfg.num_steps + 1]
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        lm = tasks.LanguageModel(cfg, data_handler.TaskData(run.load_vocab(), None,
                                                            {"whole": test_ids, "aligned": aligned}, {}), controls)
        scorer = rm.build_scorer(cfg, lm.weights, tf.placeholder(tf.int32, [None, None]),
                                 tf.placeholder(tf.int32, [None]))
        saver, local_init = tf.train.Saver(), tf.local_variables_initializer()
    with tf.Session(graph=graph) as sess:
        saver.restore(sess, checkpoints.RunCheckpoints(run).use_candidates()[0])
        sess.run(local_init)
        evaluation = lm.evaluate(sess, "aligned")["loss"]
        whole = lm.evaluate(sess, "whole")["loss"]
        # Two rows of other lengths at once: the padding of the shorter one counts for nothing.
        short = aligned[:len(aligned) // 3]
        padded = np.zeros((2, len(aligned)), np.int32)
        padded[0], padded[1, :len(short)] = aligned, short
        log_likelihood, tokens = sess.run([scorer.log_likelihood, scorer.tokens],
                                          {scorer.ids: padded, scorer.lengths: [len(aligned), len(short)]})
        short_alone = sess.run(scorer.log_likelihood, {scorer.ids: [short], scorer.lengths: [len(short)]})[0]
    assert tokens.tolist() == [len(aligned) - 1, len(short) - 1]
    np.testing.assert_allclose(-log_likelihood[0] / tokens[0], evaluation, rtol=1e-5)
    np.testing.assert_allclose(log_likelihood[1], short_alone, rtol=1e-5)

    text = data_handler.split_by_fraction(data_handler.embedded_text(), cfg.valid_fraction, cfg.test_fraction)[2]
    (tmp_path / "test.txt").write_text(text, encoding="utf-8")
    out = sample(trained_lm, "--score", str(tmp_path / "test.txt"))
    assert sample(trained_lm, "--eval", str(tmp_path / "test.txt")) == out  # --eval on a language model is --score
    fields = {line.split()[0]: line.split()[1].replace(",", "") for line in out.splitlines()}
    assert int(fields["tokens"]) == len(test_ids)
    assert int(fields["unknown"]) == int(np.sum(test_ids == run.load_vocab().id("<unk>"))) - sum(
        w == "<unk>" for w in text_io.lm_words(text))
    assert abs(float(fields["nats/token"]) - whole) < 0.01 * whole
    assert abs(float(fields["perplexity"]) - np.exp(float(fields["nats/token"]))) < 1e-3 * float(fields["perplexity"])


def test_score_and_num_samples_refuse_bad_input_in_one_line(trained_lm, tmp_path):
    (tmp_path / "empty.txt").write_text(" \n\n")
    assert "empty.txt: no text to score" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--score", str(tmp_path / "empty.txt")))
    assert "--num_samples: must be in [1, 10,000], got 0" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--num_samples", "0"))
    assert "--seed: with --num_samples 2 it must be in [0, 2147483646], got 2147483647" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--seed", "2147483647", "--num_samples", "2"))
    assert "--top_k: is for generation, not for --score" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--score", "-", "--top_k", "3"))
    for args, message in [(["--eval", "-", "--top_k", "3"], "--top_k: is for generation, not for --eval"),
                          (["--eval", "-", "--score", "-"], "--eval: on a language model is --score: give one of them"),
                          (["--eval", "-", "--predictions", "p.csv"], "--predictions: is for a classifier")]:
        assert message in one_line_error(run_cli("sample.py", "--run_dir", str(trained_lm), *args))


def test_pieces_of_any_size_join_to_the_same_text(trained_lm, monkeypatch):
    """Generation runs a piece of tokens per Session.run, carrying each row's last token, the state and the step:
    the same seeds give the same text whatever the piece size, for samples, a stop text and beams; and one sample
    streamed piece by piece writes what it gives whole."""
    for settings in ({"temperature": 1.2, "top_k": 20}, {"stop": ["the"]}, {"beam_width": 3}):
        rows = 3 if "beam_width" not in settings else 2
        texts = set()
        for piece in (1, 7, 50):
            monkeypatch.setattr(sample_script, "GENERATION_CHUNK", piece)
            texts.add(tuple(decoded(trained_lm, rows, 50, **settings)))
        assert len(texts) == 1, (settings, texts)
    streamed = sample(trained_lm, "--length", "50", "--seed", "3")  # in pieces of 50, the last size above
    monkeypatch.setattr(sample_script, "GENERATION_CHUNK", 7)
    assert sample(trained_lm, "--length", "50", "--seed", "3") == streamed
    whole = sample(trained_lm, "--length", "50", "--seed", "3", "--num_samples", "2")  # not streamed
    assert whole.split("---\n")[1] == streamed + "--- sample 2 of 2 (--seed 4) "


def test_a_text_scored_in_parts_scores_as_a_whole(trained_lm, tmp_path, monkeypatch):
    """--score carries the state from part to part, so the part size changes nothing but the rounding."""
    import run_dir
    run = run_dir.RunDir(trained_lm)
    cfg, vocab = run.load_config(), run.load_vocab()
    text = " ".join(["the value of the object is returned"] * 300)
    whole = sample_script.text_log_likelihood(cfg, vocab, run, None, text)
    monkeypatch.setattr(sample_script, "SCORING_CHUNK", 3 * cfg.num_steps + 1)  # rounded up to 4 pieces
    parts = sample_script.text_log_likelihood(cfg, vocab, run, None, text)
    assert whole[1:] == parts[1:] and whole[1] > 8 * 4 * cfg.num_steps
    np.testing.assert_allclose(parts[0], whole[0], rtol=1e-5)


def test_scoring_the_saved_test_split_gives_the_recorded_test_perplexity(trained_lm):
    """RUN_DIR/data/test.txt is the test split train.py evaluated, token for token; --score on it gives results.json's
    test loss, but for the first token (scored after a start token) and the rows' restarts of the evaluation."""
    import data_handler
    import run_dir
    cfg = run_dir.RunDir(trained_lm).load_config()
    assert sorted(p.name for p in (trained_lm / "data").iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    out = sample(trained_lm, "--score", str(trained_lm / "data" / "test.txt"))
    fields = {line.split()[0]: line.split()[1].replace(",", "") for line in out.splitlines()}
    assert int(fields["tokens"]) == data_handler.language_model_data(cfg).splits["test"].size
    recorded = json.loads((trained_lm / "results.json").read_text())["test"]["loss"]
    assert abs(float(fields["nats/token"]) - recorded) < 0.01 * recorded
