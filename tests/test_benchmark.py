"""The benchmark in smoke mode (tiny shapes, a few steps), so that it cannot rot; its numbers are not asserted."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def test_benchmark_smoke_mode_prints_every_measurement():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--smoke", "--no_torch"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cpu: ") and "cores; bfloat16 instructions:" in lines[0]
    assert lines[1].split() == ["measurement", "min/s", "median/s", "max/s", "ms/step", "peak", "MB", "GFLOP/s"]
    labels = ["train small graphlstm float32 (words)", "train small graphlstm bfloat16 (words)"] + [
        f"products alone, {library} {precision} (steps)" for precision in ("float32", "bfloat16")
        for library in ("numpy", "tensorflow", "xla") if library != "numpy" or precision == "float32"] + [
        f"generate {loop} {precision}, {name} (steps)" for precision in ("float32", "bfloat16")
        for loop in ("xla", "plain")
        for name in ("sampling", "top-p 0.9", "4 samples", "beam 4", "8 samples", "beam 8")]
    for label in labels:
        row = next(line for line in lines if line.startswith(label))
        numbers = [float(n.replace(",", "")) for n in re.findall(r"[\d,]+\.?\d*", row[len(label):])]
        assert len(numbers) >= 5 and numbers[0] <= numbers[1] <= numbers[2] and numbers[0] > 0, row
    assert sum(line.startswith("limit ") and " steps/s at batch 1 " in line for line in lines) == 2
    for generator in ("auto", "plain", "xla"):
        row = next(line for line in lines if line.startswith(f"sample.py --length 20 --generator {generator} "))
        assert float(row.split()[5]) > 0, row
    importing = next(line for line in lines if line.startswith("import tensorflow "))
    assert float(importing.split()[-1]) > 0
    assert any(line.startswith("fast start: the default at 20 chars took ") for line in lines)
    assert lines[-1] == "pytorch: skipped (--no_torch), no ratio"


def test_benchmark_smoke_mode_with_pytorch_prints_the_ratios_last():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-3:] == [line for line in lines if line.startswith("ratio ")]
    assert [line.split(":")[0] for line in lines[-3:]] == [
        "ratio graphlstm / pytorch, train small float32", "ratio graphlstm / pytorch, train small bfloat16",
        "ratio graphlstm bfloat16 / pytorch float32, train small"]
    assert all(float(line.split(": ")[1].rstrip("x")) > 0 for line in lines[-3:])


@pytest.mark.parametrize("args,message", [(["--configs", "tiny"], "--configs: unknown config 'tiny'"),
                                          (["--precisions", "float16"], "--precisions: expected float32"),
                                          (["--set", "hidden_size=big"], "--set hidden_size=big: --hidden_size"),
                                          (["--repeats", "0"], "--repeats: must be at least 1")])
def test_benchmark_reports_bad_arguments_in_one_line(args, message):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def test_profile_step_attributes_op_time_to_the_model_parts():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_step.py"), "--config", "test",
                           "--vocab", "50", "--warmup", "1", "--set", "num_layers=2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stdout.split("\npart")[1]
    for part in ("layer_0 forward: time loop", "layer_1 backward: time loop", "softmax and loss forward",
                 "softmax and loss backward", "clipping and optimizer"):
        assert part in parts, done.stdout
    shares = [float(line.rsplit(None, 1)[1].rstrip("%")) for line in parts.splitlines()[1:] if line.strip()]
    assert 99 < sum(shares) < 101
