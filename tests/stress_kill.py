"""Kill -9, SIGTERM or SIGINT at random moments, N times, then let the run finish: every restart must resume from the
newest intact checkpoint, the disk must hold at most 3 latest checkpoints (4 while a save is cut short), and the
finished run's losses must equal an uninterrupted run's, step for step.

    python tests/stress_kill.py [--signal KILL|TERM|INT] [--trials N] [--epochs E] [--seed S]

Each trial starts train.py on a tiny language model that saves every 20 steps and sends it the signal: one time in
5 during start-up, otherwise a random 0 to 2.5 s into training (steps, saves and validation).

--signal KILL (the default) kills it with SIGKILL.

--signal TERM or INT is a preemption (Slurm, Kubernetes and cloud schedulers send SIGTERM) or a Ctrl-C. In about one
trial in 4 a second signal follows 0 to 0.3 s after the first, to land while the checkpoint is being saved. Then
train.py must exit by itself within 60 s, and:
  - while it trained: stop after the step, print "interrupted at step N; checkpoint saved in ..." and exit 143 for
    SIGTERM, 130 for SIGINT, a second signal or not; the newest intact checkpoint on disk is then step N, and the
    next restart prints "resuming at step N " (it resumes exactly where it stopped, nothing trained is lost);
  - during start-up (before the training loop): exit non-zero, without a traceback;
  - once the run had finished: exit 0 (or the signal's code, if it came during the final evaluation).
No output has a traceback. "While it trained" is known from the output (a "resuming at step" line) or from a
checkpoint this process saved before the signal was sent; before either, the signal counts as start-up.

Prints one line per trial and a summary; exits 1 with a FAILED line on the first broken promise.
"""
import argparse
import collections
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

ARGS = ["--config", "test", "--vocab_size", "500", "--hidden_size", "16", "--num_steps", "10",
        "--checkpoint_every", "20", "--summary_every", "1", "--keep_prob", "0.8"]
SIGNALS = {"KILL": (signal.SIGKILL, None), "TERM": (signal.SIGTERM, 143), "INT": (signal.SIGINT, 130)}
EXIT_TIMEOUT = 60  # seconds train.py has to stop by itself after SIGTERM or SIGINT


def train_command(run, epochs):
    return [sys.executable, os.path.join(ROOT, "train.py"), *ARGS, "--max_max_epoch", str(epochs), "--run_dir", run]


def default_signals():
    """In the child, before train.py runs: SIGINT and SIGTERM as a fresh process has them (a shell's background job
    inherits SIGINT ignored, and Python then keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def intact_steps(run):
    """Steps of the checkpoints that read back whole and finite, newest first."""
    import checkpoints
    import run_dir
    saved = checkpoints.RunCheckpoints(run_dir.RunDir(run))
    return [checkpoints.step_of(prefix) for prefix in saved.resume_candidates() if checkpoints.problem(prefix) is None]


def saved_steps(run):
    """Steps of the latest checkpoints on disk (their index files), intact or not; no TensorFlow needed."""
    steps = [os.path.basename(path)[len("model.ckpt-"):-len(".index")]
             for path in glob.glob(os.path.join(glob.escape(run), "checkpoints", "model.ckpt-*.index"))]
    return [int(step) for step in steps if step.isdigit()]


def tail(text, lines=15):
    """The end of a process's output, for a FAILED line (the work folder is removed on exit)."""
    return "\n    ".join([""] + text.strip().splitlines()[-lines:])


def checkpoint_sets(run):
    folder = os.path.join(run, "checkpoints")
    return len([name for name in os.listdir(folder) if name.endswith(".index")]) if os.path.isdir(folder) else 0


def stress(trials, epochs, seed, workdir, signal_name="KILL"):
    from conftest import event_scalars
    sig, code = SIGNALS[signal_name]
    rng = random.Random(seed)
    reference, run = os.path.join(workdir, "reference"), os.path.join(workdir, "killed")
    subprocess.run(train_command(reference, epochs), check=True, capture_output=True, stdin=subprocess.DEVNULL)
    checked, most_sets = 0, 0
    tally = collections.Counter()  # signal mode: what the trials saw
    owed = None  # signal mode: the step an interrupted run saved, where the next restart must resume
    for trial in range(trials):
        expected = intact_steps(run)[:1]
        newest_before = max(saved_steps(run), default=-1)
        log_path = os.path.join(workdir, f"trial_{trial}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(train_command(run, epochs), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, preexec_fn=default_signals)
            began = time.time()
            if rng.random() < 0.2:  # now and then during start-up (imports, data, graph building)
                time.sleep(rng.uniform(0.0, 3.0))
            else:  # mostly while it trains, saves and validates
                started = "resuming at step" if expected else "run directory:"  # the loop is about to run
                while started not in open(log_path).read() and process.poll() is None:
                    assert time.time() - began < 120, "train.py did not start within 2 minutes"
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 2.5))
            delay = time.time() - began
            finished = process.poll() is not None
            if sig == signal.SIGKILL:
                process.send_signal(signal.SIGKILL)
                process.wait()
            else:
                second, gap = rng.random() < 0.25, rng.uniform(0.0, 0.3)
                training = ("resuming at step" in open(log_path).read() or
                            max(saved_steps(run), default=-1) > newest_before)
                process.send_signal(sig)
                hit = False
                if second:
                    time.sleep(gap)
                    hit = process.poll() is None
                    if hit:
                        process.send_signal(sig)
                try:
                    process.wait(timeout=EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    return (f"trial {trial}: train.py did not exit within {EXIT_TIMEOUT} s of SIG{signal_name}; its "
                            f"output:{tail(open(log_path).read())}")
        output = open(log_path).read()
        resumed = re.search(r"resuming at step (\d+) ", output)
        if expected and resumed:
            checked += 1
            if int(resumed.group(1)) != expected[0]:
                return f"trial {trial}: resumed at step {resumed.group(1)}, the newest intact is {expected[0]}"
        if "Traceback" in output:
            return f"trial {trial}: a traceback in the output:{tail(output, 40)}"
        sets = checkpoint_sets(run)
        most_sets = max(most_sets, sets)
        if sets > 4:
            return f"trial {trial}: {sets} checkpoints on disk"
        if sig == signal.SIGKILL:
            print(f"trial {trial}: killed after {delay:.1f} s{' (it had finished)' if finished else ''}; "
                  f"{'resumed at step ' + resumed.group(1) if resumed else 'no resume line yet'}; "
                  f"checkpoints on disk {sets}", flush=True)
            continue
        # ---- SIGTERM, SIGINT
        if owed is not None and resumed:
            if owed and int(resumed.group(1)) != owed:
                return (f"trial {trial}: resumed at step {resumed.group(1)}, but the run before stopped and saved at "
                        f"step {owed}")
            tally["exact"] += bool(owed)
            owed = None
        twice = f" and a second {gap:.2f} s later, before it had exited" if hit else ""
        returncode, last_line = process.returncode, (output.strip().splitlines() or ["(no output)"])[-1]
        interrupted = re.search(r"interrupted at step (\d+); checkpoint saved in", output)
        completed = re.search(rf"epoch {epochs}/{epochs} ", output)
        said = f"exit {returncode}"
        if interrupted:
            step = int(interrupted.group(1))
            if returncode != code:
                return (f"trial {trial}: SIG{signal_name}{twice}: it printed 'interrupted at step {step}' but exited "
                        f"{returncode}, not {code}:{tail(output)}")
            intact = intact_steps(run)
            if step and intact[:1] != [step]:
                return (f"trial {trial}: SIG{signal_name}{twice}: it said it saved step {step}, "
                        f"but the newest intact checkpoint is {intact[:1] or 'none'}")
            owed = step
            tally["saved"] += 1
            said += f", interrupted at step {step}"
        elif finished:
            if returncode != 0:
                return f"trial {trial}: the run had finished before the signal, yet it exited {returncode}"
            tally["finished"] += 1
            said += " (it had finished)"
        elif completed:  # the signal came during the final evaluation: done, or stopped without a step to save
            if returncode not in (0, code):
                return (f"trial {trial}: SIG{signal_name} during the final evaluation: exit {returncode}, expected 0 "
                        f"or {code} (last line: {last_line})")
            tally["finished"] += 1
            said += " (during the final evaluation)"
        elif training:
            if returncode == -sig:
                return (f"trial {trial}: SIG{signal_name}{twice} while it trained killed it (exit {returncode}, no "
                        f"handler): nothing was saved:{tail(output)}")
            return (f"trial {trial}: SIG{signal_name}{twice} while it trained: exit {returncode} "
                    f"without 'interrupted at step N; checkpoint saved in ...':{tail(output)}")
        else:
            if returncode == 0:
                return f"trial {trial}: SIG{signal_name} during start-up, yet it exited 0 (last line: {last_line})"
            tally["start-up"] += 1
            said += " (start-up)"
        tally["double"] += second
        tally["hit"] += hit
        print(f"trial {trial}: SIG{signal_name} after {delay:.1f} s "
              f"({'while training' if training else 'before training' if not finished else 'after the end'})"
              f"{f', again {gap:.2f} s later' + ('' if hit else ' (it had exited)') if second else ''}; {said}; "
              f"{'resumed at step ' + resumed.group(1) if resumed else 'no resume line'}; "
              f"checkpoints on disk {sets}", flush=True)
    expected = intact_steps(run)[:1]
    done = subprocess.run(train_command(run, epochs), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode:
        return f"the final run failed: {done.stderr[-500:]}"
    resumed = re.search(r"resuming at step (\d+) ", done.stdout)
    if expected and resumed:
        checked += 1
        if int(resumed.group(1)) != expected[0]:
            return f"the final run resumed at step {resumed.group(1)}, the newest intact is {expected[0]}"
    if owed:
        if not resumed or int(resumed.group(1)) != owed:
            return (f"the final run {'resumed at step ' + resumed.group(1) if resumed else 'did not resume'}, but the "
                    f"run before stopped and saved at step {owed}")
        tally["exact"] += 1
    leftovers = [name for name in os.listdir(os.path.join(run, "checkpoints")) if "tmp" in name or "temp" in name]
    if leftovers:
        return f"temporary files left: {leftovers}"
    losses, wanted = (event_scalars(os.path.join(folder, "train"), "metrics/loss") for folder in (run, reference))
    if sorted(losses) != sorted(wanted):
        return f"the finished run logged steps {len(losses)}, the uninterrupted one {len(wanted)}"
    worst = max(abs(losses[s] - wanted[s]) / abs(wanted[s]) for s in wanted)
    if worst > 1e-5:
        return f"the finished run's losses differ from the uninterrupted run's (worst relative {worst:.2e})"
    ending = (f"{checked} restarts (the final one too) checked to resume from the newest intact checkpoint; at most "
              f"{most_sets} checkpoints on disk; the finished run's {len(wanted)} step losses equal the uninterrupted "
              f"run's (worst relative difference {worst:.1e})")
    if sig == signal.SIGKILL:
        print(f"{trials} kills: {ending}")
    else:
        print(f"{trials} SIG{signal_name}s ({tally['double']} followed by a second, {tally['hit']} of those before it "
              f"had exited): {tally['saved']} stopped with 'interrupted at step N', exit {code} and that step intact "
              f"on disk, {tally['start-up']} in start-up exited non-zero without a traceback, {tally['finished']} had "
              f"finished; {tally['exact']} restarts resumed at the step saved; {ending}")
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signal", choices=list(SIGNALS), default="KILL",
                        help="KILL (kill -9), TERM (preemption) or INT (Ctrl-C)")
    parser.add_argument("--trials", type=int, default=20, help="how many times to signal the run")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the run (336 steps each)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the signal times")
    args = parser.parse_args(argv)
    return run_stress("stress_kill_", lambda workdir: stress(args.trials, args.epochs, args.seed, workdir,
                                                             args.signal))


def run_stress(prefix, stress_in):
    """Runs stress_in(workdir) in a temporary folder removed afterwards; a failure is printed as FAILED: ... and
    exits 1."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    try:
        failure = stress_in(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        print(f"FAILED: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
