"""Export a trained run as a TensorFlow SavedModel that takes raw text: serve it, or load it from any program.

    python export.py --run_dir DIR [--checkpoint PATH] --out DIR

The SavedModel (tag "serve") needs nothing of this repository: tokenization and the vocabulary lookup are graph
ops (graph_text.py), and the run's config.json, vocab.json (and labels.json) travel in its assets/ folder.

Classifier, signature "serving_default":
    sentences [batch] string -> label [batch] string, probabilities [batch, classes] float32,
                                class_names [classes] string
Language model, signature "generate" (the decoder sample.py runs; each input as its sample.py flag):
    prime [] string, length [] int32, temperature [] float32, top_k [] int32 (0 = all), top_p [] float32 (1 = all),
    greedy [] bool, seed [N] int32, beam_width [] int32 (0 = sampling), length_penalty [] float32,
    stop [S] string, allow_unk [] bool
        -> text [N] string: one sample per seed, each what `sample.py --prime P --seed S ...` writes, or the N best
           beams; log_probability [N] float32: the log-probability of each text's generated tokens
Language model, signature "score" (also "serving_default"):
    text [batch] string -> log_likelihood [batch] (nats), tokens [batch] int32, unknown_tokens [batch] int32,
                           perplexity [batch], bits_per_character [batch]
    as `sample.py --score` computes them: each text's first token follows a start token.
"""
import math
import os
import shutil
import sys
import tempfile

import checkpoints
import config
import run_dir
import stopping
from config import UserError


def parse_args(argv):
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--run_dir", required=True, help="the training run to export")
    parser.add_argument("--checkpoint", help="a checkpoint prefix (default: the run's best, else its latest)")
    parser.add_argument("--out", required=True, help="the SavedModel folder to write (must not exist, or be empty)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    return parser.parse_args(argv)


def main(argv=None):
    with stopping.signals_interrupt():
        return run_command(sys.argv[1:] if argv is None else argv)


def run_command(argv):
    try:
        args = parse_args(argv)
        if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
            raise UserError(f"--out {args.out}: exists and is not an empty folder (choose a new one)")
        run = run_dir.RunDir(args.run_dir)
        cfg = run.load_config()
        checkpoints.RunCheckpoints(run).use_candidates(args.checkpoint)  # no checkpoint: said before the slow part
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        config.tensorflow_environment(cfg, args.verbose)
        checkpoint = export(run, cfg, args.checkpoint, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the staging folder is gone, --out untouched
        print(f"\ninterrupted; nothing was written to {args.out}", file=sys.stderr)
        return stopping.exit_code(e)
    except Exception as e:  # TensorFlow's own errors (a full disk while saving), named without importing it here
        if not type(e).__module__.startswith("tensorflow."):
            raise
        print(f"error: {args.out}: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print(f"exported {checkpoint} to {args.out} (signatures: "
          f"{'serving_default' if cfg.task == 'classify' else 'generate, score (= serving_default)'})")
    return 0


def export(run, cfg, checkpoint, out):
    """Writes the SavedModel of the named checkpoint (else the best intact one) to `out`, through a temporary folder
    beside it (an interrupted export leaves no half model). Returns the checkpoint's path."""
    import rnn_model as rm
    from tf1 import tf
    vocab = run.load_vocab()
    label_names = run.load_labels() if cfg.task == "classify" else None
    graph = tf.Graph()
    with graph.as_default():
        weights = rm.declare_weights(cfg, len(vocab), len(label_names or ()))
        if cfg.task == "classify":
            signatures = {"serving_default": classifier_signature(cfg, weights, vocab, label_names)}
        else:
            signatures = {"generate": generate_signature(cfg, weights, vocab)}
            signatures["score"] = signatures["serving_default"] = score_signature(cfg, weights, vocab)
        saver = tf.train.Saver(weights.variables())
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.graphlstm-export-",
                                   dir=os.path.dirname(os.path.abspath(out)))
        try:
            assets = [tf.constant(path, name=f"asset_{os.path.splitext(os.path.basename(path))[0]}") for path in
                      (run.config_path, run.vocab_path) + ((run.labels_path,) if label_names else ())]
            with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
                checkpoint = checkpoints.RunCheckpoints(run).restore_for_use(sess, saver, checkpoint)
                builder = tf.saved_model.Builder(os.path.join(staging, "model"))
                builder.add_meta_graph_and_variables(
                    sess, [tf.saved_model.SERVING], signature_def_map=signatures, assets_collection=assets,
                    main_op=tf.tables_initializer(), strip_default_attrs=True)
                builder.save()
            if os.path.isdir(out):
                os.rmdir(out)  # an empty folder the user made for it
            os.replace(os.path.join(staging, "model"), out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return checkpoint


def signature(inputs, outputs, method):
    from tf1 import tf
    info = tf.saved_model.utils.build_tensor_info
    return tf.saved_model.signature_def_utils.build_signature_def(
        {k: info(v) for k, v in inputs.items()}, {k: info(v) for k, v in outputs.items()}, method)


def classifier_signature(cfg, weights, vocab, label_names):
    """sentences -> labels and probabilities, through rnn_model's classifier_logits over graph_text's tokens
    (sentences longer than num_steps are cut to it, as in training and sample.py)."""
    import graph_text
    import rnn_model as rm
    from tf1 import tf
    sentences = tf.placeholder(tf.string, [None], name="sentences")
    table = graph_text.lookup_table(vocab.tokens, vocab.unk_id)
    ids = graph_text.token_ids(table, graph_text.classifier_tokens(sentences))[:, :cfg.num_steps]
    padded = ids.to_tensor(0, shape=[None, cfg.num_steps])  # [batch, num_steps], 0 = <pad>
    mask = tf.sequence_mask(ids.row_lengths(), cfg.num_steps, tf.float32)
    logits = rm.classifier_logits(cfg, weights, padded, mask, rm.zero_state(cfg, tf.shape(padded)[0]),
                                  rm.no_dropout)
    class_names = tf.constant(label_names, name="class_names")
    label = tf.gather(class_names, tf.argmax(logits, axis=1), name="label")
    return signature({"sentences": sentences},
                     {"label": label, "probabilities": tf.nn.softmax(logits, name="probabilities"),
                      "class_names": class_names}, tf.saved_model.PREDICT_METHOD_NAME)


def score_signature(cfg, weights, vocab):
    """texts -> their log-likelihood under the model, after a start token; unknown tokens score as <unk>."""
    import decoder
    import graph_text
    import rnn_model as rm
    from tf1 import tf
    raw_text = tf.placeholder(tf.string, [None], name="text")
    # Line ends and a byte-order mark as sample.py reads a file (text_io.decode_text).
    text = tf.strings.regex_replace(tf.strings.regex_replace(raw_text, "\r\n?", "\n"), "^\ufeff+", "")
    tokens = graph_text.characters(text) if cfg.level == "char" else graph_text.lm_word_tokens(text)
    found = graph_text.token_ids(graph_text.lookup_table(vocab.tokens, -1), tokens)  # -1: not in the vocabulary
    unknown = tf.reduce_sum(tf.cast(tf.equal(found, -1), tf.int32), axis=1)
    ids = tf.ragged.map_flat_values(lambda x: tf.where(x < 0, tf.fill(tf.shape(x), vocab.unk_id), x), found)
    start = tf.fill([tf.shape(text)[0], 1], decoder.start_id(cfg, vocab))
    with_start = tf.concat([start, ids.to_tensor(0)], axis=1)  # [batch, 1 + longest]
    scorer = rm.build_scorer(cfg, weights, with_start, tf.cast(ids.row_lengths(), tf.int32) + 1)
    # A text of no tokens has no perplexity: refused (INVALID_ARGUMENT), as sample.py --score refuses it.
    has_tokens = tf.debugging.assert_positive(scorer.tokens, message="text: a text has no tokens to score")
    with tf.control_dependencies([has_tokens]):
        log_likelihood = tf.identity(scorer.log_likelihood)
    num_tokens = tf.cast(scorer.tokens, tf.float32)
    characters = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32)
    return signature({"text": raw_text}, {
        "log_likelihood": log_likelihood, "tokens": scorer.tokens, "unknown_tokens": unknown,
        "perplexity": tf.exp(-log_likelihood / num_tokens, name="perplexity"),
        "bits_per_character": tf.math.divide(-log_likelihood / math.log(2), characters, name="bits_per_character"),
    }, tf.saved_model.PREDICT_METHOD_NAME)


def generate_signature(cfg, weights, vocab):
    """prime and settings -> the texts and their log-probabilities, through the decoder that sample.py runs
    (decoder.py: the prime read as the training text was, after the start token; the strategies; the text), its
    pieces in one tf.while_loop without XLA (a server compiling on its first request would answer it late)."""
    import decoder
    from tf1 import tf
    inputs = {"prime": tf.placeholder(tf.string, [], name="prime"),
              "length": tf.placeholder(tf.int32, [], name="length"),
              "temperature": tf.placeholder(tf.float32, [], name="temperature"),
              "top_k": tf.placeholder(tf.int32, [], name="top_k"),
              "top_p": tf.placeholder(tf.float32, [], name="top_p"),
              "greedy": tf.placeholder(tf.bool, [], name="greedy"),
              "seed": tf.placeholder(tf.int32, [None], name="seed"),
              "beam_width": tf.placeholder(tf.int32, [], name="beam_width"),
              "length_penalty": tf.placeholder(tf.float32, [], name="length_penalty"),
              "stop": tf.placeholder(tf.string, [None], name="stop"),
              "allow_unk": tf.placeholder(tf.bool, [], name="allow_unk")}
    # A request out of range is refused with this message (INVALID_ARGUMENT in TF Serving), as sample.py refuses it.
    checks = [tf.debugging.assert_non_negative(inputs["length"], message="length: must not be negative"),
              tf.debugging.assert_positive(inputs["temperature"], message="temperature: must be positive"),
              tf.debugging.assert_non_negative(inputs["top_k"], message="top_k: must not be negative"),
              tf.debugging.assert_positive(inputs["top_p"], message="top_p: must be in (0, 1]"),
              tf.debugging.assert_less_equal(inputs["top_p"], 1.0, message="top_p: must be in (0, 1]"),
              tf.debugging.assert_non_negative(inputs["seed"], message="seed: must not be negative"),
              tf.debugging.assert_positive(tf.size(inputs["seed"]), message="seed: give at least one"),
              tf.debugging.assert_non_negative(inputs["beam_width"], message="beam_width: must not be negative"),
              tf.debugging.assert_non_negative(inputs["length_penalty"],
                                               message="length_penalty: must not be negative"),
              tf.debugging.Assert(tf.logical_or(tf.equal(inputs["beam_width"], 0),
                                                tf.size(inputs["seed"]) <= inputs["beam_width"]),
                                  ["seed: at most beam_width results (one seed each)"]),
              tf.debugging.Assert(tf.reduce_all(tf.strings.length(inputs["stop"]) > 0), ["stop: must not be empty"])]
    with tf.control_dependencies(checks):  # the checked values, not the placeholders, feed the loop
        checked = {name: tf.identity(value) for name, value in inputs.items()}
    settings = decoder.Settings(checked["prime"], checked["seed"], checked["temperature"], checked["top_k"],
                                checked["top_p"], checked["greedy"], checked["beam_width"],
                                checked["length_penalty"], checked["stop"], checked["allow_unk"])
    texts, log_probabilities = decoder.build_whole(cfg, weights, vocab, settings, checked["length"])
    return signature(inputs, {"text": tf.identity(texts, name="text"),
                              "log_probability": tf.identity(log_probabilities, name="log_probability")},
                     tf.saved_model.PREDICT_METHOD_NAME)


if __name__ == "__main__":
    sys.exit(main())
