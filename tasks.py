"""The two tasks behind one interface: a language model and a sentence classifier, each with its data and graphs.

train.py's epoch loop knows a task only through what the task declares:
    metric, higher_is_better  the validation number that picks the best checkpoint
    unit                      what the training rate counts (words or examples per second)
    num_batches               training batches in one epoch of this process's data (its shard in a cluster)
    num_outputs               the width of the output softmax (vocabulary or classes): the loss of a uniform guess
    initial_feed              what the variables' initializer is fed: the initial weights (pretrained embeddings,
                              a language model's layers) by placeholder
    train_batches(epoch, start), train_step(sess, batch, fetch_summary) -> StepResult
    evaluate(sess, split) -> metrics, epoch_summaries(sess, split, metrics) -> serialized Summary protos (of the
    split's evaluation just run), has_split(name), describe(metrics)

The data a task reads is data_handler's TaskData. Each task declares its model's weights once
(rnn_model.declare_weights) and builds its training and evaluation graphs from them. Built without an optimizer, a
task is the inference half alone (sample.py uses it so).
"""
import math
from typing import NamedTuple

import numpy as np

import batch_generator
import decoder
import rnn_model as rm
import summaries

class StepResult(NamedTuple):
    metrics: dict  # this batch's loss (and accuracy)
    items: int  # tokens or examples trained on
    summary: bytes  # the serialized step summary, when asked for
    global_step: int  # after the step
    gradient_norm: float  # global norm of the gradient before clipping


# --------------------------------------------------------------------------------------------------- language model

SAMPLE_LENGTH = {"char": 400, "word": 60}  # tokens of the sample logged after each validation


class LanguageModel:
    """Truncated backpropagation through time: the state after one batch is the next batch's initial state, row by
    row, through the epoch; it is saved with every checkpoint, so a resumed run continues exactly."""
    metric, higher_is_better = "perplexity", False

    def __init__(self, cfg, data, controls, optimizer=None):
        self.cfg, self.splits, self.controls = cfg, data.splits, controls
        self.weights = rm.declare_weights(cfg, len(data.vocab), initial_weights=data.initial_weights)
        self.num_outputs = len(data.vocab)  # the softmax's width
        self.unit = "chars/s" if cfg.level == "char" else "words/s"
        self.train_model = rm.build_lm(cfg, self.weights, controls, cfg.num_steps, optimizer) if optimizer else None
        self.eval_model = rm.build_lm(cfg, self.weights, controls, cfg.num_steps)
        self.level, self.vocab = cfg.level, data.vocab
        # Built with the training graph: the epoch's sample text runs it, so no op is added to the finalized graph.
        self.sample_text = decoder.build_whole(cfg, self.weights, data.vocab, decoder.constant_settings(),
                                               SAMPLE_LENGTH[cfg.level], from_text=False)[0][0] if optimizer else None
        self.num_batches = batch_generator.lm_epoch_size(len(self.splits.get("train", ())), cfg.batch_size,
                                                         cfg.num_steps)
        self.initial_feed = self.weights.initial_feed(data.initial_weights)
        self.set_batch_size = rm.BatchSizeSetter(controls)
        self.state = None  # [(c, h)] per layer after the last trained batch; None until the first step here

    def train_batches(self, epoch, start):
        """(x, y, first) from batch `start` on; the first batch of an epoch starts from the zero state."""
        batches = batch_generator.lm_batches(self.splits["train"], self.cfg.batch_size, self.cfg.num_steps, start)
        for index, (x, y) in enumerate(batches, start):
            yield x, y, index == 0

    def train_step(self, sess, batch, fetch_summary):
        x, y, first = batch
        m = self.train_model
        self.set_batch_size(sess, len(x))
        if first:
            self.state = sess.run(m.initial_state)
        elif self.state is None:  # resumed mid-epoch: the state that the saved batch left behind
            self.state = [tuple(layer) for layer in sess.run(self.controls.carried_state)]
        fetches = {"cost": m.cost, "state": m.final_state, "train": m.train.train_op, "save_state": m.save_state,
                   "step": m.train.step, "norm": m.train.gradient_norm}
        if fetch_summary:
            fetches["summary"] = m.summary
        out = sess.run(fetches, rm.feed_state({m.inputs: x, m.targets: y}, m.initial_state, self.state))
        self.state = out["state"]
        return StepResult({"loss": float(out["cost"]) / self.cfg.num_steps}, x.size, out.get("summary"),
                          int(out["step"]), float(out["norm"]))

    def evaluate(self, sess, split):
        """Mean loss per token over the split, in batches of eval_batch_size rows carrying their state."""
        m, cfg = self.eval_model, self.cfg
        self.set_batch_size(sess, cfg.evaluation_batch_size)
        state = sess.run(m.initial_state)
        total_cost, total_steps = 0.0, 0
        for x, y in batch_generator.lm_batches(self.splits[split], cfg.evaluation_batch_size, cfg.num_steps):
            cost, state = sess.run([m.cost, m.final_state], rm.feed_state({m.inputs: x, m.targets: y},
                                                                          m.initial_state, state))
            total_cost += float(cost)
            total_steps += cfg.num_steps
        loss = total_cost / total_steps
        return {"loss": loss, "perplexity": math.exp(min(loss, 700))}  # a diverged run reports a huge number

    def epoch_summaries(self, sess, split, metrics):
        """After validation, its loss and perplexity and a sample from the fixed start token and seed 0
        (SAMPLE_LENGTH tokens), which shows the model learning to write. The test split's numbers are the final
        metrics (summaries.final_metrics): nothing more to log."""
        if split != "valid":
            return []
        logged = [summaries.scalars({"loss": metrics["loss"], "perplexity": metrics["perplexity"]})]
        if self.sample_text is not None:
            text = sess.run(self.sample_text).decode()
            logged.append(summaries.text(summaries.SAMPLE_TAG, summaries.code_block(text)))
        return logged

    def has_split(self, name):
        return self.splits[name].size > 0

    def describe(self, metrics):
        # Perplexity from the mean per-token loss (the mean of per-batch perplexities would overstate it).
        return f"loss {metrics['loss']:.3f} ppl {math.exp(min(metrics['loss'], 50)):.2f}"


# --------------------------------------------------------------------------------------------------- classifier

class Classifier:
    """Padded sentences, masked pooling over the LSTM's outputs. With length buckets, one unrolled graph per bucket
    width, all on the same weights."""
    metric, higher_is_better, unit = "accuracy", True, "examples/s"

    def __init__(self, cfg, data, controls, optimizer=None, bucketed=True):
        self.cfg, self.splits, self.label_names = cfg, data.splits, data.label_names
        self.bucket_widths = batch_generator.default_bucket_widths(cfg.num_steps) if bucketed and cfg.bucket \
            else None
        widths = self.bucket_widths or [cfg.num_steps]
        self.weights = rm.declare_weights(cfg, len(data.vocab), len(data.label_names),
                                          initial_weights=data.initial_weights)
        self.num_outputs = len(data.label_names)
        self.train_models = {w: rm.build_classifier(cfg, self.weights, controls, w, optimizer)
                             for w in widths} if optimizer else {}
        self.eval_models = {w: rm.build_classifier(cfg, self.weights, controls, w) for w in widths}
        self.vocab = data.vocab
        self.last_logits = {}  # split -> its logits at the last evaluation, for that epoch's summaries
        self.num_batches = batch_generator.classify_num_batches(self.splits["train"][0], cfg.batch_size,
                                                                cfg.num_steps, self.bucket_widths) \
            if "train" in self.splits else 0
        self.initial_feed = self.weights.initial_feed(data.initial_weights)
        self.set_batch_size = rm.BatchSizeSetter(controls)

    def train_batches(self, epoch, start):
        seqs, labels = self.splits["train"]
        return batch_generator.classify_batches(seqs, labels, self.cfg.batch_size, self.cfg.num_steps,
                                                seed=self.cfg.seed, epoch=epoch, bucket_widths=self.bucket_widths,
                                                start_batch=start)

    def train_step(self, sess, batch, fetch_summary):
        x, mask, y = batch
        m = self.train_models[x.shape[1]]
        self.set_batch_size(sess, len(y))
        fetches = {"loss": m.loss, "correct": m.correct, "train": m.train.train_op, "step": m.train.step,
                   "norm": m.train.gradient_norm}
        if fetch_summary:
            fetches["summary"] = m.summary
        out = sess.run(fetches, {m.inputs: x, m.mask: mask, m.labels: y})
        return StepResult({"loss": float(out["loss"]), "accuracy": int(out["correct"]) / len(y)}, len(y),
                          out.get("summary"), int(out["step"]), float(out["norm"]))

    def logits(self, sess, seqs):
        """[len(seqs), classes] logits of every sentence, in order, in batches of eval_batch_size (the last
        smaller)."""
        logits = np.zeros((len(seqs), len(self.label_names)), np.float32)
        for width, index in batch_generator.batch_plan(seqs, self.cfg.evaluation_batch_size, self.cfg.num_steps,
                                                       self.bucket_widths):
            x, mask = batch_generator.pad_batch([seqs[i] for i in index], width)
            m = self.eval_models[width]
            self.set_batch_size(sess, len(index))
            logits[index] = sess.run(m.logits, {m.inputs: x, m.mask: mask})
        return logits

    def evaluate(self, sess, split):
        seqs, labels = self.splits[split]
        logits = self.last_logits[split] = self.logits(sess, seqs)
        report = classification_report(labels, logits.argmax(1), self.label_names)
        report["loss"] = float(np.mean(-log_softmax(logits)[np.arange(len(labels)), labels]))
        return report

    def epoch_summaries(self, sess, split, metrics):
        """The split's confusion matrix; after validation also its loss and accuracy (the test split's are the final
        metrics, summaries.final_metrics), a PR curve per class and the first misclassified sentences with their true
        and predicted labels."""
        logged = [summaries.text(summaries.confusion_tag(split), confusion_markdown(metrics))]
        if split == "valid":
            logged.append(summaries.scalars({"loss": metrics["loss"], "accuracy": metrics["accuracy"]}))
            seqs, labels = self.splits[split]
            probabilities = np.exp(log_softmax(self.last_logits[split]))
            predicted = probabilities.argmax(1)
            wrong = np.flatnonzero(predicted != labels)[:summaries.MISCLASSIFIED_SHOWN]
            rows = [(self.as_seen(seqs[i]), self.label_names[labels[i]], self.label_names[predicted[i]],
                     probabilities[i, predicted[i]]) for i in wrong]
            logged.append(summaries.text(summaries.MISCLASSIFIED_TAG, summaries.misclassified_table(rows)))
            logged += summaries.pr_curves(labels, probabilities, self.label_names)
        return logged

    def as_seen(self, ids):
        """A sentence as the model read it: its tokens (lower-cased, <unk> for unknown words), cut at num_steps."""
        cut = " ..." if len(ids) > self.cfg.num_steps else ""
        return " ".join(self.vocab.decode(ids[:self.cfg.num_steps])) + cut

    def has_split(self, name):
        return len(self.splits[name][0]) > 0

    def describe(self, metrics):
        return f"loss {metrics['loss']:.3f} acc {100 * metrics['accuracy']:.2f}%"


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classification_report(true, predicted, label_names):
    """Accuracy over all examples, per-class precision/recall/F1, their macro average and the confusion matrix [true,
    predicted]. The macro-F1 is the mean over the labels the examples hold or the model predicted: a label in
    neither has no F1 to speak of, and would count as 0."""
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
    present = (confusion.sum(0) + confusion.sum(1)) > 0
    macro_f1 = float(np.mean([per_class[name]["f1"] for name, seen in zip(label_names, present) if seen] or [0.0]))
    return {"accuracy": float(np.trace(confusion) / max(len(true), 1)), "examples": int(len(true)),
            "macro_f1": macro_f1, "macro_f1_labels": int(present.sum()), "per_class": per_class,
            "confusion_matrix": confusion.tolist(), "labels": list(label_names)}


def confusion_markdown(report):
    labels = report["labels"]
    rows = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, counts in zip(labels, report["confusion_matrix"]):
        rows.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    return "\n".join(rows)


def build(cfg, data, controls, optimizer=None, bucketed=True):
    """The task of the config over its data (bucketed: whether a classifier may have one training graph per
    bucket width)."""
    if cfg.task == "classify":
        return Classifier(cfg, data, controls, optimizer, bucketed)
    return LanguageModel(cfg, data, controls, optimizer)
