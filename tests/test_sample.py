"""sample.py: generation from a language-model checkpoint (in-graph loop and one run per token) and its options."""
import io

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


def test_in_graph_loop_with_and_without_xla_equals_one_run_per_token(trained_lm):
    """The fast path generates exactly what the classic one-Session.run-per-token path does, greedy and sampled
    (both draw with the stateless seed (seed, t)), with a prime that is longer than one token."""
    for args in (["--argmax"], ["--seed", "3"], ["--seed", "4", "--top_k", "20", "--temperature", "1.5"]):
        args = [*args, "--length", "30", "--prime", "the value of"]
        stepwise = sample(trained_lm, *args, "--stepwise")
        assert sample(trained_lm, *args) == stepwise, args
        assert sample(trained_lm, *args, "--no_jit") == stepwise, args


def test_top_k_only_draws_among_the_k_most_likely_tokens():
    import config
    import rnn_model as rm
    tf = rm.tf
    cfg = config.apply_overrides(config.named_config("test"), {"hidden_size": "8", "num_layers": "2"})
    graph, model, _, initializer = sample_script.generation_graph(cfg, 50)
    with tf.Session(graph=graph) as sess:
        sess.run(initializer)
        feed = {model.prime: [3], model.length: 1, model.temperature: 3.0}
        first = {int(sess.run(model.tokens, {**feed, model.seed: s})[0]) for s in range(300)}
        first_top3 = {int(sess.run(model.tokens, {**feed, model.top_k: 3, model.seed: s})[0]) for s in range(300)}
        greedy = int(sess.run(model.tokens, {**feed, model.argmax: True})[0])
    assert len(first) > 10  # hot sampling spreads over the vocabulary...
    assert len(first_top3) == 3 and greedy in first_top3  # ...top-k keeps k tokens, the most likely among them


def test_sample_reports_bad_arguments_in_one_line(trained_lm):
    assert "--temperature: must be positive" in one_line_error(
        run_cli("sample.py", "--run_dir", str(trained_lm), "--temperature", "0"))
    assert "--top_k: must not be negative" in one_line_error(
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
