"""Use a trained checkpoint: generate text from a language model, or label sentences with a classifier.

    python sample.py [--run_dir DIR] [--checkpoint PATH] [--prime TEXT] [--length N] [--temperature T]
                     [--top_k K] [--argmax] [--seed S] [--stepwise] [--no_jit]
    python sample.py --run_dir DIR --text "a sentence" [--text ...] [--file PATH] [--all_probs]

The task is read from the run's config.json. Generation is one Session.run of an in-graph loop (rnn_model's
build_generator) that feeds the prime through the cell once and then each sampled token, carrying the LSTM state
inside the graph (the prefix is never re-run); --stepwise does the same with one Session.run per token.
Classification reads --text, --file or standard input, one sentence per line.
"""
import argparse
import os
import sys

import numpy as np

import config
import data_handler
from config import ConfigError
from data_handler import DataError


class SampleError(Exception):
    """A problem with the run directory, checkpoint or arguments; one line for the user."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise SampleError(message)


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--run_dir", help="the training run to use (default: the newest run under runs/)")
    parser.add_argument("--checkpoint", help="a checkpoint prefix (default: the run's best, else its latest)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    lm = parser.add_argument_group("language model")
    lm.add_argument("--prime", default=None, help="text to start from (default: a line break, <eos> for words)")
    lm.add_argument("--length", type=int, default=500, help="tokens to generate")
    lm.add_argument("--temperature", type=float, default=1.0, help="below 1 is more conservative, above 1 wilder")
    lm.add_argument("--top_k", type=int, default=0, help="sample only among the k most likely tokens; 0 = all")
    lm.add_argument("--argmax", action="store_true", help="always take the most likely token (greedy)")
    lm.add_argument("--stepwise", action="store_true",
                    help="one Session.run per token instead of the in-graph loop (slower; for comparison)")
    lm.add_argument("--no_jit", action="store_true", help="run the in-graph loop without XLA compilation")
    classify = parser.add_argument_group("classifier")
    classify.add_argument("--text", action="append", default=[], help="a sentence to classify (repeatable)")
    classify.add_argument("--file", help="a file of sentences, one per line")
    classify.add_argument("--all_probs", action="store_true", help="print the probability of every label")
    args = parser.parse_args(argv)
    if args.length < 0:
        raise SampleError(f"--length: must not be negative, got {args.length}")
    if not args.temperature > 0:
        raise SampleError(f"--temperature: must be positive, got {args.temperature}")
    if args.top_k < 0:
        raise SampleError(f"--top_k: must not be negative, got {args.top_k}")
    if not 0 <= args.seed < 2 ** 31:
        raise SampleError(f"--seed: must be in [0, 2**31), got {args.seed}")
    return args


def newest_run(root="runs"):
    runs = [os.path.join(root, name) for name in os.listdir(root)] if os.path.isdir(root) else []
    runs = [run for run in runs if os.path.exists(os.path.join(run, "config.json"))]
    if not runs:
        raise SampleError("no --run_dir given and no run found under runs/ (train one with train.py first)")
    return max(runs, key=os.path.getmtime)


def find_checkpoint(tf, run_dir, checkpoint):
    if checkpoint:
        if not tf.train.checkpoint_exists(checkpoint):
            raise SampleError(f"{checkpoint}: no such checkpoint")
        return checkpoint
    for folder in ("best", "checkpoints"):
        path = tf.train.latest_checkpoint(os.path.join(run_dir, folder))
        if path:
            return path
    raise SampleError(f"{run_dir}: no checkpoint found (has training saved one yet?)")


def load_run(run_dir):
    if not os.path.isdir(run_dir):
        raise SampleError(f"{run_dir}: no such run directory")
    cfg = config.load(os.path.join(run_dir, "config.json"))
    vocab = data_handler.Vocab.load(os.path.join(run_dir, "vocab.json"))
    return cfg, vocab


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        run_dir = args.run_dir or newest_run()
        cfg, vocab = load_run(run_dir)
        config.tensorflow_environment(cfg, args.verbose)
        if cfg.task == "classify":
            return classify(args, cfg, vocab, run_dir, out)
        return generate(args, cfg, vocab, run_dir, out)
    except (SampleError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def restore(tf, sess, saver, run_dir, checkpoint):
    path = find_checkpoint(tf, run_dir, checkpoint)
    try:
        saver.restore(sess, path)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise SampleError(f"{path}: the checkpoint does not match the run's config ({first_line[:200]})") from None
    return path


# --------------------------------------------------------------------------------------------------- generation

def prime_tokens(prime, cfg, vocab):
    """The prime as tokens in the vocabulary: unknown words become <unk>; unknown characters are dropped, said once.
    No prime starts at a line break (<eos> for words)."""
    if cfg.level == "char":
        if prime is None:  # a line break, or the first real character of a vocabulary without one
            return ["\n"] if "\n" in vocab else [vocab.tokens[1 if len(vocab) > 1 else 0]]
        tokens = [t for t in prime if t in vocab]
        if not tokens:
            raise SampleError("--prime: none of its characters is in the model's vocabulary")
        unknown = sorted(set(prime) - set(tokens))
        if unknown:
            print(f"note: prime characters not in the vocabulary were dropped: {''.join(unknown)!r}",
                  file=sys.stderr)
        return tokens
    tokens = prime.split() if prime else []
    return [t if t in vocab else "<unk>" for t in tokens] or ["<eos>"]


def detokenize(tokens, level):
    """Characters join as they are; words join with spaces, and <eos> ends a line (PTB convention)."""
    if level == "char":
        return "".join(tokens)
    lines, words = [], []
    for token in tokens:
        if token == "<eos>":
            lines.append(" ".join(words))
            words = []
        else:
            words.append(token)
    return "\n".join(lines + [" ".join(words)])


def generate(args, cfg, vocab, run_dir, out):
    prime = prime_tokens(args.prime, cfg, vocab)
    graph, model, saver, _ = generation_graph(cfg, len(vocab), args.stepwise, jit=not args.no_jit)
    import rnn_model as rm
    with rm.tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        restore(rm.tf, sess, saver, run_dir, args.checkpoint)
        generated = generate_ids(sess, model, [vocab.id(t) for t in prime], args)
    text = detokenize(prime + vocab.decode(generated), cfg.level).lstrip("\n")
    out.write(text + "\n")
    return 0


def generation_graph(cfg, vocab_size, stepwise=False, jit=True):
    """(graph, model, saver, initializer): the in-graph generation loop, or with stepwise the one-step
    language-model graph."""
    import rnn_model as rm
    tf = rm.tf
    graph = tf.Graph()
    with graph.as_default():
        if stepwise:
            model = rm.build_step_sampler(cfg, vocab_size)
        else:
            model = rm.build_generator(cfg, vocab_size, jit=jit)
        saver, initializer = tf.train.Saver(), tf.global_variables_initializer()
    graph.finalize()
    return graph, model, saver, initializer


def generate_ids(sess, model, prime_ids, args):
    """Generated token ids after the prime: one Session.run of the in-graph loop, or one per token (stepwise)."""
    import rnn_model as rm
    if isinstance(model, rm.StepSampler):
        return generate_stepwise(sess, model, prime_ids, args)
    return sess.run(model.tokens, {model.prime: prime_ids, model.length: args.length,
                                   model.temperature: args.temperature, model.top_k: args.top_k,
                                   model.argmax: args.argmax, model.seed: args.seed})


def generate_stepwise(sess, model, prime_ids, args):
    """The classic way: one Session.run per token on the one-step graph, the state carried in NumPy. Step t feeds
    the same token and draws with the same seed (args.seed, t) as the in-graph loop, so both write the same text."""
    import rnn_model as rm
    lm = model.lm
    state = [(np.zeros((1, c.shape[-1]), np.float32),) * 2 for c, _ in lm.final_state]
    generated, token = [], prime_ids[0]
    for t in range(len(prime_ids) - 1 + args.length):
        feed = {lm.inputs: [[token]], lm.temperature: args.temperature, model.top_k: args.top_k,
                model.argmax: args.argmax, model.seed: [args.seed, t]}
        drawn, state = sess.run([model.token, lm.final_state], rm.feed_state(feed, lm.initial_state, state))
        if t + 1 < len(prime_ids):  # a prime token only moves the state
            token = prime_ids[t + 1]
        else:
            token = int(drawn)
            generated.append(token)
    return generated


# --------------------------------------------------------------------------------------------------- classification

def read_sentences(args):
    sentences = list(args.text)
    # Input text may come in any encoding: "auto" reads UTF-8, then Windows-1252, then Latin-1 (which never fails).
    if args.file:
        sentences += [line for line in data_handler.read_text(args.file, "auto").split("\n") if line.strip()]
    if not sentences and not sys.stdin.isatty():
        text, _ = data_handler.decode_text(sys.stdin.buffer.read(), "auto", "standard input")
        sentences = [line for line in text.split("\n") if line.strip()]
    if not sentences:
        raise SampleError("nothing to classify: give --text, --file or sentences on standard input")
    return sentences


def classify(args, cfg, vocab, run_dir, out):
    import batch_generator
    import rnn_model as rm
    tf = rm.tf
    label_names = train_labels(run_dir)
    sentences = read_sentences(args)
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg)
        model = rm.build_classifier(cfg, len(vocab), len(label_names), cfg.num_steps, controls)
        saver = tf.train.Saver()
    graph.finalize()
    seqs = [vocab.encode(data_handler.tokenize(s)).astype(np.int32) for s in sentences]
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        restore(tf, sess, saver, run_dir, args.checkpoint)
        probabilities = []
        for start in range(0, len(seqs), cfg.batch_size):
            x, mask = batch_generator.pad_batch(seqs[start:start + cfg.batch_size], cfg.num_steps)
            probabilities.append(sess.run(model.probabilities, {model.inputs: x, model.mask: mask}))
    probabilities = np.concatenate(probabilities)
    for sentence, p in zip(sentences, probabilities):
        best = int(np.argmax(p))
        line = f"{label_names[best]}\t{p[best]:.3f}"
        if args.all_probs:
            line += "\t" + " ".join(f"{name}={q:.3f}" for name, q in zip(label_names, p))
        out.write(f"{line}\t{sentence}\n")
    return 0


def train_labels(run_dir):
    import json
    path = os.path.join(run_dir, "labels.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["labels"]
    except (OSError, ValueError, KeyError):
        raise SampleError(f"{path}: missing or unreadable label list") from None


if __name__ == "__main__":
    sys.exit(main())
