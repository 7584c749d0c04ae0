"""Cluster mode on 127.0.0.1: 1 ps + 2 workers train and checkpoint, sync steps, a worker killed and restarted.

Every process is started with a timeout and killed in a finally block, so a failing test leaves nothing running.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import cluster
import data_handler
import train
from conftest import ROOT, clearly_above_chance, one_line_error, run_cli

TIMEOUT = 240


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """About 6,000 words of the embedded default: a 2-worker epoch of the test config is ~70 steps per worker."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    text = data_handler.embedded_text()
    path.write_text(text[:40000])
    return path


def cluster_args(run_dir, corpus, *extra):
    return ["--config", "test", "--data", str(corpus), "--run_dir", str(run_dir), "--max_max_epoch", "2",
            "--vocab_size", "2000", "--hidden_size", "16", "--summary_every", "5", *extra]


def test_local_cluster_trains_checkpoints_and_matches_a_single_process_run(tiny_corpus, tmp_path):
    single, distributed = tmp_path / "single", tmp_path / "cluster"
    assert train.main(cluster_args(single, tiny_corpus)) == 0
    result = run_cli("train.py", *cluster_args(distributed, tiny_corpus), "--local_cluster", "2", timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "ps 0: all 2 workers are done" in (distributed / "logs" / "ps_0.log").read_text()

    results = json.loads((distributed / "results.json").read_text())
    single_results = json.loads((single / "results.json").read_text())
    batches_per_worker = int(re.search(r"; (\d+) batches per epoch", result.stdout).group(1))
    # Synchronous: one global step per aggregated update of both workers, so an epoch is one shard's batches.
    last_step = 2 * batches_per_worker
    assert results["cluster"] == {"workers": 2, "replicas": "sync", "global_step": results["cluster"]["global_step"]}
    assert 0.9 * last_step <= results["cluster"]["global_step"] <= last_step
    # The loss falls as in the single-process run: far below the untrained model, and close to the single run.
    untrained = 2000  # perplexity of a uniform guess over the vocabulary
    assert results["valid"]["perplexity"] < 0.5 * untrained
    assert results["valid"]["perplexity"] < 1.3 * single_results["valid"]["perplexity"]

    assert (distributed / "checkpoints" / "checkpoint").exists()
    assert list((distributed / "train").glob("events.*")) and list(distributed.glob("events.*"))
    # runtime.json records the cluster: the same command again answers before starting one, and a single process
    # (or another cluster) is refused, for its global step would count other batches.
    assert json.loads((distributed / "runtime.json").read_text()) == {"cluster": {"workers": 2, "replicas": "sync"}}
    again = run_cli("train.py", *cluster_args(distributed, tiny_corpus), "--local_cluster", "2", timeout=TIMEOUT)
    assert again.returncode == 0 and "complete, nothing left to train" in again.stdout
    assert "local cluster:" not in again.stdout
    assert "a single process (it trained in a cluster of 2 workers (sync)) would train nothing" in one_line_error(
        run_cli("train.py", *cluster_args(distributed, tiny_corpus)))
    assert json.loads((single / "runtime.json").read_text()) == {"cluster": None}
    sampled = run_cli("sample.py", "--run_dir", str(distributed), "--length", "20", "--seed", "3", timeout=120)
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.split()) >= 15


def start(args, log):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=ROOT)


def test_a_killed_worker_restarts_and_the_run_finishes(tiny_corpus, tmp_path):
    ports = cluster.free_ports(3)
    hosts = ["--ps_hosts", f"127.0.0.1:{ports[0]}", "--worker_hosts", f"127.0.0.1:{ports[1]},127.0.0.1:{ports[2]}"]
    run_dir = tmp_path / "run"
    args = cluster_args(run_dir, tiny_corpus, "--max_max_epoch", "3", *hosts)
    logs = {name: open(tmp_path / f"{name}.log", "w+") for name in ("ps", "chief", "worker", "worker_again")}
    processes = []
    try:
        processes.append(start([*args, "--job_name", "ps"], logs["ps"]))
        chief = start([*args, "--job_name", "worker", "--task_index", "0"], logs["chief"])
        worker = start([*args, "--job_name", "worker", "--task_index", "1"], logs["worker"])
        processes += [chief, worker]
        deadline = time.time() + TIMEOUT
        while "epoch 1/3" not in (tmp_path / "worker.log").read_text():  # well into the run, not finished
            assert time.time() < deadline and worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        again = start([*args, "--job_name", "worker", "--task_index", "1"], logs["worker_again"])
        processes.append(again)
        assert chief.wait(timeout=max(deadline - time.time(), 1)) == 0, (tmp_path / "chief.log").read_text()[-3000:]
        assert again.wait(timeout=60) == 0, (tmp_path / "worker_again.log").read_text()[-3000:]
        assert processes[0].wait(timeout=60) == 0  # the ps exits once both (live) workers are done
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs.values():
            log.close()
    rejoined = (tmp_path / "worker_again.log").read_text()
    assert "resuming at step" in rejoined  # said only past step 0: it joined the run where it was
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"]["perplexity"] < 1000
    assert "best checkpoint (step" in (tmp_path / "chief.log").read_text()


@pytest.mark.parametrize("replicas", ["sync", "async"])
def test_the_classifier_trains_in_cluster_mode(tmp_path, replicas):
    from test_classify import classify_args, write_labelled
    data = write_labelled(tmp_path / "train.txt", 600, seed=0)
    run_dir = tmp_path / replicas
    result = run_cli("train.py", *classify_args(run_dir, "--data", str(data), "--max_max_epoch", "3"),
                     "--local_cluster", "2", "--replicas", replicas, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "note: cluster mode trains every epoch of the schedule (the config's patience 3" in result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["cluster"]["replicas"] == replicas and results["stopped"]["epochs_trained"] == 3
    assert results["test"]["examples"] == 60
    assert clearly_above_chance(results["test"]["accuracy"], 60, classes=3)
    labelled = run_cli("sample.py", "--run_dir", str(run_dir), "--text", "goal team match score", timeout=120)
    assert labelled.returncode == 0 and labelled.stdout.split("\t")[0] in ("sport", "food", "tech")


def test_cluster_flags_are_checked(tmp_path):
    base = ["--config", "test", "--run_dir", str(tmp_path / "r")]
    assert "--patience: early stopping runs in a single process" in one_line_error(
        run_cli("train.py", *base, "--patience", "2", "--local_cluster", "2"))
    assert "needs all of --ps_hosts" in one_line_error(run_cli("train.py", *base, "--job_name", "worker"))
    assert "'nohost' is not host:port" in one_line_error(run_cli(
        "train.py", *base, "--ps_hosts", "nohost", "--worker_hosts", "127.0.0.1:1", "--job_name", "worker"))
    assert "--task_index: must be in [0, 1)" in one_line_error(run_cli(
        "train.py", *base, "--ps_hosts", "127.0.0.1:1", "--worker_hosts", "127.0.0.1:2", "--job_name", "worker",
        "--task_index", "1"))
    assert not os.path.exists(tmp_path / "r" / "checkpoints")
