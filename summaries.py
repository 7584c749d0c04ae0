"""What a run shows in TensorBoard beyond the step summaries of the training graph: per-epoch metrics, texts, PR
curves, hyperparameters and the embedding projector's files.

Everything here is built in Python as a Summary protocol buffer through TensorBoard's own plugin APIs (text,
pr_curve, hparams, projector), so nothing adds an op to the finalized graph. TensorBoard orders its card groups
alphabetically, so the group names put first what a user reads first: METRICS ("metrics/loss", "metrics/perplexity"
or "metrics/accuracy", "metrics/learning_rate"), then DETAIL (gradient norms, histograms and sparsity), then FINAL
(the best checkpoint's numbers, one point each).

The files TensorBoard reads are written here too: the run's event files (EventWriters) and the embedding projector's
(its config and metadata.tsv in RUN_DIR/train, and the `checkpoint` file there that points it at the newest
checkpoint). TensorBoard counts every folder of event files as a run, and unchecks them all once there are more than
40, so a run directory is two runs, the fewest that still overlay train and valid curves of one tag: RUN_DIR/train
(the step summaries, the graph) and the run's own folder (validation after each epoch, the test split's texts, the
HParams session and the final metrics). The test split's numbers are the final metrics (FINAL/test_*), so no test
series shares a tag with the validation curves there.
"""
import html
import os
import re
import uuid

import numpy as np

import checkpoints
import config
import run_dir
import text_io
from config import UserError

METRICS = "metrics"  # rnn_model's step summaries use the same group, so train and valid curves share a card
DETAIL = "optimization"  # the gradients' norm, histograms and sparsity per variable (step summaries)
FINAL = "results"  # the best checkpoint's validation and test metrics, in the run's own folder: the HParams metrics
SAMPLE_TAG = "text/generated_sample"
MISCLASSIFIED_TAG = "text/misclassified_validation_sentences"
SPECIAL_TOKENS = set(text_io.CLASSIFY_SPECIALS) | {t for specials in text_io.LM_SPECIALS.values()
                                                    for t in specials}
MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|])")  # what python-markdown lets a backslash escape
PR_THRESHOLDS = 101
PROJECTOR_METADATA = "metadata.tsv"
MISCLASSIFIED_SHOWN = 8  # misclassified validation sentences logged after each validation


def serialized(summary):
    """TensorBoard's Summary protos are another class than TensorFlow's: FileWriter takes either as bytes."""
    return summary.SerializeToString()


def scalars(values, group=METRICS):
    """{name: number} -> one Summary with a scalar per name under group/."""
    from tensorboard.compat.proto import summary_pb2
    return serialized(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"{group}/{name}",
                                                                           simple_value=float(value))
                                                 for name, value in values.items()]))


def text(tag, markdown):
    from tensorboard.plugins.text.summary_v2 import text_pb
    return serialized(text_pb(tag, markdown))


def code_block(text_value):
    """Markdown that shows a text as written (line breaks, spaces and markup characters kept)."""
    fence = "~~~~" if "```" in text_value else "```"
    return f"{fence}\n{text_value}\n{fence}"


def markdown_cell(value):
    """A table cell showing a text as it is: HTML-escaped (TensorBoard drops unknown tags such as <unk>) and
    markdown's own characters backslash-escaped."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(str(value), quote=False)).replace("\n", " ")


def misclassified_table(rows):
    """rows of (sentence, true label, predicted label, its probability) -> a markdown table."""
    lines = ["| true | predicted (probability) | sentence |", "|---|---|---|"]
    lines += [f"| {markdown_cell(true)} | {markdown_cell(predicted)} ({p:.2f}) | {markdown_cell(sentence)} |"
              for sentence, true, predicted, p in rows]
    return "\n".join(lines) if rows else "every validation sentence was labelled right"


def pr_curves(labels, probabilities, label_names):
    """One precision-recall curve per class (one against the rest), from true label ids [N] and probabilities
    [N, classes]: tags CLASS/pr_curves."""
    from tensorboard.plugins.pr_curve import summary as pr_curve
    return [serialized(pr_curve.pb(name, labels=np.equal(labels, c), predictions=probabilities[:, c],
                                   num_thresholds=PR_THRESHOLDS))
            for c, name in enumerate(label_names)]


def confusion_tag(split):
    """The confusion matrix's tag: the validation and the test split write theirs into the same folder."""
    return f"text/{split}_confusion_matrix"


def final_metrics(results, metric):
    """The best checkpoint's validation and test loss and metric, as FINAL/valid_loss, FINAL/test_perplexity, ..."""
    values = {}
    for split in ("valid", "test"):
        if results.get(split):
            values[f"{split}_loss"] = results[split]["loss"]
            values[f"{split}_{metric}"] = results[split][metric]
    return scalars(values, FINAL)


def hparams(hyperparameters, trial_id):
    """The HParams plugin's two records for a run: the experiment (every config key; the final metrics of both
    tasks: the same for every run, so any run's copy describes them all) and this run's session (its values).
    The plugin lists the keys it is told differ first, then the rest, each part alphabetically, and its table shows
    the first 5 keys and metrics: config.LEADING_KEYS are marked so, and the metric of each task comes before the
    losses. trial_id names the trial in the table (RunDir.name)."""
    from tensorboard.plugins.hparams import plugin_data_pb2, summary_v2 as hp
    metrics = [hp.Metric(f"{FINAL}/{split}_{name}", group="", display_name=f"{split} {name}")
               for name in ("perplexity", "accuracy", "loss") for split in ("valid", "test")]
    names = sorted(hyperparameters, key=lambda name: (name not in config.LEADING_KEYS, name))
    experiment = hp.hparams_config_pb([hp.HParam(name) for name in names], metrics)
    # HParam has no `differs` argument: set in the serialized plugin data, as the plugin's own summary stores it.
    plugin_data = experiment.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in config.LEADING_KEYS
    plugin_data.content = data.SerializeToString()
    return [serialized(experiment), serialized(hp.hparams_pb(hyperparameters, trial_id=trial_id))]


def projector_metadata(vocab, counts):
    """The projector's metadata (TSV, PROJECTOR_METADATA): one row per vocabulary entry with the token, its count
    in the training split and whether it is a special token."""
    rows = ["token\ttraining_count\tspecial"]
    rows += [f"{readable(token)}\t{int(count)}\t{'yes' if token in SPECIAL_TOKENS else 'no'}"
             for token, count in zip(vocab.tokens, counts)]
    return "\n".join(rows) + "\n"


def projector_config(folder, embedding_name):
    """The embedding projector's config, through the plugin's own config API. The projector finds the checkpoint
    through the `checkpoint` file of the folder (write_projector_pointer)."""
    from tensorboard.plugins import projector
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = embedding_name
    embedding.metadata_path = PROJECTOR_METADATA  # relative to the config's folder, as the plugin requires
    projector.visualize_embeddings(folder, config)


def write_projector_files(run, embedding_name, vocab, counts):
    """The projector's config and metadata in RUN_DIR/train, for the embedding variable embedding_name."""
    folder = run.train_events_dir
    with checkpoints.writing(run.path, "the embedding projector's files"):
        os.makedirs(folder, exist_ok=True)
        run_dir.write_text(os.path.join(folder, PROJECTOR_METADATA), projector_metadata(vocab, counts))
        projector_config(folder, embedding_name)


def write_projector_pointer(run, checkpoint):
    """Points the projector (which reads RUN_DIR/train's `checkpoint` file) at a checkpoint: the newest, each time
    one is saved, restored for a resume, or the newer ones removed."""
    folder = run.train_events_dir
    pointer = os.path.join(folder, "checkpoint")
    with checkpoints.writing(run.path, "the embedding projector's files"):
        os.makedirs(folder, exist_ok=True)
        run_dir.write_text(pointer, f'model_checkpoint_path: "{os.path.relpath(checkpoint, folder)}"\n')


def readable(token):
    """A token as one TSV cell: whitespace characters named, since a tab or a line break would break the row."""
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "<space>"}.get(token, token.replace("\t", " "))


def token_counts(vocab, train_split):
    """How often each vocabulary id occurs in the training split (an id array, or a list of id arrays)."""
    ids = np.concatenate(train_split) if isinstance(train_split, list) else np.asarray(train_split)
    return np.bincount(ids.astype(np.int64), minlength=len(vocab))


class EventWriters:
    """TensorBoard event files of the run: RUN_DIR/train (step summaries, the graph) and the run's own folder
    (everything else; see the module docstring). Event files are named by the second they were opened in, and a
    second writer in the same second would truncate the first (a quick resume): a random suffix keeps every file."""

    def __init__(self, run, graph, resumed_at=None):
        """run: the RunDir; graph: written with the train events of a new run; resumed_at: the step a resumed run
        starts at. A run directory of an older layout (valid/ and test/ folders) keeps those; its new events come
        here."""
        from tf1 import tf
        self.tf, self.run = tf, run
        self.train = self.opened(run.train_events_dir, None if resumed_at is not None else graph)
        self.own = self.opened(run.path)
        if resumed_at:  # tells TensorBoard to drop what the interrupted run logged from this step on (none before 1)
            start = self.tf.SessionLog(status=self.tf.SessionLog.START)
            for writer in (self.train, self.own):
                writer.add_session_log(start, resumed_at)

    def opened(self, folder, graph=None):
        with checkpoints.writing(self.run.path, "TensorBoard events"):
            return self.tf.summary.FileWriter(folder, graph, filename_suffix="." + uuid.uuid4().hex[:8])

    def add_step(self, summary, step):
        with checkpoints.writing(self.run.path, "TensorBoard events"):  # its thread re-raises a failed write here
            self.train.add_summary(summary, step)

    def add_to_run(self, summaries, step=0):
        """Serialized summaries in the run's own folder (the HParams session and the final metrics)."""
        with checkpoints.writing(self.run.path, "TensorBoard events"):
            for summary in summaries:
                self.own.add_summary(summary, step)
            self.own.flush()

    def add(self, sess, task, split, metrics, step):
        """The epoch summaries of a split's evaluation (validation, test), in the run's own folder."""
        self.add_to_run(task.epoch_summaries(sess, split, metrics), step)

    def close(self):
        with checkpoints.writing(self.run.path, "TensorBoard events"):
            for writer in (self.train, self.own):
                writer.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            self.close()
        except UserError:
            if exc_type is None:  # on the way out of an error, that error is the one to tell
                raise
