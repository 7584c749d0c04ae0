"""Shared helpers and fixtures: command-line runs, event-file reading, one trained language model per session."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def event_scalars(folder, tag):
    """{step: value} of one scalar tag over every event file in a folder (later files win, as in TensorBoard)."""
    from tf1 import tf
    values = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*"), key=os.path.getmtime):
        try:
            for event in tf.train.summary_iterator(str(path)):
                if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                    values = {s: v for s, v in values.items() if s <= event.step}
                for value in event.summary.value:
                    if value.tag == tag:
                        values[event.step] = value.simple_value
        except tf.errors.DataLossError:
            pass  # the last record of a killed process's file, cut short (TensorBoard skips it too)
    return values


def native_bfloat16():
    """Whether the CPU computes bfloat16 products in hardware (AMX or AVX512-BF16), where oneDNN uses them."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def clearly_above_chance(accuracy, examples, classes, sigmas=4):
    """Whether an accuracy on `examples` test examples is beyond what guessing among `classes` reaches, by `sigmas`
    binomial standard deviations (a guesser passes 4 sigmas about once in 30,000 runs)."""
    chance = 1 / classes
    return accuracy > chance + sigmas * (chance * (1 - chance) / examples) ** 0.5


def tiny_lm_args(run_dir, *extra):
    # A real corpus (the embedded default) with a tiny model: a few hundred steps a second.
    return ["--config", "small", "--run_dir", str(run_dir), "--hidden_size", "16", "--num_layers", "2",
            "--num_steps", "8", "--batch_size", "16", "--vocab_size", "500", "--max_max_epoch", "1",
            "--summary_every", "1", *extra]


def run_cli(script, *args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(result):
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def trained_lm(tmp_path_factory):
    """One short word-level run on the embedded default, shared by the tests that only read its outputs."""
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    import train
    assert train.main(tiny_lm_args(run_dir, "--max_max_epoch", "3", "--max_epoch", "1", "--keep_prob", "0.9")) == 0
    return run_dir


class Blocked(Exception):
    """Not an OSError, so that no reader's handler can turn it into an error message."""


@pytest.fixture
def no_hang():
    """Fails a test that blocks (opening a FIFO waits for a writer) instead of hanging the suite."""
    def blocked(signum, frame):
        raise Blocked("blocked for 20 s: a FIFO was opened")
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
