"""kill -9 at random moments, N times, then let the run finish: every restart must resume from the newest intact
checkpoint, the disk must hold at most 3 latest checkpoints (4 while a save is cut short), and the finished run's
losses must equal an uninterrupted run's, step for step.

    python tests/stress_kill.py [--trials N] [--epochs E] [--seed S]

Each trial starts train.py on a tiny language model that saves every 20 steps and kills it with SIGKILL: one time in
5 during start-up, otherwise a random 0 to 2.5 s into training (steps, saves and validation). Prints one line per
trial and a summary; exits 1 on the first broken promise.
"""
import argparse
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


def train_command(run, epochs):
    return [sys.executable, os.path.join(ROOT, "train.py"), *ARGS, "--max_max_epoch", str(epochs), "--run_dir", run]


def intact_steps(run):
    """Steps of the checkpoints that read back whole and finite, newest first."""
    import run_dir
    folder = run_dir.RunDir(run)
    return [int(prefix.rsplit("-", 1)[1]) for prefix in folder.resume_candidates()
            if run_dir.checkpoint_problem(prefix) is None]


def stress(trials, epochs, seed, workdir):
    from conftest import event_scalars
    rng = random.Random(seed)
    reference, run = os.path.join(workdir, "reference"), os.path.join(workdir, "killed")
    subprocess.run(train_command(reference, epochs), check=True, capture_output=True, stdin=subprocess.DEVNULL)
    checked, most_sets = 0, 0
    for trial in range(trials):
        expected = intact_steps(run)[:1]
        log_path = os.path.join(workdir, f"trial_{trial}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(train_command(run, epochs), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
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
            process.send_signal(signal.SIGKILL)
            process.wait()
        output = open(log_path).read()
        resumed = re.search(r"resuming at step (\d+) ", output)
        if expected and resumed:
            checked += 1
            if int(resumed.group(1)) != expected[0]:
                return f"trial {trial}: resumed at step {resumed.group(1)}, the newest intact is {expected[0]}"
        if "Traceback" in output:
            return f"trial {trial}: a traceback in the output (see {log_path})"
        sets = len([name for name in os.listdir(os.path.join(run, "checkpoints"))
                    if name.endswith(".index")]) if os.path.isdir(os.path.join(run, "checkpoints")) else 0
        most_sets = max(most_sets, sets)
        if sets > 4:
            return f"trial {trial}: {sets} checkpoints on disk"
        print(f"trial {trial}: killed after {delay:.1f} s{' (it had finished)' if finished else ''}; "
              f"{'resumed at step ' + resumed.group(1) if resumed else 'no resume line yet'}; "
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
    leftovers = [name for name in os.listdir(os.path.join(run, "checkpoints")) if "tmp" in name or "temp" in name]
    if leftovers:
        return f"temporary files left: {leftovers}"
    losses, wanted = (event_scalars(os.path.join(folder, "train"), "metrics/loss") for folder in (run, reference))
    if sorted(losses) != sorted(wanted):
        return f"the finished run logged steps {len(losses)}, the uninterrupted one {len(wanted)}"
    worst = max(abs(losses[s] - wanted[s]) / abs(wanted[s]) for s in wanted)
    if worst > 1e-5:
        return f"the finished run's losses differ from the uninterrupted run's (worst relative {worst:.2e})"
    print(f"{trials} kills: {checked} restarts (the final one too) checked to resume from the newest intact "
          f"checkpoint; at most {most_sets} checkpoints on disk; the finished run's {len(wanted)} step losses "
          f"equal the uninterrupted run's (worst relative difference {worst:.1e})")
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="how many times to kill the run")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the run (336 steps each)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="stress_kill_")
    try:
        failure = stress(args.trials, args.epochs, args.seed, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        print(f"FAILED: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
