"""Read a run while it trains: sample.py and sample.py --score, N times one after another, against a train.py that
saves a checkpoint every 5 steps and keeps the last 3 (so nearly every save prunes one). Every read must exit 0 (it
may wait for a save to end first), none may say "damaged" or "no intact checkpoint" (a checkpoint being written or
pruned is not damaged), and none may end in a traceback.

    python tests/stress_readers.py [--reads N]

It starts train.py on a tiny language model with epochs enough to train through the whole test, waits for its first
checkpoint, then runs the reads, alternating `sample.py --run_dir R --length 50` and `sample.py --run_dir R --score
FILE` (a small text it writes), each a subprocess of its own, and watches the run's checkpoint folders meanwhile.
The trainer (on one thread, leaving the other core to the reads) must keep training through every read and save
(and so prune) more than 3 checkpoints while they run, or the test proves nothing and fails. A read may wait, but one
that gives no answer in 120 s fails. The trainer is killed at the end.

Prints one line per read and a summary such as "30 reads while training: 30 succeeded, 0 reported damage; the
trainer saved 412 checkpoints meanwhile ..."; exits 1 with a FAILED line on the first broken promise.
"""
import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARGS = ["--config", "test", "--vocab_size", "500", "--hidden_size", "16", "--num_steps", "10",
        "--checkpoint_every", "5", "--summary_every", "1", "--keep_prob", "0.8", "--max_max_epoch", "10000",
        "--intra_op_threads", "1", "--inter_op_threads", "1"]  # one core for the trainer, the other for the reads
KEPT = 3  # latest checkpoints train.py keeps
START_TIMEOUT = 180  # seconds for the trainer's first checkpoint
READ_TIMEOUT = 120  # seconds for one read, waiting included
TEXT = ("The value of an object is returned by the function.\n"
        "If the argument is a string, the result is the number of its characters.\n"
        "A module can contain executable statements as well as function definitions.\n")


def tail(text, lines=12):
    """The end of a process's output, for a FAILED line (the work folder is removed on exit)."""
    return "\n    ".join([""] + text.strip().splitlines()[-lines:])


class Watcher:
    """Polls the run's checkpoint folders in a thread: every checkpoint (folder, step) seen, and when first seen."""

    def __init__(self, run):
        self.run, self.seen, self.done, self.lock = run, {}, threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def on_disk(self):
        found = set()
        for folder in ("checkpoints", "best"):
            for index in glob.glob(os.path.join(glob.escape(self.run), folder, "model.ckpt-*.index")):
                step = os.path.basename(index)[len("model.ckpt-"):-len(".index")]
                if step.isdigit():
                    found.add((folder, int(step)))
        return found

    def poll(self):
        found, now = self.on_disk(), time.time()
        with self.lock:
            for key in found:
                self.seen.setdefault(key, now)

    def seen_in(self, folder):
        with self.lock:
            return {key for key in self.seen if key[0] == folder}

    def loop(self):
        while not self.done.wait(0.02):
            self.poll()

    def saved_between(self, start, end, folder="checkpoints"):
        with self.lock:
            return sorted(step for (where, step), first in self.seen.items()
                          if where == folder and start <= first < end)


def read_command(run, i, text_path):
    what = ["--length", "50", "--seed", str(i)] if i % 2 == 0 else ["--score", text_path]
    return [sys.executable, os.path.join(ROOT, "sample.py"), "--run_dir", run, *what]


def stress(reads, workdir):
    run, text_path, log_path = (os.path.join(workdir, name) for name in ("run", "text.txt", "train.log"))
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(TEXT)
    with open(log_path, "w") as log:
        trainer = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *ARGS, "--run_dir", run],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    watcher = Watcher(run)
    watcher.thread.start()
    try:
        return read_while_training(trainer, watcher, reads, run, text_path, log_path)
    finally:
        watcher.done.set()
        if trainer.poll() is None:
            trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        watcher.thread.join()


def read_while_training(trainer, watcher, reads, run, text_path, log_path):
    began = time.time()
    while not any(folder == "checkpoints" for folder, _ in watcher.on_disk()):
        if trainer.poll() is not None:
            return (f"the trainer exited ({trainer.returncode}) before its first checkpoint:"
                    f"{tail(open(log_path).read())}")
        if time.time() - began > START_TIMEOUT:
            return f"the trainer saved no checkpoint within {START_TIMEOUT} s:{tail(open(log_path).read())}"
        time.sleep(0.05)
    watcher.poll()
    at_start = watcher.seen_in("checkpoints")
    reads_began, slowest, overlapping, waited, warned = time.time(), 0.0, 0, 0, 0
    for i in range(reads):
        kind = "sample.py --length 50" if i % 2 == 0 else "sample.py --score"
        if trainer.poll() is not None:
            return (f"the trainer stopped (exit {trainer.returncode}) before read {i}, so the reads no longer ran "
                    f"against a training run:{tail(open(log_path).read())}")
        start = time.time()
        try:
            done = subprocess.run(read_command(run, i, text_path), capture_output=True, text=True,
                                  timeout=READ_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"read {i} ({kind}) gave no answer within {READ_TIMEOUT} s"
        seconds = time.time() - start
        watcher.poll()
        saves = len(watcher.saved_between(start, time.time()))
        slowest, overlapping = max(slowest, seconds), overlapping + bool(saves)
        said = (done.stderr + (done.stdout if i % 2 else "")).lower()  # (not the generated text)
        if "damaged" in said or "no intact checkpoint" in said:
            return f"read {i} ({kind}) reported damage (exit {done.returncode}):{tail(done.stderr)}"
        if "Traceback" in done.stderr:
            return f"read {i} ({kind}) ended in a traceback (exit {done.returncode}):{tail(done.stderr, 30)}"
        if done.returncode != 0:
            return f"read {i} ({kind}) failed (exit {done.returncode}):{tail(done.stderr)}"
        if i % 2 and not re.search(r"^perplexity\s+[0-9.]+", done.stdout, re.M):
            return f"read {i} ({kind}) printed no perplexity:{tail(done.stdout)}"
        if i % 2 == 0 and not done.stdout.strip():
            return f"read {i} ({kind}) generated nothing"
        waits = "waiting" in done.stderr  # sample.py's note that it waits for a save to end
        waited, warned = waited + waits, warned + ("warning:" in done.stderr)
        print(f"read {i} ({kind}): exit 0 in {seconds:.1f} s{' (it waited for a save)' if waits else ''}; the "
              f"trainer saved {saves} checkpoints meanwhile", flush=True)
    reads_ended = time.time()
    if trainer.poll() is not None:
        return (f"the trainer stopped (exit {trainer.returncode}) during the reads, so they may not have run against "
                f"a training run:{tail(open(log_path).read())}")
    watcher.poll()
    saved = watcher.saved_between(reads_began, reads_ended)
    pruned = watcher.seen_in("checkpoints") - watcher.on_disk()
    trained = open(log_path).read()
    if "Traceback" in trained:
        return f"the trainer's output has a traceback:{tail(trained, 30)}"
    if len(saved) <= KEPT:
        return (f"the trainer saved only {len(saved)} checkpoints during the {reads} reads: too few to prune any, "
                "so the reads proved nothing (a machine too loaded to train?)")
    if not pruned or not at_start - watcher.on_disk():
        return "the trainer pruned no checkpoint during the reads, so the reads proved nothing"
    print(f"{reads} reads while training: {reads} succeeded, 0 reported damage; the trainer saved {len(saved)} "
          f"checkpoints meanwhile (steps {saved[0]} to {saved[-1]}), pruning {len(pruned)}; {overlapping} of the "
          f"reads overlapped a save; {waited} waited for a save; the slowest took {slowest:.1f} s; {warned} printed a "
          "warning")
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=30, help="how many reads (sample, score, sample, ...)")
    args = parser.parse_args(argv)
    from stress_kill import run_stress
    return run_stress("stress_readers_", lambda workdir: stress(args.reads, workdir))


if __name__ == "__main__":
    sys.exit(main())
