"""Train an LSTM language model or sentence classifier in TensorFlow graph mode.

    python train.py [--config NAME|FILE.json] [--data NAME|PATH] [--run_dir DIR] [--resume] [--key=value ...]

The flow: resolve the config -> read the data and build the vocabulary -> build the graph once and finalize it ->
run epochs of Session.run calls -> checkpoints, TensorBoard events and a results.json in the run directory.
Running again with the same run directory (or --resume) continues from the latest checkpoint.
"""
import argparse
import contextlib
import glob
import json
import math
import os
import signal
import sys
import time
import uuid

import numpy as np

import batch_generator
import cluster
import config
import data_handler
from config import ConfigError
from data_handler import DataError

CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cache")


class RunError(Exception):
    """A problem with the run directory or a checkpoint; the message is one line meant for the user."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of argparse's usage dump
        raise ConfigError(message)


def parse_command_line(argv):
    """Returns (args, cfg, run_dir, resuming)."""
    overrides, rest = config.split_overrides(argv)
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], epilog="config keys:\n" + config.help_text(),
                            formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", default=None,
                        help=f"named config ({', '.join(config.CONFIGS)}; default {config.DEFAULT_CONFIG}) "
                             "or a JSON config file")
    parser.add_argument("--run_dir", help="where checkpoints, events and results go (default runs/CONFIG[-DATA])")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run_dir with its saved config (schedule and speed keys such "
                             "as --max_max_epoch may be overridden)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines and warnings")
    group = parser.add_argument_group("cluster (TensorFlow's distributed runtime; see README)")
    group.add_argument("--ps_hosts", help="comma-separated host:port of the parameter servers")
    group.add_argument("--worker_hosts", help="comma-separated host:port of the workers (worker 0 is the chief)")
    group.add_argument("--job_name", choices=("ps", "worker"), help="this process's job")
    group.add_argument("--task_index", type=int, default=0, help="this process's index within its job")
    group.add_argument("--replicas", choices=("sync", "async"), default="sync",
                       help="sync: SyncReplicasOptimizer aggregates every worker's gradients per step; async: each "
                            "worker applies its own")
    group.add_argument("--local_cluster", type=int, default=0, metavar="N",
                       help="start 1 parameter server and N workers on 127.0.0.1 and train with them")
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        raise ConfigError(config.unknown_argument(unknown[0]))
    # `--task classify` alone starts from the classifier's config, not from the language model's default.
    config_name = args.config or ("classify" if overrides.get("task") == "classify" else config.DEFAULT_CONFIG)
    run_dir = args.run_dir or default_run_dir(config_name, overrides.get("data", ""))
    saved_config = os.path.join(run_dir, "config.json")
    resuming = os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint")) and os.path.exists(saved_config)
    # A cross-validation run keeps its checkpoints per fold, under the top-level config.json.
    started = resuming or (os.path.exists(saved_config) and
                           bool(glob.glob(os.path.join(run_dir, "fold_*", "checkpoints", "checkpoint"))))
    if args.resume:
        if not started:
            raise RunError(f"{run_dir}: no checkpoint to resume from")
        base = config.load(saved_config)
    elif config_name.endswith(".json"):
        base = config.load(config_name)
    else:
        base = config.named_config(config_name)
    cfg = config.apply_overrides(base, overrides)
    if started:
        for key, saved, current in config.differences(config.load(saved_config), cfg):
            raise RunError(f"{saved_config}: the checkpoint was trained with {key}={saved!r}, this run has "
                           f"{key}={current!r} (use another --run_dir, or --resume to keep the saved config)")
    return args, cfg, run_dir, resuming


def default_run_dir(config_name, data):
    name = os.path.splitext(os.path.basename(config_name))[0]
    if data:
        name += "-" + os.path.splitext(os.path.basename(os.path.normpath(data)))[0]
    return os.path.join("runs", name)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, cfg, run_dir, resuming = parse_command_line(argv)
        role = cluster.role_from_args(args)
        if (role or args.local_cluster) and cfg.cv:
            raise ConfigError("--cv: cross-validation runs in a single process, not in cluster mode")
        if role and args.local_cluster:
            raise ConfigError("--local_cluster starts its own cluster: leave out --ps_hosts, --worker_hosts and "
                              "--job_name")
        if args.local_cluster:
            return cluster.launch_local(os.path.abspath(__file__), without_flag(argv, "--local_cluster"),
                                        args.local_cluster, run_dir, args.replicas)
        config.tensorflow_environment(cfg, args.verbose)
        if role and role.job_name == "ps":
            return cluster.serve_ps(role)
        if cfg.task == "classify":
            return train_classifier(cfg, run_dir, resuming, role)
        return train_language_model(cfg, run_dir, resuming, role)
    except (ConfigError, DataError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; checkpoints saved before now are kept", file=sys.stderr)
        return 130


def without_flag(argv, flag):
    """argv without `flag VALUE` / `flag=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


# --------------------------------------------------------------------------------------------------- data + run dir

def prepare_run_dir(run_dir, cfg, resuming, vocab, extra=None):
    """Writes config.json and vocab.json (and extra JSON files); a resumed run must find the same vocabulary."""
    vocab_path = os.path.join(run_dir, "vocab.json")
    if resuming:
        if not os.path.exists(vocab_path) or data_handler.Vocab.load(vocab_path) != vocab:
            raise RunError(f"{vocab_path}: the vocabulary built from the data differs from the checkpoint's "
                           "(the data or the vocabulary settings changed)")
    try:
        os.makedirs(run_dir, exist_ok=True)
        config.save(cfg, os.path.join(run_dir, "config.json"))
        vocab.save(vocab_path)
        for name, value in (extra or {}).items():
            config.write_json(os.path.join(run_dir, name), value)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot write the run directory ({e.strerror})") from None


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def learning_rate_at(cfg, epoch):
    """The PTB schedule: the initial rate for max_epoch epochs, then multiplied by lr_decay every epoch."""
    return cfg.learning_rate * cfg.lr_decay ** max(epoch + 1 - cfg.max_epoch, 0)


# --------------------------------------------------------------------------------------------------- language model

def shard(items, role):
    """A worker's share of the training data: a contiguous slice of a token stream (so that batches still continue
    row by row), every N-th example of a list of sentences."""
    if role is None:
        return items
    if isinstance(items, np.ndarray):
        n = len(items)
        return items[role.task_index * n // role.num_workers:(role.task_index + 1) * n // role.num_workers]
    return tuple(part[role.task_index::role.num_workers] for part in items)  # (sentences, labels)


def train_language_model(cfg, run_dir, resuming, role=None):
    corpus = data_handler.load_lm_corpus(cfg.data or None, cfg.level, cfg.encoding, cfg.valid_fraction,
                                         cfg.test_fraction, CACHE_DIR)
    vocab = data_handler.build_vocab([corpus.train], cfg.min_count, cfg.vocab_size,
                                     data_handler.LM_SPECIALS[cfg.level])
    splits = {name: vocab.encode(tokens) for name, tokens in
              (("train", corpus.train), ("valid", corpus.valid), ("test", corpus.test))}
    for name, ids in splits.items():
        if ids.size and not batch_generator.lm_epoch_size(ids.size, cfg.batch_size, cfg.num_steps):
            raise DataError(f"{corpus.name}: the {name} split has {ids.size} tokens, too few for one batch "
                            f"(batch_size*(num_steps+1) = {cfg.batch_size * (cfg.num_steps + 1)})")
    if not splits["valid"].size:
        raise DataError(f"{corpus.name}: the validation split is empty")
    if role is None or role.is_chief:
        prepare_run_dir(run_dir, cfg, resuming, vocab)
    splits["train"] = shard(splits["train"], role)
    print(f"data: {corpus.source}; {cfg.level} vocabulary {len(vocab)}; tokens train {splits['train'].size:,} "
          f"valid {splits['valid'].size:,} test {splits['test'].size:,}")
    print(f"run directory: {run_dir}")
    run = LanguageModelRun(cfg, len(vocab), splits, role)
    return fit_cluster(cfg, run, run_dir, role) if role else fit(cfg, run, run_dir, resuming)


class LanguageModelRun:
    """The language-model side of the run loop: graphs, batches, one training step, evaluation."""
    metric, higher_is_better = "perplexity", False
    unit = "wps"

    def __init__(self, cfg, vocab_size, splits, role=None):
        import rnn_model as rm
        self.cfg, self.splits = cfg, splits
        self.num_batches = batch_generator.lm_epoch_size(splits["train"].size, cfg.batch_size, cfg.num_steps)
        with build_graph(self, cfg, role) as optimizer:
            self.train_model = rm.build_lm(cfg, vocab_size, cfg.num_steps, self.controls, optimizer)
            self.eval_model = rm.build_lm(cfg, vocab_size, cfg.num_steps, self.controls)
            self.epoch_summaries = rm.build_epoch_summaries(["loss", "perplexity"])
        self.state = None

    def after_init(self, sess):
        pass

    def start_epoch(self, sess, step_in_epoch):
        if step_in_epoch:  # resuming mid-epoch: the state that the last saved batch left behind
            self.state = list(sess.run(self.controls.carried_state))
        else:
            self.state = sess.run(self.train_model.initial_state)

    def batches(self, epoch, start):
        return batch_generator.lm_batches(self.splits["train"], self.cfg.batch_size, self.cfg.num_steps, start)

    def train_step(self, sess, batch, fetch_summary):
        import rnn_model as rm
        m = self.train_model
        x, y = batch
        fetches = {"cost": m.cost, "state": m.final_state, "train": m.train.train_op,
                   "step": self.controls.global_step}
        if fetch_summary:
            fetches["summary"] = m.summary
        out = sess.run(fetches, rm.feed_state({m.inputs: x, m.targets: y}, m.initial_state, self.state))
        self.state = out["state"]
        return {"loss": float(out["cost"]) / self.cfg.num_steps}, x.size, out.get("summary"), int(out["step"])

    def before_save(self, sess):
        import rnn_model as rm
        sess.run(self.controls.carried_state_update, {self.controls.new_carried_state: rm.state_to_array(self.state)})

    def evaluate(self, sess, split):
        import rnn_model as rm
        m, cfg = self.eval_model, self.cfg
        state = sess.run(m.initial_state)
        total_cost, total_steps = 0.0, 0
        for x, y in batch_generator.lm_batches(self.splits[split], cfg.batch_size, cfg.num_steps):
            cost, state = sess.run([m.cost, m.final_state], rm.feed_state({m.inputs: x, m.targets: y},
                                                                          m.initial_state, state))
            total_cost += float(cost)
            total_steps += cfg.num_steps
        loss = total_cost / total_steps
        return {"loss": loss, "perplexity": math.exp(min(loss, 700))}  # a diverged run reports a huge number

    def has_split(self, name):
        return self.splits[name].size > 0

    def describe(self, metrics):
        # Perplexity from the mean per-token loss (the mean of per-batch perplexities would overstate it).
        return f"loss {metrics['loss']:.3f} ppl {math.exp(min(metrics['loss'], 50)):.2f}"


# --------------------------------------------------------------------------------------------------- classifier

def train_classifier(cfg, run_dir, resuming, role=None):
    cdata = data_handler.load_classification(cfg.data or None, cfg.encoding, cfg.label_mode, cfg.valid_fraction,
                                             cfg.test_fraction, cfg.seed, CACHE_DIR)
    print(f"data: {cdata.name} ({cdata.encoding}); {len(cdata.label_names)} labels; examples train "
          f"{len(cdata.train.texts):,} valid {len(cdata.valid.texts):,} test {len(cdata.test.texts):,}"
          + (f"; {cdata.skipped_empty} empty lines skipped" if cdata.skipped_empty else ""))
    if not cfg.cv:
        return train_classifier_fold(cfg, run_dir, resuming, cdata.train, cdata.valid, cdata.test, cdata.label_names,
                                     role)
    return cross_validate(cfg, run_dir, cdata)


def cross_validate(cfg, run_dir, cdata):
    """K-fold CV over all examples: each fold is the test set once, the rest is split into train and valid."""
    everything = data_handler.LabelledExamples(cdata.train.texts + cdata.valid.texts + cdata.test.texts,
                                               cdata.train.labels + cdata.valid.labels + cdata.test.labels)
    if len(everything.texts) < 2 * cfg.cv:
        raise DataError(f"{cdata.name}: {len(everything.texts)} examples are too few for --cv {cfg.cv}")
    os.makedirs(run_dir, exist_ok=True)
    config.save(cfg, os.path.join(run_dir, "config.json"))  # what a rerun of the folds is checked against
    folds = data_handler.cv_folds(len(everything.texts), cfg.cv, cfg.seed)
    results = []
    for k, test_index in enumerate(folds):
        rest = np.setdiff1d(np.arange(len(everything.texts)), test_index)
        rng = np.random.RandomState(cfg.seed + k)
        rest = rest[rng.permutation(len(rest))]
        num_valid = max(1, int(round(len(rest) * cfg.valid_fraction)))
        fold_dir = os.path.join(run_dir, f"fold_{k}")
        print(f"--- fold {k + 1}/{cfg.cv}: train {len(rest) - num_valid:,} valid {num_valid:,} "
              f"test {len(test_index):,}")
        fold_resuming = os.path.exists(os.path.join(fold_dir, "checkpoints", "checkpoint"))
        train, valid, test = (data_handler.subset(everything, index)
                              for index in (rest[num_valid:], rest[:num_valid], test_index))
        code = train_classifier_fold(cfg, fold_dir, fold_resuming, train, valid, test, cdata.label_names)
        if code:
            return code
        results.append(read_json(os.path.join(fold_dir, "results.json")))
    accuracies = [r["test"]["accuracy"] for r in results]
    summary = {"folds": cfg.cv, "accuracy_per_fold": accuracies, "mean_accuracy": float(np.mean(accuracies)),
               "std_accuracy": float(np.std(accuracies)), "per_fold": results}
    config.write_json(os.path.join(run_dir, "cv_results.json"), summary)
    print(f"{cfg.cv}-fold CV test accuracy: {100 * summary['mean_accuracy']:.2f} +- "
          f"{100 * summary['std_accuracy']:.2f} % (per fold: {', '.join(f'{100 * a:.1f}' for a in accuracies)})")
    return 0


def train_classifier_fold(cfg, run_dir, resuming, train, valid, test, label_names, role=None):
    vocab = data_handler.build_vocab(train.texts, cfg.min_count, cfg.vocab_size, data_handler.CLASSIFY_SPECIALS)
    label_index = {label: i for i, label in enumerate(label_names)}
    splits = {}
    for name, examples in (("train", train), ("valid", valid), ("test", test)):
        unknown = sorted(set(examples.labels) - set(label_index))
        if unknown:
            raise DataError(f"{name} split: label '{unknown[0]}' does not occur in the training data")
        splits[name] = ([vocab.encode(tokens).astype(np.int32) for tokens in examples.texts],
                        np.array([label_index[label] for label in examples.labels], np.int32))
    if not splits["train"][0]:
        raise DataError("the training split is empty")
    if role is None or role.is_chief:
        prepare_run_dir(run_dir, cfg, resuming, vocab, {"labels.json": {"labels": list(label_names)}})
    splits["train"] = shard(splits["train"], role)
    embeddings = None
    if cfg.embeddings:
        embeddings, found = data_handler.load_embeddings(cfg.embeddings, vocab, cfg.embedding_dim)
        print(f"embeddings: {found:,} of {len(vocab):,} words found in {cfg.embeddings}")
    print(f"run directory: {run_dir}; vocabulary {len(vocab):,}")
    run = ClassifierRun(cfg, len(vocab), label_names, splits, embeddings, role)
    return fit_cluster(cfg, run, run_dir, role) if role else fit(cfg, run, run_dir, resuming)


class ClassifierRun:
    """The classifier side of the run loop; with bucketing, one unrolled graph per bucket width, sharing weights."""
    metric, higher_is_better = "accuracy", True
    unit = "ex/s"

    def __init__(self, cfg, vocab_size, label_names, splits, embeddings=None, role=None):
        import rnn_model as rm
        tf = rm.tf
        self.cfg, self.label_names, self.splits, self.embeddings = cfg, label_names, splits, embeddings
        # SyncReplicasOptimizer applies gradients from one training graph only, so a synchronous cluster does
        # without length buckets.
        bucketed = cfg.bucket and not (role and role.sync)
        self.bucket_widths = batch_generator.default_bucket_widths(cfg.num_steps) if bucketed else None
        widths = self.bucket_widths or [cfg.num_steps]
        self.num_batches = batch_generator.classify_num_batches(splits["train"][0], cfg.batch_size, cfg.num_steps,
                                                                self.bucket_widths)
        with build_graph(self, cfg, role) as optimizer:
            self.train_models = {w: rm.build_classifier(cfg, vocab_size, len(label_names), w, self.controls,
                                                        optimizer) for w in widths}
            self.eval_models = {w: rm.build_classifier(cfg, vocab_size, len(label_names), w, self.controls)
                                for w in widths}
            self.epoch_summaries = rm.build_epoch_summaries(["loss", "accuracy"])
            with tf.variable_scope("model", reuse=True):
                embedding = tf.get_variable("embedding")
            self.new_embedding = tf.placeholder(tf.float32, embedding.shape, name="new_embedding")
            self.embedding_update = tf.assign(embedding, self.new_embedding)

    def after_init(self, sess):
        if self.embeddings is not None:
            sess.run(self.embedding_update, {self.new_embedding: self.embeddings})

    def start_epoch(self, sess, step_in_epoch):
        pass

    def batches(self, epoch, start):
        seqs, labels = self.splits["train"]
        return batch_generator.classify_batches(seqs, labels, self.cfg.batch_size, self.cfg.num_steps,
                                                seed=self.cfg.seed, epoch=epoch, bucket_widths=self.bucket_widths,
                                                start_batch=start)

    def train_step(self, sess, batch, fetch_summary):
        x, mask, y = batch
        m = self.train_models[x.shape[1]]
        fetches = {"loss": m.loss, "correct": m.correct, "train": m.train.train_op, "step": self.controls.global_step}
        if fetch_summary:
            fetches["summary"] = m.summary
        out = sess.run(fetches, {m.inputs: x, m.mask: mask, m.labels: y})
        return ({"loss": float(out["loss"]), "accuracy": int(out["correct"]) / len(y)}, len(y), out.get("summary"),
                int(out["step"]))

    def before_save(self, sess):
        pass

    def predict(self, sess, split):
        """(true labels, predicted labels, summed loss) over every example of the split, in order."""
        seqs, labels = self.splits[split]
        true, predicted, total_loss = [], [], 0.0
        for x, mask, y in batch_generator.classify_batches(seqs, labels, self.cfg.batch_size, self.cfg.num_steps,
                                                           bucket_widths=self.bucket_widths):
            m = self.eval_models[x.shape[1]]
            loss, predictions = sess.run([m.loss, m.predictions], {m.inputs: x, m.mask: mask, m.labels: y})
            true.append(y)
            predicted.append(predictions)
            total_loss += float(loss) * len(y)
        return np.concatenate(true), np.concatenate(predicted), total_loss

    def evaluate(self, sess, split):
        true, predicted, total_loss = self.predict(sess, split)
        report = classification_report(true, predicted, self.label_names)
        report["loss"] = float(total_loss / len(true))
        return report

    def has_split(self, name):
        return len(self.splits[name][0]) > 0

    def describe(self, metrics):
        return f"loss {metrics['loss']:.3f} acc {100 * metrics['accuracy']:.2f}%"


def classification_report(true, predicted, label_names):
    """Accuracy over all examples, per-class precision/recall/F1 and the confusion matrix [true, predicted]."""
    num_classes = len(label_names)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (true, predicted), 1)
    per_class = {}
    for i, name in enumerate(label_names):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[i].sum())}
    return {"accuracy": float(np.trace(confusion) / max(len(true), 1)), "examples": int(len(true)),
            "per_class": per_class, "confusion_matrix": confusion.tolist(), "labels": list(label_names)}


def confusion_markdown(report):
    labels = report["labels"]
    rows = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, counts in zip(labels, report["confusion_matrix"]):
        rows.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------------- the run loop

@contextlib.contextmanager
def build_graph(run, cfg, role):
    """`with build_graph(run, cfg, role) as optimizer:` builds a run's graph once. Before the block: the graph, its
    device placement, the controls and the optimizer; after it: the savers, the initializer and (single process)
    finalize, after which nothing may add an op. In a cluster, variables go to the parameter servers and the
    optimizer is wrapped for synchronous replicas; the MonitoredSession finalizes the graph after its hooks have
    added their ops."""
    import rnn_model as rm
    tf = rm.tf
    run.graph = tf.Graph()
    device = (tf.train.replica_device_setter(worker_device=role.device, cluster=role.spec(tf)) if role
              else rm.device_name(cfg))
    with run.graph.as_default(), tf.device(device):
        tf.set_random_seed(cfg.seed)
        run.controls = rm.build_controls(cfg)
        run.optimizer = rm.make_optimizer(cfg, run.controls.learning_rate)
        if role and role.sync:
            run.optimizer = tf.train.SyncReplicasOptimizer(run.optimizer, replicas_to_aggregate=role.num_workers,
                                                           total_num_replicas=role.num_workers)
        yield run.optimizer
        run.saver, run.best_saver = tf.train.Saver(max_to_keep=3), tf.train.Saver(max_to_keep=1)
        run.init = tf.global_variables_initializer()
        if role:
            run.done_signals = [queue.enqueue(1) for queue in cluster.done_queues(tf, role)]
            if role.sync:
                # A worker that leaves puts tokens in the queue that synchronous steps wait on: a worker whose
                # gradient went stale while it waited (the chief during evaluation) is not left waiting forever.
                run.release_workers = run.optimizer.get_init_tokens_op(role.num_workers)
    if not role:
        run.graph.finalize()  # from here on nothing may add an op: the run loop only runs the graph


class StopRequest:
    """Ctrl-C asks the loop to stop after the current step (and save); a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step to save a checkpoint (Ctrl-C again to quit at once)", file=sys.stderr)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def fit(cfg, run, run_dir, resuming):
    """The epoch loop shared by both tasks: schedule, steps, summaries, checkpoints, evaluation, results."""
    import rnn_model as rm
    tf = rm.tf
    checkpoint_dir, best_dir = os.path.join(run_dir, "checkpoints"), os.path.join(run_dir, "best")
    saver, best_saver = run.saver, run.best_saver
    if cfg.device == "gpu" and not rm.gpu_available():
        print("warning: --device gpu but no GPU is visible; running on the CPU", file=sys.stderr)
    best = read_json(os.path.join(best_dir, "best.json"), {}) if resuming else {}
    with tf.Session(graph=run.graph, config=rm.session_config(cfg)) as sess:
        if resuming:
            restore(sess, saver, checkpoint_dir)
        else:
            sess.run(run.init)
            run.after_init(sess)
        global_step = int(sess.run(run.controls.global_step))
        train_writer = event_writer(tf, run_dir, "train", run.graph if not resuming else None)
        valid_writer = event_writer(tf, run_dir, "valid")
        if resuming:
            # Tells TensorBoard to drop events logged after this step by the interrupted run.
            start = tf.SessionLog(status=tf.SessionLog.START)
            train_writer.add_session_log(start, global_step)
            valid_writer.add_session_log(start, global_step)
            print(f"resuming at step {global_step} (epoch {global_step // run.num_batches + 1})")

        def save_latest(step):
            run.before_save(sess)
            saver.save(sess, os.path.join(checkpoint_dir, "model.ckpt"), global_step=step)

        stopped = None
        with StopRequest() as stop:
            for epoch in range(global_step // run.num_batches, cfg.max_max_epoch):
                learning_rate = learning_rate_at(cfg, epoch)
                sess.run(run.controls.learning_rate_update, {run.controls.new_learning_rate: learning_rate})
                step_in_epoch = global_step - epoch * run.num_batches
                run.start_epoch(sess, step_in_epoch)
                stopped = train_epoch(cfg, run, sess, epoch, step_in_epoch, global_step, train_writer,
                                      lambda: stop.requested, save_latest, learning_rate)
                global_step = epoch * run.num_batches + stopped["step_in_epoch"]
                if stopped["reason"] and stopped["step_in_epoch"] < run.num_batches:
                    save_latest(global_step)
                    break
                # A whole epoch (even if a stop came with its last batch): validate it before anything else.
                valid = run.evaluate(sess, "valid")
                write_epoch_summaries(sess, run, valid_writer, valid, global_step)
                is_best = not best or (valid[run.metric] > best[run.metric] if run.higher_is_better
                                       else valid[run.metric] < best[run.metric])
                save_latest(global_step)
                if is_best:
                    best_saver.save(sess, os.path.join(best_dir, "model.ckpt"), global_step=global_step,
                                    latest_filename="checkpoint")
                    best = {"step": global_step, "epoch": epoch + 1, run.metric: valid[run.metric]}
                    config.write_json(os.path.join(best_dir, "best.json"), best)
                print(f"epoch {epoch + 1}/{cfg.max_max_epoch}  lr {learning_rate:.4g}  train "
                      f"{run.describe(stopped['train'])}  valid {run.describe(valid)}  "
                      f"{stopped['rate']:,.0f} {run.unit}" + ("  (best)" if is_best else ""))
                if stopped["reason"]:
                    break
        train_writer.close()
        if stopped and stopped["reason"]:
            how = "interrupted" if stopped["reason"] == "interrupt" else "stopped (--max_steps)"
            again = ("Run the same command again to resume." if stopped["reason"] == "interrupt" else
                     "Raise --max_steps (or leave it out) and run again to continue.")
            trained = (f"this epoch: train {run.describe(stopped['train'])}, {stopped['rate']:,.0f} {run.unit}"
                       if stopped["steps"] else "no step trained")
            print(f"{how} at step {global_step} ({trained}); checkpoint saved in {checkpoint_dir}. {again}")
            valid_writer.close()
            return 130 if stopped["reason"] == "interrupt" else 0
        if stopped is None:
            print(f"nothing to train: the run already finished {cfg.max_max_epoch} epochs "
                  "(raise --max_max_epoch to continue)")
        results = final_results(cfg, run, sess, best_saver, best_dir, best)
        if results["test"]:
            write_epoch_summaries(sess, run, event_writer(tf, run_dir, "test"), results["test"], global_step)
        valid_writer.close()
    config.write_json(os.path.join(run_dir, "results.json"), results)
    return 0


def write_epoch_summaries(sess, run, writer, metrics, step):
    """Whole-epoch metrics (and a classifier's confusion matrix) through the pre-built placeholders."""
    s = run.epoch_summaries
    feed = {placeholder: metrics[tag] for tag, placeholder in s.values.items()}
    writer.add_summary(sess.run(s.scalars, feed), step)
    if "confusion_matrix" in metrics:
        writer.add_summary(sess.run(s.text, {s.confusion: confusion_markdown(metrics)}), step)
    writer.flush()


def fit_cluster(cfg, run, run_dir, role):
    """The run loop of one worker in a cluster (see cluster.py), on a MonitoredSession: the chief
    initialises or restores the variables from run_dir/checkpoints (so a restarted cluster resumes), saves
    checkpoints and summaries and evaluates; every worker trains on its own shard. A restarted worker rejoins where
    the global step says the run is."""
    import rnn_model as rm
    tf = rm.tf
    if not run.num_batches:
        raise DataError(f"worker {role.task_index}: its shard of the training data has no full batch "
                        "(use fewer workers, or a smaller batch_size or num_steps)")
    server = cluster.start_server(tf, role)
    # Global steps per epoch: a synchronous step consumes one batch of every worker, an asynchronous one a batch of
    # one worker.
    workers_per_step = 1 if role.sync else role.num_workers
    steps_per_epoch = run.num_batches * workers_per_step
    last_step = cfg.max_max_epoch * steps_per_epoch
    if cfg.max_steps:
        last_step = min(last_step, cfg.max_steps)
    hooks = [tf.train.StopAtStepHook(last_step=last_step)]
    if role.sync:
        hooks.append(run.optimizer.make_session_run_hook(role.is_chief))
        cluster.quiet_queue_runner_shutdown(tf)
    train_writer = valid_writer = None
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    if role.is_chief:
        train_writer = event_writer(tf, run_dir, "train", None if os.path.exists(checkpoint_dir) else run.graph)
        valid_writer = event_writer(tf, run_dir, "valid")
    print(f"worker {role.task_index}/{role.num_workers} ({'chief, ' if role.is_chief else ''}"
          f"{'sync' if role.sync else 'async'}): {run.num_batches} batches of its shard per epoch, "
          f"training to global step {last_step}", flush=True)
    # init_fn runs only when the chief initialises from scratch (not when it restores): pretrained embeddings.
    scaffold = tf.train.Scaffold(init_op=run.init, saver=run.saver, init_fn=lambda _, sess: run.after_init(sess))
    if role.is_chief:
        hooks.append(tf.train.CheckpointSaverHook(checkpoint_dir, save_steps=cfg.checkpoint_every or steps_per_epoch,
                                                  scaffold=scaffold))
    session_config = cluster.session_config(tf, rm.session_config(cfg), role)
    # The chief trains until the last global step, cycling its shard if the others were faster; another worker
    # trains its shard's epochs. A worker that leaves releases tokens so that no synchronous step waits for it.
    with run.graph.as_default(), tf.train.MonitoredSession(
            cluster.session_creator(tf, role, scaffold, server.target, session_config, checkpoint_dir),
            hooks=hooks, stop_grace_period_secs=2) as sess:
        global_step = sess.run(run.controls.global_step)
        epoch, start = global_step // steps_per_epoch, (global_step % steps_per_epoch) // workers_per_step
        if global_step:
            print(f"worker {role.task_index}: joining at global step {global_step} (epoch {epoch + 1}, "
                  f"batch {start})", flush=True)
        while not sess.should_stop() and (epoch < cfg.max_max_epoch or role.is_chief):
            learning_rate = learning_rate_at(cfg, min(epoch, cfg.max_max_epoch - 1))
            sess.run(run.controls.learning_rate_update, {run.controls.new_learning_rate: learning_rate})
            run.start_epoch(sess, 0)  # an LM worker's carried state starts from zero at an epoch or a rejoin
            # The chief's CheckpointSaverHook saves, so no save_latest; the StopAtStepHook stops at the last step.
            stopped = train_epoch(cfg, run, sess, epoch, start, global_step, train_writer, sess.should_stop, None,
                                  learning_rate)
            global_step = stopped["global_step"]
            line = (f"worker {role.task_index} epoch {epoch + 1}/{cfg.max_max_epoch}  step {global_step}  "
                    f"lr {learning_rate:.4g}  train {run.describe(stopped['train']) if stopped['steps'] else '-'}  "
                    f"{stopped['rate']:,.0f} {run.unit}")
            if role.is_chief and not sess.should_stop():
                valid = run.evaluate(sess, "valid")
                write_epoch_summaries(sess, run, valid_writer, valid, global_step)
                line += f"  valid {run.describe(valid)}"
            print(line, flush=True)
            epoch, start = (global_step // steps_per_epoch if role.is_chief else epoch + 1), 0
    # After the monitored session: its hooks have stopped it, but the variables live on on the parameter servers.
    with tf.Session(server.target, graph=run.graph, config=session_config) as sess:
        if role.sync:
            try:
                sess.run(run.release_workers)
            except (tf.errors.CancelledError, tf.errors.OutOfRangeError):
                pass  # the chief has left and closed the token queue: a waiting worker's step ends with it
        if role.is_chief:
            global_step = int(sess.run(run.controls.global_step))
            results = {"task": cfg.task, "cluster": {"workers": role.num_workers, "replicas": "sync" if role.sync
                                                     else "async", "global_step": global_step},
                       "valid": run.evaluate(sess, "valid"), "test": None}
            write_epoch_summaries(sess, run, valid_writer, results["valid"], global_step)
            if run.has_split("test"):
                results["test"] = run.evaluate(sess, "test")
            print(f"chief: global step {global_step}; final valid {run.describe(results['valid'])}"
                  + (f"  test {run.describe(results['test'])}" if results["test"] else ""), flush=True)
            config.write_json(os.path.join(run_dir, "results.json"), results)
            train_writer.close()
            valid_writer.close()
        sess.run(run.done_signals)  # tells the parameter servers this worker is finished
    return 0


def event_writer(tf, run_dir, name, graph=None):
    """A FileWriter for run_dir/name. Event files are named by the second they were opened in, and a second writer
    in the same second would truncate the first (a quick resume): a random suffix keeps every file."""
    return tf.summary.FileWriter(os.path.join(run_dir, name), graph, filename_suffix="." + uuid.uuid4().hex[:8])


def train_epoch(cfg, run, sess, epoch, start, global_step, writer, should_stop, save_latest, learning_rate):
    """Runs the training batches of one epoch from batch `start`, for a single process and for a cluster worker
    alike: summaries when a writer is given, checkpoints every --checkpoint_every steps when save_latest is given,
    and a stop when should_stop() says so (Ctrl-C, or the cluster's hooks) or at --max_steps. Returns where and why
    it stopped, the global step, and the epoch's averages and rate."""
    from tqdm import tqdm
    totals, count, items, began = {}, 0, 0, time.time()
    bar = tqdm(total=run.num_batches, initial=start, desc=f"epoch {epoch + 1}/{cfg.max_max_epoch}",
               unit="batch", disable=None, leave=False, dynamic_ncols=True)
    reason, step_in_epoch = None, start
    for batch in run.batches(epoch, start):
        if cfg.max_steps and global_step >= cfg.max_steps:  # before the step: a rerun at max_steps trains none
            reason = "max_steps"
            break
        fetch_summary = writer is not None and (global_step + 1) % cfg.summary_every == 0
        metrics, batch_items, summary, global_step = run.train_step(sess, batch, fetch_summary)
        step_in_epoch += 1
        count += 1
        items += batch_items
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
        if summary is not None:
            writer.add_summary(summary, global_step)
        if save_latest and cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
            save_latest(global_step)
        rate = items / max(time.time() - began, 1e-9)
        if count % 10 == 0 or step_in_epoch == run.num_batches:
            bar.set_postfix_str(f"{run.describe(metrics)}  {rate:,.0f} {run.unit}  lr {learning_rate:.3g}")
        bar.update(1)
        if should_stop():
            reason = "interrupt"
            break
    else:
        if cfg.max_steps and global_step >= cfg.max_steps:
            reason = "max_steps"  # reached with the epoch's last batch: the epoch is validated, then the run stops
    bar.close()
    averages = {k: v / max(count, 1) for k, v in totals.items()}
    return {"reason": reason, "step_in_epoch": step_in_epoch, "global_step": global_step, "train": averages,
            "rate": items / max(time.time() - began, 1e-9), "steps": count}


def restore(sess, saver, checkpoint_dir):
    import rnn_model as rm
    path = rm.tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        raise RunError(f"{checkpoint_dir}: no readable checkpoint")
    try:
        saver.restore(sess, path)
    except (rm.tf.errors.InvalidArgumentError, rm.tf.errors.NotFoundError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise RunError(f"{path}: the checkpoint does not match this model ({first_line[:200]})") from None
    return path


def final_results(cfg, run, sess, best_saver, best_dir, best):
    """Validation and test metrics of the best checkpoint (the latest if there is no best)."""
    if best:
        restore(sess, best_saver, best_dir)
    results = {"task": cfg.task, "best": best, "valid": run.evaluate(sess, "valid"), "test": None}
    line = f"best checkpoint (step {best.get('step', '?')}): valid {run.describe(results['valid'])}"
    if run.has_split("test"):
        results["test"] = run.evaluate(sess, "test")
        line += f"  test {run.describe(results['test'])}"
    print(line)
    return results


if __name__ == "__main__":
    sys.exit(main())
