"""The run directory: its layout, its paths, its JSON files, its lock, and which folders may be one.

    RUN_DIR/config.json        the resolved config (a resumed or sampled run is read back from it)
    RUN_DIR/vocab.json         {"tokens": [...]} in id order
    RUN_DIR/labels.json        classifier: {"labels": [...]} in class-id order
    RUN_DIR/checkpoints/       the latest checkpoints (model.ckpt-STEP.*), the last 3 kept
    RUN_DIR/best/              the best checkpoint by validation metric, and best.json (its step, epoch, metric)
    RUN_DIR/results.json       final validation and test metrics of the best checkpoint
    RUN_DIR/data/              the splits the run used, written once when it starts (never on resume), each as a
                               file the project reads back: lm train.txt, valid.txt, test.txt (the text, in the
                               config's encoding); classify train.tsv, valid.tsv, test.tsv (a `label<TAB>sentence`
                               header, then LABEL<TAB>tokens lines, UTF-8). A split with nothing in it has no file.
                               So `--data RUN_DIR/data` reads the same splits again, `sample.py --score
                               RUN_DIR/data/test.txt` or `--eval RUN_DIR/data/test.tsv` evaluates what train.py did
    RUN_DIR/runtime.json       {"cluster": null} for a single process, else the cluster's workers and replicas
    RUN_DIR/train/             TensorBoard's step summaries and the graph; also the embedding projector's config,
                               metadata.tsv and a `checkpoint` file naming the newest checkpoint
    RUN_DIR/events.out.tfevents.*  TensorBoard's validation after each epoch, the test split's texts, the run's
                               hyperparameters and final metrics (the HParams tab): with train/, two TensorBoard runs
    RUN_DIR/valid|test/        the event files of the older layout, kept when such a run resumes (its new events go
                               to the two above)
    RUN_DIR/fold_K/            cross-validation: one run directory per fold (its own data/), cv_results.json
                               beside them; the final model on all the data (--cv_final) is RUN_DIR's own: its
                               config.json, vocabulary, labels, checkpoints/ and data/train.tsv, no best/
    RUN_DIR/pretrain/          classify --pretrain_epochs: the word language model the classifier starts from (a run
                               directory of its own, with its corpus/train.txt); in cross-validation, one per fold and one for the final model
    RUN_DIR/logs/              cluster mode: the parameter server's and the other workers' output
    RUN_DIR/generation_speed.json  sample.py: how fast each generation path ran on this machine (a cache)
    RUN_DIR/lock               flock'ed by the run training here (its process id and host), empty otherwise

Every JSON file is written to a temporary name and renamed, so an interrupted write never leaves half a file.
The checkpoints themselves (saving, pruning, choosing and restoring them) are checkpoints.py's, the TensorBoard files
(event files, the projector's) summaries.py's: a RunDir gives them its paths. Nothing here imports TensorFlow, so that
train.py and sample.py check a run directory before the slow import.
"""
import contextlib
import fcntl
import glob
import json
import os
import re
import socket
import stat
import sys
import uuid

import checkpoints
import config
import data_handler
from config import UserError

# A temporary file of write_text: a name no user and no other program writes, so clean-up removes only these.
TEMPORARY = re.compile(r"^.+\.graphlstm-[0-9a-f]{8}\.tmp$")
# What train.py writes in a run directory; a folder holding anything else (and no config.json) is not used.
# valid and test: the event folders of the older layout, which a resumed run keeps.
LAYOUT = ("config.json", "vocab.json", "labels.json", "results.json", "runtime.json", "cv_results.json", "checkpoints",
          "best", "train", "valid", "test", "logs", "pretrain", "corpus", "data", "generation_speed.json", "lock")
# Stems that say what a file is, not which data or config it holds: such a file lends a run its folder's name.
GENERIC_NAMES = frozenset({"input", "train", "data", "text", "corpus", "dataset", "all", "config"})
SHOWN_RUNS = 5  # run names a "no such run" error lists
CLUSTER_KEYS = ("workers", "replicas")  # what runtime.json records of a cluster (results.json adds the global step)


def write_text(path, text, encoding="utf-8"):
    """Writes to a temporary name, then renames: a reader never sees half a file."""
    tmp = f"{path}.graphlstm-{uuid.uuid4().hex[:8]}.tmp"  # its own name: two writers never share a temporary file
    try:
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:  # a failed write or close names no file: name it
            raise OSError(e.errno, e.strerror, path) from None
        raise


def write_json(path, value, indent=2):
    write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def read_json(path):
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open
            raise UserError(f"{path}: not a regular file, expected a JSON file")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise UserError(f"{path}: not a config or run file (JSON nested too deeply)") from None
    except ValueError as e:  # an integer of thousands of digits
        raise UserError(f"{path}: not a config or run file ({str(e)[:80]})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None


def read_config(path):
    """A config JSON file: a run's config.json, or one a user wrote for --config FILE.json."""
    return config.from_values(read_json(path), path)


def default_path(config_name, data):
    """runs/CONFIG[-DATA]: where a run goes without --run_dir."""
    name = config_name if config_name in config.CONFIGS else name_of(config_name)
    return os.path.join("runs", name + ("-" + name_of(data) if data else ""))


def name_of(path):
    """The name a run takes from --data or --config FILE.json: a registry name as it is; a path its file's stem (a
    folder's name), or where that stem is generic (input.txt, train.txt, config.json) the name of its folder, so that
    .../tinyshakespeare/input.txt and --data tinyshakespeare name the same run, and runs/x/config.json names runs/x."""
    path = os.path.normpath(path)
    name = os.path.basename(path)
    stem = name if os.path.isdir(path) else os.path.splitext(name)[0]
    if stem.lower() in GENERIC_NAMES:
        return os.path.basename(os.path.dirname(os.path.abspath(path))) or stem
    return stem


def missing(path):
    """The error for a run directory that does not exist: it names the runs beside it, one of which was likely
    meant (a default name that differs from the README's, a typo)."""
    parent = os.path.dirname(os.path.normpath(path)) or "."
    try:
        runs = sorted(name for name in os.listdir(parent) if os.path.isfile(os.path.join(parent, name, "config.json")))
    except OSError:
        runs = []
    shown = ", ".join(runs[:SHOWN_RUNS]) + (", ..." if len(runs) > SHOWN_RUNS else "")
    return UserError(f"{path}: no such run ({'runs here: ' + shown if runs else 'no run in ' + parent})")


def newest(root="runs"):
    """The most recently written run under root, for sample.py without --run_dir."""
    runs = [os.path.join(root, name) for name in os.listdir(root)] if os.path.isdir(root) else []
    runs = [run for run in runs if os.path.exists(os.path.join(run, "config.json"))]
    if not runs:
        raise UserError(f"no --run_dir given and no run found under {root}/ (train one with train.py first)")
    return RunDir(max(runs, key=os.path.getmtime))


def runtime_name(cluster):
    """A runtime as run_dir records it (None, or {"workers": N, "replicas": "sync"|"async"}), in words."""
    return f"a cluster of {cluster['workers']} workers ({cluster['replicas']})" if cluster else "a single process"


def described_metrics(metrics):
    """A split's results.json entry as a run's last line shows it."""
    shown = [f"loss {metrics['loss']:.3f}"] if isinstance(metrics.get("loss"), (int, float)) else []
    if isinstance(metrics.get("accuracy"), (int, float)):
        shown.append(f"acc {100 * metrics['accuracy']:.2f}%")
    elif isinstance(metrics.get("perplexity"), (int, float)):
        shown.append(f"ppl {metrics['perplexity']:.2f}")
    return " ".join(shown)


class RunDir:
    """One run directory (see the module docstring for its layout)."""

    def __init__(self, path):
        self.path = str(path)
        self.config_path = os.path.join(self.path, "config.json")
        self.vocab_path = os.path.join(self.path, "vocab.json")
        self.labels_path = os.path.join(self.path, "labels.json")
        self.results_path = os.path.join(self.path, "results.json")
        self.runtime_path = os.path.join(self.path, "runtime.json")
        self.cv_results_path = os.path.join(self.path, "cv_results.json")
        self.checkpoint_dir = os.path.join(self.path, "checkpoints")
        self.best_dir = os.path.join(self.path, "best")
        self.best_path = os.path.join(self.best_dir, "best.json")
        self.logs_dir = os.path.join(self.path, "logs")
        self.data_dir = os.path.join(self.path, "data")
        self.train_events_dir = os.path.join(self.path, "train")  # the step summaries; the other events in path
        self.generation_speed_path = os.path.join(self.path, "generation_speed.json")

    def __str__(self):
        return self.path

    @property
    def name(self):
        """The run's name for TensorBoard's HParams: its folder, and for a fold its cross-validation's too."""
        name = os.path.basename(os.path.normpath(self.path))
        if name.startswith("fold_") or name == "pretrain":
            return f"{RunDir(os.path.dirname(os.path.normpath(self.path))).name}/{name}"
        return name

    def has_run_events(self):
        """Whether the run's own folder has an event file (its HParams session was written)."""
        return bool(glob.glob(os.path.join(glob.escape(self.path), "events.out.tfevents.*")))


    def fold(self, k):
        return RunDir(os.path.join(self.path, f"fold_{k}"))

    def pretrain(self):
        """The language model that --pretrain_epochs trains for this run (or fold) to start from."""
        return RunDir(os.path.join(self.path, "pretrain"))

    # ---- state
    def has_checkpoint(self):
        """True when training has saved a checkpoint here, so a new run resumes it."""
        return os.path.exists(self.config_path) and bool(checkpoints.listed(self.checkpoint_dir) or
                                                         checkpoints.listed(self.best_dir))

    def has_started(self):
        """A checkpoint here, in any fold of a cross-validation, or of a pretraining language model: its config.json
        then guards the model."""
        below = [os.path.join(glob.escape(self.path), *parts, "checkpoints", "model.ckpt-*.index")
                 for parts in (("pretrain",), ("fold_*",), ("fold_*", "pretrain"))]
        return os.path.exists(self.config_path) and (self.has_checkpoint() or any(map(glob.glob, below)))

    def check_config(self, cfg):
        """Whether the directory holds a checkpoint to resume; refuses a config that would not fit it."""
        if self.has_started():
            for key, saved, current in config.differences(self.load_config(), cfg):
                raise UserError(f"{self.config_path}: the checkpoint was trained with {key}={saved!r}, this run has "
                                f"{key}={current!r} (use another --run_dir, or --resume to keep the saved config)")
        return self.has_checkpoint()

    def check_rerun(self, cfg, cluster):
        """For a run that resumes, under cfg in `cluster` (None: a single process): the lines a finished run answers
        with, as it has nothing left to train, else None. Refused in one line: a finished run asked to run otherwise
        (it would train nothing), and an unfinished one resumed in another runtime, whose global step counts other
        batches (the epoch and the learning rate would jump)."""
        results = self.finished(cfg)
        known, recorded = self.load_cluster()
        changed_runtime = known and recorded != cluster
        if results:
            saved = self.load_config()
            changes = [f"--{key}={getattr(cfg, key)}" for key in config.RESUMABLE_KEYS
                       if getattr(saved, key) != getattr(cfg, key)]
            changes += [f"{runtime_name(cluster)} (it trained in {runtime_name(recorded)})"] if changed_runtime else []
            if changes:
                raise UserError(f"{self.path}: complete ({results['stopped'].get('detail')}), so {', '.join(changes)} "
                                "would train nothing; to train a new run that way, give another --run_dir")
            return self.completion(cfg, results)
        if changed_runtime:
            raise UserError(f"{self.path}: trained in {runtime_name(recorded)}; resumed in {runtime_name(cluster)} its "
                            f"global step would count other batches, so resume it in {runtime_name(recorded)}, or "
                            "give another --run_dir")
        return None

    def finished(self, cfg):
        """results.json when the run has nothing left to train under cfg (its results are of its newest checkpoint,
        and cfg's max_max_epoch or patience has ended it), else None."""
        results = self.load_results_if_any()
        stopped = results.get("stopped")
        if not isinstance(stopped, dict) or stopped.get("global_step") != self.newest_step():
            return None  # no results yet, or of a run trained on since (a schedule raised, then interrupted)
        epochs, best = stopped.get("epochs_trained"), stopped.get("best_epoch")
        if not isinstance(epochs, int):
            return None
        out_of_patience = bool(cfg.patience) and isinstance(best, int) and epochs - best >= cfg.patience
        return results if epochs >= cfg.max_max_epoch or out_of_patience else None

    def completion(self, cfg, results):
        """What a finished run rerun prints: that it is complete, its results, and the flags that would train more."""
        stopped = results["stopped"]
        shown = [f"{split} {described_metrics(results[split])}" for split in ("valid", "test")
                 if isinstance(results.get(split), dict)]
        more = [f"--max_max_epoch above {cfg.max_max_epoch}"] if stopped["epochs_trained"] >= cfg.max_max_epoch else []
        if stopped["why"] == "patience" and cfg.patience:
            more.append(f"--patience above {cfg.patience} (or 0)")
        best = results.get("best") or {}
        return (f"{self.path}: complete, nothing left to train ({stopped.get('detail')})\n"
                f"results of the best checkpoint (step {best.get('step', '?')}): {'  '.join(shown)}\n"
                f"to train this run further: {' and '.join(more)}; a new run: --run_dir DIR")

    def newest_step(self):
        """The step of the newest checkpoint, latest or best (None without one)."""
        prefixes = checkpoints.listed(self.checkpoint_dir) + checkpoints.listed(self.best_dir)
        return max(map(checkpoints.step_of, prefixes), default=None)

    # ---- JSON files
    def load_config(self):
        if not os.path.isdir(self.path):
            raise missing(self.path)
        return read_config(self.config_path)

    def load_vocab(self):
        if not os.path.exists(self.vocab_path) and os.path.exists(self.cv_results_path):
            raise UserError(f"{self.path}: a cross-validation without a final model (--cv_final false): use one of "
                            "its folds (--run_dir RUN_DIR/fold_K), or run it again with --cv_final true")
        return data_handler.Vocab.from_json(read_json(self.vocab_path), self.vocab_path)

    def load_labels(self):
        labels = read_json(self.labels_path)
        if not isinstance(labels, dict) or not isinstance(labels.get("labels"), list):
            raise UserError(f"{self.labels_path}: expected {{\"labels\": [...]}}")
        return labels["labels"]

    def load_best(self, metric):
        """best.json as a dict, {} before the first validated epoch. One without its step, epoch and metric (damaged
        or edited) is set aside with a warning: the next validation then chooses the best checkpoint anew."""
        best = read_json(self.best_path) if os.path.exists(self.best_path) else {}
        keys = ("step", "epoch", metric)
        if best and not (isinstance(best, dict) and all(isinstance(best.get(k), (int, float)) for k in keys)):
            print(f"warning: {self.best_path}: expected numbers for {', '.join(keys)}; the next validation chooses "
                  "the best checkpoint anew", file=sys.stderr)
            return {}
        return best

    def load_results(self):
        return read_json(self.results_path)

    def load_results_if_any(self):
        """results.json as a dict, {} when absent or unreadable: a run without results trains on, and writes them."""
        try:
            results = read_json(self.results_path) if os.path.exists(self.results_path) else {}
        except UserError:
            return {}
        return results if isinstance(results, dict) else {}

    def load_cluster(self):
        """How the run trained, as (known, cluster): cluster None for a single process, else its workers and replicas;
        from results.json for a run written before runtime.json, unknown (False, None) for one without either."""
        for path in (self.runtime_path, self.results_path):
            try:
                recorded = read_json(path) if os.path.exists(path) else {}
            except UserError:
                continue
            if isinstance(recorded, dict) and "cluster" in recorded:
                cluster = recorded["cluster"]
                return True, {k: cluster.get(k) for k in CLUSTER_KEYS} if isinstance(cluster, dict) else None
        return False, None

    def load_generation_speed(self):
        """sample.py's timings of the generation paths, {} when absent or unreadable (it is only a cache)."""
        try:
            speed = read_json(self.generation_speed_path)
        except (UserError, OSError):
            return {}
        return speed if isinstance(speed, dict) else {}

    def save_generation_speed(self, speed):
        """Keeps the timings for the next sample.py; a run directory that cannot be written only costs a note."""
        try:
            write_json(self.generation_speed_path, speed)
        except OSError as e:
            print(f"note: {self.generation_speed_path}: not written ({e.strerror}); the next sample.py times the "
                  "generation paths again", file=sys.stderr)

    def save_config_and_vocab(self, cfg, vocab, label_names=None, resuming=False, cluster=None):
        """Writes config.json, vocab.json (and labels.json), and runtime.json (cluster: None for a single process);
        a resumed run must find the vocabulary it was trained with, or its embedding rows would mean other tokens."""
        if resuming and (not os.path.exists(self.vocab_path) or self.load_vocab() != vocab):
            raise UserError(f"{self.vocab_path}: the vocabulary built from the data differs from the checkpoint's "
                            "(the data or the vocabulary settings changed)")
        try:
            os.makedirs(self.path, exist_ok=True)
            self.save_config(cfg)
            write_json(self.vocab_path, vocab.to_json(), indent=0)
            if label_names is not None:
                write_json(self.labels_path, {"labels": list(label_names)})
            write_json(self.runtime_path, {"cluster": cluster})
        except OSError as e:
            raise UserError(f"{self.path}: cannot write the run directory ({e.strerror})") from None

    def split_path(self, split, labelled):
        return os.path.join(self.data_dir, f"{split}.{'tsv' if labelled else 'txt'}")

    def save_splits(self, texts, labelled, encoding):
        """RUN_DIR/data/: each split's text (data_handler.TaskData.texts), written when a run starts afresh; a
        language model's in its config's encoding, which sample.py --score and --data read it with."""
        encoding = "utf-8" if labelled or encoding == "auto" else encoding
        try:
            os.makedirs(self.data_dir, exist_ok=True)
            for split, text in texts.items():
                write_text(self.split_path(split, labelled), text, encoding)
        except OSError as e:
            raise UserError(f"{self.data_dir}: cannot write the run's splits ({e.strerror}); run the same command "
                            "again once the disk has room") from None

    def save_config(self, cfg):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.config_path, dict(sorted(config.to_dict(cfg).items())))

    def save_best(self, best):
        """best.json: the best checkpoint's step, epoch and metric (checkpoints.RunCheckpoints.save_best writes it
        with the checkpoint)."""
        write_json(self.best_path, best)

    def save_results(self, results):
        write_json(self.results_path, results)

    def save_cv_results(self, results):
        write_json(self.cv_results_path, results)

    def runs_within(self):
        """This run and those inside it: its folds and the pretraining language models."""
        folds = [os.path.join(self.path, name) for name in sorted(os.listdir(self.path))
                 if re.fullmatch(r"fold_\d+", name)] if os.path.isdir(self.path) else []
        runs = [self] + [RunDir(path) for path in folds]
        return runs + [run.pretrain() for run in runs]

    def remove_interrupted_writes(self):
        """Deletes what writes cut short left behind: write_text's temporary files and TensorFlow's temporary
        checkpoint files, matched by the names only they write. Only the holder of the lock calls this, so no
        write is in progress; a user's own file is never matched."""
        leftovers = []
        for run in self.runs_within():
            for folder in (run.path, run.train_events_dir, os.path.join(run.path, "corpus"), run.best_dir,
                           run.data_dir):
                with contextlib.suppress(OSError):
                    leftovers += [os.path.join(folder, name) for name in os.listdir(folder) if TEMPORARY.match(name)]
            for folder in (run.checkpoint_dir, run.best_dir):
                leftovers += checkpoints.temporary_leftovers(folder)
        for path in leftovers:
            if os.path.isdir(path) and not os.path.islink(path):
                for name in os.listdir(path):  # a sharded save's folder holds only its parts
                    os.remove(os.path.join(path, name))
                os.rmdir(path)
            else:
                os.remove(path)
        return leftovers

    def check_usable(self):
        """The rule for --run_dir: a new or empty folder, or a run directory (it holds train.py's config.json or
        lock, or only what train.py writes). Any other folder is refused, so that nothing of a user's is mixed with
        a run, let alone removed."""
        if not os.path.exists(self.path):
            return
        if not os.path.isdir(self.path):
            raise UserError(f"--run_dir {self.path}: exists and is not a folder")
        names = sorted(os.listdir(self.path))
        foreign = [name for name in names if name not in LAYOUT and not re.fullmatch(r"fold_\d+", name)]
        if foreign and "config.json" not in names and "lock" not in names:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"--run_dir {self.path}: a folder of other files ({shown}), not a run directory; give a "
                            "new or empty folder")

    @contextlib.contextmanager
    def locked(self):
        """Holds RUN_DIR/lock (an exclusive flock, released by the kernel when the process dies) while the block
        runs; a second run on the directory is refused in one line naming the holder. A start that fails before
        writing anything leaves no lock (nor the folder, if it made it) behind."""
        path = os.path.join(self.path, "lock")
        made_folder = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{self.path}: cannot create the run directory or its lock ({e.strerror})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
                raise UserError(f"{self.path}: in use by {holder}; wait for that run to end, or train into another "
                                "--run_dir") from None
            if not os.path.exists(path) or not os.path.samestat(os.fstat(fd), os.stat(path)):
                # The lock was removed (a start that wrote nothing) after it was opened here: take it anew.
                os.close(fd)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            previous = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
            if previous:
                print(f"note: {path}: taking over from {previous}, which has ended", file=sys.stderr)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
            except OSError as e:
                raise UserError(f"{path}: cannot write the lock ({e.strerror})") from None
            try:
                yield
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # ended, if with an error: nothing to take over
                with contextlib.suppress(OSError):
                    if os.listdir(self.path) == ["lock"]:  # nothing else was written: leave the folder as it was
                        os.remove(path)
                        if made_folder:
                            os.rmdir(self.path)
        finally:
            os.close(fd)
