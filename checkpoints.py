"""Checkpoints on disk: finding them, checking them, saving and pruning them, and reading them while a run trains.

A folder of checkpoints (RUN_DIR/checkpoints/ or RUN_DIR/best/) holds TensorFlow V2 checkpoints named
model.ckpt-STEP.{index,data-*,meta}. They are found from their index files (TensorFlow writes the index last, when the
data is complete), so a damaged `checkpoint` list hides none of them.

One training process writes a run's checkpoints; any number of readers (sample.py, export.py, --init_from, the
classifier after its pretraining LM) may read them while it trains. They take turns on an flock of the run directory
itself: the trainer holds it exclusively while it saves and prunes (a fraction of a second), a reader holds it shared
while it lists the checkpoints and restores one. So a reader never meets a checkpoint that is half written or pruned
under it, and "damaged" is said only of a checkpoint that is. Where the lock cannot be taken (a file system without
flock), a checkpoint that vanishes while being read is passed over in silence.

TensorFlow's checkpoint functions read a path as a file pattern, so a run directory named like a sweep (`exp[lr=1]`)
would match nothing: such paths reach TensorFlow through an alias without pattern characters (/proc/self/fd).

RunCheckpoints is what train.py, sample.py, export.py and pretrain.py use: one run directory's latest and best
checkpoints, chosen, restored, saved and pruned in turns. writing() turns a failed write of a training run (a
checkpoint, an event file, results.json), Python's or TensorFlow's, into one line. Nothing here imports TensorFlow at
module level (run_dir.py, which lists checkpoints, stays free of it); the functions that need it import it.
"""
import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import sys
import tempfile

from config import UserError

PREFIX = "model.ckpt"
PATTERN_CHARACTERS = set("*?[]{}\\")  # what TensorFlow's file matching reads as a pattern
# Files that TensorFlow writes to a temporary name while saving into a checkpoint folder: the bundle's data and
# index (.tempstateN), atomic text writes (NAME.tmpHEX: the `checkpoint` list, the meta graph) and sharded saves.
TENSORFLOW_TEMPORARY = re.compile(r"^(model\.ckpt-\d+\.(index|data-\d{5}-of-\d{5})\.tempstate\d+|"
                                  r"(checkpoint|model\.ckpt-\d+\.meta)\.tmp[0-9a-f]{32}|"
                                  r"model\.ckpt-\d+_temp(_[0-9a-f]+)?)$")


def step_of(prefix):
    return int(prefix.rsplit("-", 1)[1])


def listed(folder):
    """Checkpoint prefixes in folder, newest step first."""
    found = []
    for index in glob.glob(os.path.join(glob.escape(folder), f"{PREFIX}-*.index")):
        step = index[:-len(".index")].rsplit("-", 1)[1]
        if step.isdigit():
            found.append((int(step), index[:-len(".index")]))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def files_of(prefix):
    return glob.glob(glob.escape(prefix) + ".*")


def remove(prefix):
    """Deletes a checkpoint, its index first: a reader without the lock then sees it gone, not damaged."""
    index = prefix + ".index"
    for path in sorted(files_of(prefix), key=lambda p: p != index):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def prune(folder, keep):
    """Keeps the newest `keep` checkpoints of folder."""
    for prefix in listed(folder)[keep:]:
        remove(prefix)


def temporary_leftovers(folder):
    """What a save cut short left in a checkpoint folder (names only TensorFlow's savers write)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, name) for name in names if TENSORFLOW_TEMPORARY.match(name)]


@contextlib.contextmanager
def turn(run_path, exclusive):
    """Holds the run directory's checkpoint lock: exclusive to save and prune, shared to list and read."""
    try:
        fd = os.open(run_path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield  # no directory yet: nothing to coordinate with
        return
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if not exclusive:
                print(f"note: {run_path}: waiting for the training run to finish writing a checkpoint",
                      file=sys.stderr)
            fcntl.flock(fd, mode)
        except OSError as e:  # a file system without flock: readers fall back on passing over vanished files
            if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def tensorflow_path(prefix):
    """prefix as a path TensorFlow reads literally: itself, or an alias without pattern characters. A folder with
    them is reached through its descriptor; a checkpoint name with them (a user's --checkpoint) through links in a
    private folder."""
    if not PATTERN_CHARACTERS & set(prefix):
        yield prefix
        return
    folder, name = os.path.split(os.path.abspath(prefix))
    if PATTERN_CHARACTERS & set(name):
        private = tempfile.mkdtemp(prefix="graphlstm-checkpoint-")
        try:
            for path in files_of(prefix):
                os.symlink(os.path.abspath(path), os.path.join(private, "linked" + path[len(prefix):]))
            yield os.path.join(private, "linked")
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def save(sess, saver, folder, step):
    """Saves the session's variables as folder/model.ckpt-STEP; returns that prefix. The saver must be built with
    max_to_keep=0 (pruning is prune()'s, which reads no pattern) and save_relative_paths (its `checkpoint` list
    then names the alias-free file)."""
    os.makedirs(folder, exist_ok=True)
    with tensorflow_path(os.path.join(folder, PREFIX)) as path:
        saved = saver.save(sess, path, global_step=step, latest_filename="checkpoint")
    return os.path.join(folder, os.path.basename(saved))


def problem(prefix):
    """Why the checkpoint at prefix cannot be used (unreadable, or a variable that is not finite), or None."""
    import numpy as np
    from tf1 import tf
    try:
        with tensorflow_path(prefix) as path:
            reader = tf.train.load_checkpoint(path)
            for name, dtype in reader.get_variable_to_dtype_map().items():
                if dtype.is_floating and not np.all(np.isfinite(reader.get_tensor(name))):
                    return f"variable {name} is not finite"
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError, OSError) as e:  # what damage raises varies
        return f"unreadable ({(str(e).strip().splitlines() or ['?'])[0][:160]})"
    return None


def first_intact(candidates, where, named=False):
    """The first candidate checkpoint that reads back whole and finite, saying in one line each damaged one it passes
    over. A candidate that is gone by the time it is read was pruned (without the lock), not damaged. named: the
    user named the one candidate, which is then refused rather than replaced."""
    damaged = []
    for prefix in candidates:
        why = problem(prefix)
        if why is None:
            return prefix
        if not os.path.exists(prefix + ".index"):
            continue
        if named:
            raise UserError(f"{prefix}: the checkpoint is damaged: {why}")
        damaged.append(prefix)
        print(f"warning: {prefix}: {why}; trying the next checkpoint", file=sys.stderr)
    if damaged:
        raise UserError(f"{where}: no intact checkpoint ({len(damaged)} damaged): each is named above; train into "
                        "another --run_dir")
    raise UserError(f"{where}: no checkpoint found (has training saved one yet?)")


def restore(sess, saver, prefix):
    """Loads the checkpoint at prefix into the session's variables, or one line saying why it cannot."""
    from tf1 import tf
    try:
        with tensorflow_path(prefix) as path:
            saver.restore(sess, path)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        first_line = str(e).strip().splitlines()[0]
        raise UserError(f"{prefix}: the checkpoint does not match this model ({first_line[:200]})") from None
    return prefix


def read_variables(prefix, scope):
    """{variable name: array} of the checkpoint's variables under scope/."""
    from tf1 import tf
    with tensorflow_path(prefix) as path:
        reader = tf.train.load_checkpoint(path)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_dtype_map()
                if name.startswith(scope + "/")}


@contextlib.contextmanager
def writing(where, what):
    """Turns a failed write (a full disk, no permission) inside the block into one line naming the path: the
    error's own file, else `where` (the run directory). A training run writes only between its checkpoints, so the
    last complete one is always kept."""
    from tf1 import tf
    advice = "the last complete checkpoint is kept: run the same command again once the disk has room"
    try:
        yield
    except OSError as e:
        raise UserError(f"{e.filename or where}: cannot write {what} ({e.strerror}); {advice}") from None
    except (tf.errors.ResourceExhaustedError, tf.errors.UnknownError, tf.errors.PermissionDeniedError,
            tf.errors.FailedPreconditionError) as e:
        raise UserError(f"{where}: cannot write {what} ({error_reason(e)}); {advice}") from None
    except RuntimeError as e:  # an event file's first write, failed (a full disk), comes back as this
        raise UserError(f"{where}: cannot write {what} ({str(e).splitlines()[0]}); {advice}") from None


def error_reason(error):
    """The telling line of a TensorFlow error (its first is often just 'Graph execution error:')."""
    if "No space left on device" in str(error):
        return "No space left on device"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if not line.endswith("error:") and not line.startswith(("Detected at", "[["))]
    return (telling or lines or ["?"])[0][:160]


class RunCheckpoints:
    """One run directory's checkpoints: RUN_DIR/checkpoints/ (the latest, the newest 3 kept) and RUN_DIR/best/ (the
    best by validation metric, with best.json). Read under a shared turn, written under an exclusive one. The
    projector's pointer to the newest checkpoint is summaries.write_projector_pointer's, called by whoever saves or
    removes one."""

    def __init__(self, run):
        self.run = run  # the RunDir: its paths, and best.json

    def resume_candidates(self):
        """For resuming: the latest and the best checkpoints, newest step first (the latest first at a tie)."""
        both = [(prefix, 1) for prefix in listed(self.run.checkpoint_dir)] + \
               [(prefix, 0) for prefix in listed(self.run.best_dir)]
        return [prefix for prefix, _ in sorted(both, key=lambda c: (step_of(c[0]), c[1]), reverse=True)]

    def use_candidates(self, explicit=None):
        """For using a model (results, sampling): an explicit checkpoint alone, else the best, then the latest ones."""
        if explicit:
            if not os.path.exists(explicit + ".index"):
                if os.path.exists(explicit):
                    raise UserError(f"{explicit}: not a checkpoint (give a checkpoint prefix such as "
                                    f"{os.path.join(self.run.best_dir, 'model.ckpt-STEP')})")
                raise UserError(f"{explicit}: no such checkpoint")
            return [explicit]
        candidates = listed(self.run.best_dir) + listed(self.run.checkpoint_dir)
        if not candidates:
            raise UserError(f"{self.run.path}: no checkpoint found (has training saved one yet?)")
        return candidates

    def restore_for_use(self, sess, saver, explicit=None):
        """Restores the checkpoint a user of the model gets: the named one, else the first intact of the best and
        the latest ones, listed when the turn is taken. Returns its path."""
        with turn(self.run.path, exclusive=False):
            path = first_intact(self.use_candidates(explicit), self.run.path, named=bool(explicit))
            return restore(sess, saver, path)

    def restore_for_resume(self, sess, saver):
        """Restores the newest intact checkpoint, latest or best; returns its path."""
        with turn(self.run.path, exclusive=False):
            return restore(sess, saver, first_intact(self.resume_candidates(), self.run.path))

    def read_weights(self):
        """{variable name: array} of the model's weights in the checkpoint a user of the model gets."""
        with turn(self.run.path, exclusive=False):
            return read_variables(first_intact(self.use_candidates(), self.run.path), "model")

    def save_latest(self, sess, saver, step):
        """Saves checkpoints/model.ckpt-STEP and keeps the newest 3; returns its path."""
        with writing(self.run.path, "a checkpoint"), turn(self.run.path, exclusive=True):
            path = save(sess, saver, self.run.checkpoint_dir, step)
            prune(self.run.checkpoint_dir, 3)
        return path

    def save_best(self, sess, saver, step, best):
        """Saves best/model.ckpt-STEP in place of the previous best, and best.json (its step, epoch and metric)."""
        with writing(self.run.path, "the best checkpoint"), turn(self.run.path, exclusive=True):
            save(sess, saver, self.run.best_dir, step)
            prune(self.run.best_dir, 1)
            self.run.save_best(best)

    def keep_limits(self):
        """Prunes a directory from before a resume (or an older version) to 3 latest and 1 best checkpoints."""
        with turn(self.run.path, exclusive=True):
            prune(self.run.checkpoint_dir, 3)
            prune(self.run.best_dir, 1)

    def discard_latest_from(self, step):
        """Removes the latest checkpoints of `step` and later (the best one was validated and stays); returns the
        newest checkpoint left, latest or best, or None."""
        with turn(self.run.path, exclusive=True):
            for prefix in listed(self.run.checkpoint_dir):
                if step_of(prefix) >= step:
                    remove(prefix)
        left = self.resume_candidates()
        return left[0] if left else None
