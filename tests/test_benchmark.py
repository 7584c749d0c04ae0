"""The benchmark in smoke mode (tiny shapes, a few steps), so that it cannot rot; its numbers are not asserted."""
import re
import subprocess
import sys

from conftest import ROOT


def test_benchmark_smoke_mode_prints_every_measurement():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "benchmark.py"), "--smoke", "--no_torch"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["measurement", "min/s", "median/s", "max/s", "ms/step", "peak", "MB", "GFLOP/s"]
    labels = ["train small graphlstm (words)", "train small graphlstm +xla (words)",
              "generate 2x512 loop+xla (chars)", "generate 2x512 loop (chars)", "generate 2x512 run/token (chars)"]
    for label in labels:
        row = next(line for line in lines if line.startswith(label))
        numbers = [float(n.replace(",", "")) for n in re.findall(r"[\d,]+\.?\d*", row[len(label):])]
        assert len(numbers) >= 5 and numbers[0] <= numbers[1] <= numbers[2] and numbers[0] > 0, row
    assert lines[-1] == "pytorch: skipped (--no_torch), no ratio"
