"""Use a trained checkpoint: generate text from a language model, score text under it, or label sentences with a
classifier.

    python sample.py [--run_dir DIR] [--checkpoint PATH] [--prime TEXT] [--length N] [--num_samples N] [--seed S]
                     [--temperature T] [--top_k K] [--top_p P] [--argmax] [--beam_width B] [--length_penalty A]
                     [--stop TEXT ...] [--allow_unk] [--generator auto|plain|xla]
    python sample.py --run_dir DIR --score FILE            (FILE "-" reads standard input)
    python sample.py --run_dir DIR --text "a sentence" [--text ...] [--file PATH] [--all_probs]
    python sample.py --run_dir DIR --eval FILE [--predictions OUT]     (a classifier; a language model: --score)

The task is read from the run's config.json. Generation runs decoder.py's graph (the one the SavedModel's generate
and the TensorBoard sample run) a piece of up to 256 tokens per Session.run, each carrying on from the last, so one
sample is written as it comes; --num_samples N draws N samples, sample i with seed S + i, each the text its seed
gives alone, or with --beam_width the N best beams. The pieces run with or without XLA ("xla" / "plain"); "auto"
takes whichever is fastest end to end for the length asked, compilation included, from timings made once per
machine and kept in RUN_DIR/generation_speed.json.
--score prints the perplexity of a text as train.py's evaluation computes it. Classification reads --text, --file
or standard input, one sentence per line. --eval reads labelled sentences in any layout training reads and prints a
classifier's accuracy, per-label precision, recall and F1, macro-F1 and confusion matrix (on a language model it is
--score).
"""
import contextlib
import json
import os
import sys
import time

import numpy as np

import checkpoints
import config
import data_handler
import run_dir
import stopping
import text_io
from config import UserError

GENERATORS = ("auto", "plain", "xla")
INT32_MAX = 2 ** 31 - 1  # token counts, step numbers, k and seeds are int32 in the graph
MAX_NUM_SAMPLES = 10_000  # samples drawn at once: each holds a [vocabulary] row of logits and the LSTM state
MAX_BEAM_WIDTH = 1000  # a step ranks beam_width x vocabulary candidates
GENERATION_CHUNK = 256  # tokens per Session.run: output streams, memory stays bounded, Ctrl-C answers within a run
SCORING_CHUNK = 8192  # tokens of a text scored per Session.run (rounded up to whole num_steps pieces)
CLASSIFYING_CHUNK = 1000  # sentences labelled and written per block


def parse_args(argv):
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--run_dir", help="the training run to use (default: the newest run under runs/)")
    parser.add_argument("--checkpoint", help="a checkpoint prefix (default: the run's best, else its latest)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    lm = parser.add_argument_group("language model")
    lm.add_argument("--prime", default=None, help="text to start from (default: a line break, <eos> for words)")
    lm.add_argument("--length", type=int, default=500, help="tokens to generate")
    lm.add_argument("--num_samples", type=int, default=1, help="samples drawn at once, sample i with seed + i")
    lm.add_argument("--temperature", type=float, default=1.0, help="below 1 is more conservative, above 1 wilder")
    lm.add_argument("--top_k", type=int, default=0, help="sample only among the k most likely tokens; 0 = all")
    lm.add_argument("--top_p", type=float, default=1.0, help="sample among the fewest most likely tokens whose "
                                                                  "probability reaches p (nucleus sampling); 1 = all")
    lm.add_argument("--argmax", action="store_true", help="always take the most likely token (greedy)")
    lm.add_argument("--beam_width", type=int, default=0, help="beam search over B beams (0 = sample); "
                                                              "--num_samples N <= B prints the N best")
    lm.add_argument("--length_penalty", type=float, default=0.0,
                    help="beams are ranked by log p / ((5 + length) / 6) ** A (GNMT); 0 = by log p")
    lm.add_argument("--stop", action="append", default=[], metavar="TEXT",
                    help="end a sample after this text (repeatable; \\n as typed by $'\\n' in bash)")
    lm.add_argument("--allow_unk", action="store_true", help="let <unk> be generated (it never is otherwise)")
    lm.add_argument("--generator", choices=GENERATORS, default="auto",
                    help="the decoding loop without or with XLA, or the one predicted fastest (auto)")
    lm.add_argument("--score", metavar="FILE", help="print the perplexity of FILE's text ('-' = standard input)")
    classify = parser.add_argument_group("classifier")
    classify.add_argument("--text", action="append", default=[], help="a sentence to classify (repeatable)")
    classify.add_argument("--file", help="a file of sentences, one per line")
    classify.add_argument("--all_probs", action="store_true", help="print the probability of every label")
    classify.add_argument("--eval", metavar="FILE", help="labelled sentences (any layout training reads) to print "
                          "the accuracy, per-label scores and confusion matrix of; a language model: as --score")
    classify.add_argument("--predictions", metavar="OUT", help="with --eval: write each sentence's text, label, "
                          "predicted label and its probability to OUT (CSV; .tsv and .jsonl by their extension)")
    for role in ("text", "label"):
        classify.add_argument(f"--{role}_column", help=f"with --eval: FILE's {role} column, a header name or a "
                              f"number from 1 (default: the run's --{role}_column)")
    args = parser.parse_args(argv)
    check_generation(args)
    return args


def check_generation(args):
    """Every generation flag within what the decoder takes (int32 steps, k and seeds; the beam's rows), and only
    with the strategy it belongs to; otherwise one line naming the bound."""
    if not 0 <= args.length <= INT32_MAX // 2:
        raise UserError(f"--length: must be in [0, {INT32_MAX // 2:,}] (the step counter is int32), got {args.length}")
    if not 1 <= args.num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"--num_samples: must be in [1, {MAX_NUM_SAMPLES:,}], got {args.num_samples}")
    if not 0 < args.temperature < float("inf"):
        raise UserError(f"--temperature: must be a positive number, got {args.temperature}")
    if not 0 <= args.top_k <= INT32_MAX:
        raise UserError(f"--top_k: must be in [0, {INT32_MAX}] (above the vocabulary's size it keeps all), got "
                        f"{args.top_k}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top_p: must be in (0, 1], got {args.top_p}")
    if not 0 <= args.beam_width <= MAX_BEAM_WIDTH:
        raise UserError(f"--beam_width: must be in [0, {MAX_BEAM_WIDTH}], got {args.beam_width}")
    if not 0 <= args.length_penalty <= 10:
        raise UserError(f"--length_penalty: must be in [0, 10], got {args.length_penalty}")
    if args.beam_width:
        sampling = [flag for flag, given in (("--temperature", args.temperature != 1.0), ("--top_k", args.top_k),
                                             ("--top_p", args.top_p != 1.0), ("--argmax", args.argmax)) if given]
        if sampling:
            raise UserError(f"{sampling[0]}: is for sampling, not for --beam_width (a beam search keeps the most "
                            "likely continuations)")
        if args.num_samples > args.beam_width:
            raise UserError(f"--num_samples: at most --beam_width ({args.beam_width}) best beams, got "
                            f"{args.num_samples}")
    elif args.length_penalty:
        raise UserError("--length_penalty: is for --beam_width")
    if any(not stop for stop in args.stop):
        raise UserError("--stop: must not be empty")
    if not (0 <= args.seed and args.seed + args.num_samples <= INT32_MAX + 1):
        raise UserError(f"--seed: with --num_samples {args.num_samples} it must be in "
                        f"[0, {INT32_MAX + 1 - args.num_samples}], got {args.seed}")


def main(argv=None, out=None):
    out = out or sys.stdout
    with stopping.signals_interrupt():
        return run_command(sys.argv[1:] if argv is None else argv, out)


def run_command(argv, out):
    try:
        args = parse_args(argv)
        run = run_dir.RunDir(args.run_dir) if args.run_dir else run_dir.newest()
        cfg, vocab = run.load_config(), run.load_vocab()
        refuse_options_of_the_other_task(args, cfg)
        config.tensorflow_environment(cfg, args.verbose)
        if cfg.task == "classify":
            return evaluate(args, cfg, vocab, run, out) if args.eval else classify(args, cfg, vocab, run, out)
        if args.score or args.eval:
            return score(args.score or args.eval, cfg, vocab, run, args.checkpoint, out)
        return generate(args, cfg, vocab, run, out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the last resort for a file operation no narrower handler names
        print(f"error: {e.filename or 'a file operation'}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: what was written so far stands
        out.flush()
        print("\ninterrupted", file=sys.stderr)
        return stopping.exit_code(e)
    except Exception as e:  # TensorFlow's out-of-memory error, without importing TensorFlow to name it
        if type(e).__name__ != "ResourceExhaustedError":
            raise
        print("error: out of memory (ask for fewer tokens or sentences at once)", file=sys.stderr)
        return 1


def refuse_options_of_the_other_task(args, cfg):
    """Options that would be ignored are refused: a language model takes no sentences to label or evaluate, a
    classifier no generation or scoring options, --score and --eval no generation options, and a classifier's
    --eval no sentences to label (nor its options without it)."""
    generation = [("--prime", args.prime is not None), ("--generator", args.generator != "auto"),
                  ("--argmax", args.argmax), ("--top_k", args.top_k), ("--temperature", args.temperature != 1.0),
                  ("--num_samples", args.num_samples != 1), ("--top_p", args.top_p != 1.0),
                  ("--beam_width", args.beam_width), ("--length_penalty", args.length_penalty),
                  ("--stop", args.stop), ("--allow_unk", args.allow_unk)]
    labelling = [("--text", args.text), ("--file", args.file), ("--all_probs", args.all_probs)]
    evaluation = [("--predictions", args.predictions), ("--text_column", args.text_column),
                  ("--label_column", args.label_column)]
    if cfg.task == "lm":
        checks = [(labelling + evaluation, "is for a classifier; this run (lm) is a language model")]
    else:
        checks = [(generation + [("--score", args.score)], "is for a language model; this run (classify) is a "
                                                            "classifier")]
    if cfg.task == "lm" and (args.score or args.eval):
        checks.append((generation, f"is for generation, not for {'--score' if args.score else '--eval'}"))
        checks.append(([("--eval", args.score and args.eval)], "on a language model is --score: give one of them"))
    if cfg.task == "classify":
        checks.append((labelling, "is for labelling sentences, not for --eval") if args.eval
                      else (evaluation, "is for --eval"))
    for options, reason in checks:
        given = [flag for flag, value in options if value]
        if given:
            raise UserError(f"{given[0]}: {reason}")


# --------------------------------------------------------------------------------------------------- generation

def generate(args, cfg, vocab, run, out):
    unknown_words = [word for stop in args.stop for word in text_io.lm_words(stop) if word not in vocab]
    if cfg.level == "word" and unknown_words:
        raise UserError(f"--stop: {unknown_words[0]!r} is not in the model's vocabulary, so the text could never be "
                        "generated")
    if cfg.level == "char":  # the decoder drops what a character model cannot read: said, or refused if all
        for flag, texts in (("--prime", [args.prime or ""]), ("--stop", args.stop)):
            for text in texts:
                unknown = sorted(set(text) - set(vocab.tokens))
                if text and len(unknown) == len(set(text)):
                    raise UserError(f"{flag}: none of its characters is in the model's vocabulary")
                if unknown and flag == "--stop":
                    raise UserError(f"--stop: {''.join(unknown)!r} is not in the model's vocabulary, so the text "
                                    "could never be generated")
                if unknown:
                    print(f"note: prime characters not in the vocabulary were dropped: {''.join(unknown)!r}",
                          file=sys.stderr)
    checkpoints.RunCheckpoints(run).use_candidates(args.checkpoint)  # no checkpoint: said before TensorFlow's import
    import rnn_model as rm
    from tf1 import tf
    machine = f"{config.cpu_description()}; TensorFlow {tf.__version__}"
    path, speed = choose_generator(args.generator, run.load_generation_speed(), machine, args.length)
    # Without timings for this machine both loops go into the graph: plain answers, then each is timed once.
    graph, decoders, saver, tables, _ = generation_graph(cfg, vocab, ["plain", "xla"] if speed is None else [path])
    beams = args.beam_width > 0
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        sess.run(tables)  # the decoder's vocabulary
        checkpoints.RunCheckpoints(run).restore_for_use(sess, saver, args.checkpoint)
        feed = settings_feed(decoders[path], args)
        if args.num_samples == 1 and not beams:  # one sample streams as it is generated
            decode(sess, decoders[path], feed, args.length, lambda text: out.write(text) or out.flush())
            out.write("\n")
        else:
            texts, log_probs = decode(sess, decoders[path], feed, args.length)
            for i, (text, log_prob) in enumerate(zip(texts, log_probs)):
                what = f"beam {i + 1} of {len(texts)} (log-probability {log_prob:.4f})" if beams else \
                    f"sample {i + 1} of {len(texts)} (--seed {args.seed + i})"
                out.write(f"--- {what} ---\n{text}\n")
        out.flush()
        if speed is None:
            speed = time_generators(sess, decoders, machine)
            run.save_generation_speed(speed)
            print(f"note: timed the generation loops once on this machine (kept in {run.generation_speed_path}): "
                  + "; ".join(f"{p} {speed[p]['start_s']:.2f} s to start, then "
                              f"{1 / speed[p]['step_s']:,.0f} tokens/s" for p in ("plain", "xla")), file=sys.stderr)
    return 0


def settings_feed(model, args):
    """The decoder's settings from the command line."""
    s = model.settings
    return {s.prime: args.prime or "", s.seeds: args.seed + np.arange(args.num_samples), s.temperature:
            args.temperature, s.top_k: args.top_k, s.top_p: args.top_p, s.greedy: args.argmax,
            s.beam_width: args.beam_width, s.length_penalty: args.length_penalty, s.stop: args.stop,
            s.allow_unk: args.allow_unk}


def decode(sess, model, feed, length, stream=None, piece=None):
    """(texts, log-probabilities) of the rows to show, best first: Session.runs of the decoder's pieces (at most
    PIECE tokens each), each carrying on from the last, until `length` tokens or every row has stopped. stream:
    called with the prime's text and then each piece's text of the first row as they come (one sample), which are
    then not kept (the texts returned are the prime's alone)."""
    import decoder
    piece = min(piece or GENERATION_CHUNK, decoder.PIECE)
    fetch = {"prime": model.prime_text, "text": model.text, "origin": model.origin, "carry": model.carry_out,
             "order": model.order}
    texts, got, done = None, {}, 0
    while texts is None or (done < length and not all(got["carry"].stopped)):
        size = min(piece, length - done)
        carried = dict(zip(model.carry_in, got["carry"])) if texts is not None else {}  # the first run: the prime
        got = sess.run(fetch, {**feed, model.steps: size, **carried})
        pieces = [text.decode() for text in got["text"]]
        if texts is None:
            texts = [text.decode() for text in got["prime"]]
            if stream:
                stream(texts[0])
        if stream:  # written as it comes, and not kept: memory stays bounded for any length
            stream(pieces[0])
        else:
            texts = [texts[o] + p for o, p in zip(got["origin"], pieces)]
        done += size
    return [texts[i] for i in got["order"]], [float(got["carry"].score[i]) for i in got["order"]]


def choose_generator(asked, speed, machine, steps):
    """(path, timings): the path asked for, or for "auto" the one predicted fastest end to end for `steps` loop
    steps by this machine's timings; timings None where there are none for this machine yet."""
    if asked != "auto":
        return asked, {}
    try:
        if speed.get("machine") == machine:
            return min(("plain", "xla"), key=lambda path: predicted_seconds(speed[path], steps)), speed
    except (KeyError, TypeError):  # a damaged cache is timed again
        pass
    return "plain", None


def predicted_seconds(timing, steps):
    """A fresh process's time in its generation call: the start-up of a first call and `steps` steps."""
    return timing["start_s"] + steps * timing["step_s"]


TIMING_LENGTHS = (64, 576)  # a short and a long run: their difference gives the time of a step


def time_generators(sess, decoders, machine):
    """{path: {start_s, step_s}} for the plain and the XLA loop at one sample, and the machine. The first run of a
    loop pays its start-up (for XLA the compilation, once for every length), each step its own time."""
    speed = {"machine": machine}
    for path in ("plain", "xla"):
        def seconds(length):
            began = time.perf_counter()
            decode(sess, decoders[path], {}, length)
            return time.perf_counter() - began
        first, short, long = seconds(1), seconds(TIMING_LENGTHS[0]), seconds(TIMING_LENGTHS[1])
        step = max((long - short) / (TIMING_LENGTHS[1] - TIMING_LENGTHS[0]), 1e-9)
        speed[path] = {"start_s": max(first - step, 0.0), "step_s": step}
    return speed


def generation_graph(cfg, vocab, paths=("plain",)):
    """(graph, {path: decoder.Decoder}, saver, the vocabulary tables' initializer, an initializer of fresh weights)
    over one declaration of the weights: the decoder without ("plain") or with XLA ("xla")."""
    import decoder
    import rnn_model as rm
    from tf1 import tf
    graph = tf.Graph()
    with graph.as_default():
        weights = rm.declare_weights(cfg, len(vocab))
        decoders = {}
        for path in paths:
            with tf.name_scope(path):
                decoders[path] = decoder.build(cfg, weights, vocab, jit=path == "xla")
        saver, tables = tf.train.Saver(weights.variables()), tf.tables_initializer()
        fresh = tf.global_variables_initializer()  # random weights: benchmarks and tests
    graph.finalize()
    return graph, decoders, saver, tables, fresh


# --------------------------------------------------------------------------------------------------- scoring

def score(path, cfg, vocab, run, checkpoint, out):
    text = read_text_to_score(path, cfg.encoding)
    log_likelihood, tokens, unknown = text_log_likelihood(cfg, vocab, run, checkpoint, text)
    if not tokens:
        raise UserError(f"{path}: no text to score")
    nats = -log_likelihood / tokens
    unit = "characters" if cfg.level == "char" else "words, with <eos> at each line end"
    out.write(f"tokens      {tokens:,} ({unit})\n"
              f"unknown     {unknown:,} (scored as <unk>)\n"
              f"perplexity  {np.exp(nats):.4f}\n"
              f"nats/token  {nats:.4f}\n"
              f"bits/token  {nats / np.log(2):.4f}\n"
              f"bits/char   {-log_likelihood / np.log(2) / len(text):.4f} ({len(text):,} characters)\n")
    return 0


def text_log_likelihood(cfg, vocab, run, checkpoint, text):
    """(log-likelihood in nats, tokens scored, unknown tokens) of a text; its first token is predicted after a
    start token, as a sample after the default prime. A text of no tokens is (0.0, 0, 0) without TensorFlow.
    The text goes through the scorer a part at a time, the state carried from part to part: memory stays bounded
    and Ctrl-C answers between parts."""
    tokens = list(text) if cfg.level == "char" else text_io.lm_words(text)
    if not tokens:
        return 0.0, 0, 0
    checkpoints.RunCheckpoints(run).use_candidates(checkpoint)  # no checkpoint: said before TensorFlow's import
    import decoder
    # A str of characters encodes vectorised (a long text would take seconds one token at a time).
    ids = np.concatenate([[decoder.start_id(cfg, vocab)], vocab.encode(text if cfg.level == "char" else tokens)])
    ids = ids.astype(np.int32)
    graph, scorer, saver = scoring_graph(cfg, len(vocab))
    part = -(-SCORING_CHUNK // cfg.num_steps) * cfg.num_steps  # whole pieces: the state between parts is exact
    import rnn_model as rm
    from tf1 import tf
    from tqdm import tqdm
    log_likelihood, state = 0.0, None
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        checkpoints.RunCheckpoints(run).restore_for_use(sess, saver, checkpoint)
        for begin in tqdm(range(0, len(ids) - 1, part), desc="scoring", unit="part", disable=None, leave=False):
            piece = ids[begin:begin + part + 1]  # its first id is the previous part's last target
            feed = {scorer.ids: [piece], scorer.lengths: [len(piece)]}
            if state is not None:
                feed[scorer.initial_state] = state
            piece_log_likelihood, state = sess.run([scorer.log_likelihood, scorer.final_state], feed)
            log_likelihood += float(piece_log_likelihood[0])
    return log_likelihood, len(tokens), sum(token not in vocab for token in tokens)


def read_text_to_score(path, encoding):
    if path == "-":
        return text_io.decode_text(sys.stdin.buffer.read(), encoding, "standard input")[0]
    return text_io.read_text(path, encoding)


def scoring_graph(cfg, vocab_size):
    """(graph, Scorer, saver): rnn_model's build_scorer over token ids fed as [1, T]."""
    import rnn_model as rm
    from tf1 import tf
    graph = tf.Graph()
    with graph.as_default():
        weights = rm.declare_weights(cfg, vocab_size)
        scorer = rm.build_scorer(cfg, weights, tf.placeholder(tf.int32, [None, None], name="ids"),
                                 tf.placeholder(tf.int32, [None], name="lengths"))
        saver = tf.train.Saver(weights.variables())
    graph.finalize()
    return graph, scorer, saver


# --------------------------------------------------------------------------------------------------- classification

def read_sentences(args):
    sentences = list(args.text)
    # Input text may come in any encoding: "auto" reads UTF-8, then Windows-1252, then Latin-1 (which never fails).
    if args.file:
        sentences += [line for line in text_io.read_text(args.file, "auto").split("\n") if line.strip()]
    if not sentences and not sys.stdin.isatty():
        text, _ = text_io.decode_text(sys.stdin.buffer.read(), "auto", "standard input")
        sentences = [line for line in text.split("\n") if line.strip()]
    if not sentences:
        raise UserError("nothing to classify: give --text, --file or sentences on standard input")
    return sentences


def classify(args, cfg, vocab, run, out):
    label_names = run.load_labels()
    sentences = read_sentences(args)
    with classifier_session(cfg, vocab, label_names, run, args.checkpoint) as probabilities:
        for begin in range(0, len(sentences), CLASSIFYING_CHUNK):  # written block by block, as they are labelled
            block = sentences[begin:begin + CLASSIFYING_CHUNK]
            for sentence, p in zip(block, probabilities(block)):
                best = int(np.argmax(p))
                line = f"{label_names[best]}\t{p[best]:.3f}"
                if args.all_probs:
                    line += "\t" + " ".join(f"{name}={q:.3f}" for name, q in zip(label_names, p))
                out.write(f"{line}\t{sentence}\n")
            out.flush()
    return 0


def evaluate(args, cfg, vocab, run, out):
    """--eval on a classifier: the labelled sentences of a file (or folder) read as training reads its data, labelled
    in one pass through classifier_session, which labels a test split exactly as train.py's evaluation does."""
    label_names = run.load_labels()
    columns = data_handler.Columns(cfg.text_column if args.text_column is None else args.text_column,
                                   cfg.label_column if args.label_column is None else args.label_column)
    if args.predictions and os.path.exists(args.predictions) and os.path.exists(args.eval) and \
            os.path.samefile(args.predictions, args.eval):
        raise UserError(f"--predictions: {args.predictions} is the --eval file itself; write them elsewhere")
    examples = data_handler.examples_to_evaluate(args.eval, cfg, columns)
    unknown = sorted(set(examples.labels) - set(label_names))
    if unknown:
        count = data_handler.examples_count(examples.labels.count(unknown[0]))
        raise UserError(f"{args.eval}: label '{unknown[0]}' ({count}) is not one the model trained on "
                        f"({', '.join(label_names)})")
    # All at once, not in CLASSIFYING_CHUNK blocks: batched as the evaluation batches a split, bit for bit.
    probabilities = sentence_probabilities(cfg, vocab, label_names, run, args.checkpoint, examples.texts)
    import tasks
    index = {label: i for i, label in enumerate(label_names)}
    gold = np.array([index[label] for label in examples.labels])
    report = tasks.classification_report(gold, probabilities.argmax(1), label_names)
    out.write(report_text(report, args.eval))
    out.flush()
    if args.predictions:
        write_predictions(args.predictions, examples, probabilities, label_names)
        print(f"predictions: {len(examples.texts):,} sentences written to {args.predictions}", file=sys.stderr)
    return 0


def report_text(report, source):
    """tasks.classification_report as aligned text: the totals, a row per label, the confusion matrix."""
    labels, n = report["labels"], report["examples"]
    correct = int(np.trace(np.array(report["confusion_matrix"])))
    f1, counted = report["macro_f1"], report["macro_f1_labels"]
    corner = "gold \\ predicted"  # the confusion matrix's rows are the gold labels
    width = max(len(corner), *map(len, labels))
    lines = [f"examples  {n:,} ({source})", f"accuracy  {report['accuracy']:.4f} ({correct:,} of {n:,})",
             f"macro-F1  {f1:.4f} (mean over {counted} labels)", "",
             f"{'label':<{width}}  precision  recall      F1  support"]
    for name in labels:
        c = report["per_class"][name]
        lines.append(f"{name:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  {c['support']:7,}")
    cell = max(7, *(len(name) for name in labels), *(len(f"{v:,}") for row in report["confusion_matrix"] for v in row))
    lines += ["", f"{corner:<{width}}  " + "  ".join(f"{name:>{cell}}" for name in labels)]
    for name, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{cell},}" for v in row))
    return "\n".join(lines) + "\n"


def write_predictions(path, examples, probabilities, label_names):
    """Each sentence's text, gold label, predicted label and that label's probability: CSV with a header (a .tsv
    path: tab-separated; .jsonl: one object a line), read back by --eval itself; written whole to a temporary name,
    then renamed."""
    rows = [(text, label, label_names[int(p.argmax())], round(float(p.max()), 6))
            for text, label, p in zip(examples.texts, examples.labels, probabilities)]
    fields = ("text", "label", "predicted", "probability")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".jsonl":
        text = "".join(json.dumps(dict(zip(fields, row)), ensure_ascii=False) + "\n" for row in rows)
    else:
        text = text_io.table_text([fields, *rows], "\t" if extension == ".tsv" else ",")
    run_dir.write_text(path, text)


def sentence_probabilities(cfg, vocab, label_names, run, checkpoint, sentences):
    """[len(sentences), classes] label probabilities, through the evaluation graphs of tasks.Classifier."""
    with classifier_session(cfg, vocab, label_names, run, checkpoint) as probabilities:
        return probabilities(sentences)


@contextlib.contextmanager
def classifier_session(cfg, vocab, label_names, run, checkpoint):
    """A function from sentences to their [len(sentences), classes] label probabilities, over one restored
    session."""
    checkpoints.RunCheckpoints(run).use_candidates(checkpoint)  # no checkpoint: said before TensorFlow's import
    import rnn_model as rm
    import tasks
    from tf1 import tf
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        classifier = tasks.Classifier(cfg, data_handler.TaskData(vocab, label_names, {}, {}), controls)
        saver, local_init = tf.train.Saver(), tf.local_variables_initializer()
    graph.finalize()
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        checkpoints.RunCheckpoints(run).restore_for_use(sess, saver, checkpoint)
        sess.run(local_init)

        def probabilities(sentences):
            seqs = [vocab.encode(text_io.tokenize(s)).astype(np.int32) for s in sentences]
            return np.exp(tasks.log_softmax(classifier.logits(sess, seqs)))
        yield probabilities


if __name__ == "__main__":
    sys.exit(main())
