"""Use a trained checkpoint: generate text from a language model, or label sentences with a classifier.

    python sample.py [--run_dir DIR] [--checkpoint PATH] [--prime TEXT] [--length N] [--temperature T]
                     [--top_k K] [--argmax] [--seed S] [--stepwise] [--no_jit]
    python sample.py --run_dir DIR --text "a sentence" [--text ...] [--file PATH] [--all_probs]

The task is read from the run's config.json. Generation is one Session.run of an in-graph loop (rnn_model's
build_generator) that feeds the prime through the cell once and then each sampled token, carrying the LSTM state
inside the graph (the prefix is never re-run); --stepwise does the same with one Session.run per token.
Classification reads --text, --file or standard input, one sentence per line.
"""
import sys

import numpy as np

import config
import data_handler
import run_dir
from config import UserError


def parse_args(argv):
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
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
        raise UserError(f"--length: must not be negative, got {args.length}")
    if not args.temperature > 0:
        raise UserError(f"--temperature: must be positive, got {args.temperature}")
    if args.top_k < 0:
        raise UserError(f"--top_k: must not be negative, got {args.top_k}")
    if not 0 <= args.seed < 2 ** 31:
        raise UserError(f"--seed: must be in [0, 2**31), got {args.seed}")
    return args


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        run = run_dir.RunDir(args.run_dir) if args.run_dir else run_dir.newest()
        cfg, vocab = run.load_config(), run.load_vocab()
        refuse_options_of_the_other_task(args, cfg)
        config.tensorflow_environment(cfg, args.verbose)
        if cfg.task == "classify":
            return classify(args, cfg, vocab, run, out)
        return generate(args, cfg, vocab, run, out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the last resort for a file operation no narrower handler names
        print(f"error: {e.filename or 'a file operation'}: {e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # TensorFlow's out-of-memory error, without importing TensorFlow to name it
        if type(e).__name__ != "ResourceExhaustedError":
            raise
        print("error: out of memory (ask for fewer tokens or sentences at once)", file=sys.stderr)
        return 1


def refuse_options_of_the_other_task(args, cfg):
    """A language model takes no sentences to label, a classifier no generation options: either would be ignored."""
    if cfg.task == "lm":
        given = [flag for flag, value in (("--text", args.text), ("--file", args.file), ("--all_probs", args.all_probs))
                 if value]
    else:
        given = [flag for flag, value in (("--prime", args.prime is not None), ("--stepwise", args.stepwise),
                                          ("--no_jit", args.no_jit), ("--argmax", args.argmax),
                                          ("--top_k", args.top_k), ("--temperature", args.temperature != 1.0))
                 if value]
    if given:
        other = "classifier" if cfg.task == "lm" else "language model"
        raise UserError(f"{given[0]}: is for a {other}; this run ({cfg.task}) is a "
                        f"{'language model' if cfg.task == 'lm' else 'classifier'}")


# --------------------------------------------------------------------------------------------------- generation

def prime_tokens(prime, cfg, vocab):
    """The prime as tokens in the vocabulary: unknown words become <unk>; unknown characters are dropped, said once.
    No prime starts at a line break (<eos> for words)."""
    if cfg.level == "char":
        if prime is None:  # a line break, or the first real character of a vocabulary without one
            return ["\n"] if "\n" in vocab else [vocab.tokens[1 if len(vocab) > 1 else 0]]
        tokens = [t for t in prime if t in vocab]
        if not tokens:
            raise UserError("--prime: none of its characters is in the model's vocabulary")
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


def generate(args, cfg, vocab, run, out):
    prime = prime_tokens(args.prime, cfg, vocab)
    candidates = run.use_candidates(args.checkpoint)
    graph, model, saver, _ = generation_graph(cfg, len(vocab), args.stepwise, jit=not args.no_jit)
    import rnn_model as rm
    with rm.tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        run.restore_intact(sess, saver, candidates)
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
        weights = rm.declare_weights(cfg, vocab_size)
        if stepwise:
            model = rm.build_step_sampler(cfg, weights, rm.build_controls(cfg, None))
        else:
            model = rm.build_generator(cfg, weights, jit=jit)
        saver = tf.train.Saver()
        initializer = tf.group(tf.global_variables_initializer(), tf.local_variables_initializer())
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
    rm.BatchSizeSetter(model.controls)(sess, 1)
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
        raise UserError("nothing to classify: give --text, --file or sentences on standard input")
    return sentences


def classify(args, cfg, vocab, run, out):
    import rnn_model as rm
    import tasks
    tf = rm.tf
    label_names = run.load_labels()
    sentences = read_sentences(args)
    candidates = run.use_candidates(args.checkpoint)
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        classifier = tasks.Classifier(cfg, data_handler.TaskData(vocab, label_names, {}, None), controls)
        saver, local_init = tf.train.Saver(), tf.local_variables_initializer()
    graph.finalize()
    seqs = [vocab.encode(data_handler.tokenize(s)).astype(np.int32) for s in sentences]
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        run.restore_intact(sess, saver, candidates)
        sess.run(local_init)
        logits = classifier.logits(sess, seqs)
    probabilities = np.exp(tasks.log_softmax(logits))
    for sentence, p in zip(sentences, probabilities):
        best = int(np.argmax(p))
        line = f"{label_names[best]}\t{p[best]:.3f}"
        if args.all_probs:
            line += "\t" + " ".join(f"{name}={q:.3f}" for name, q in zip(label_names, p))
        out.write(f"{line}\t{sentence}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
