"""Cluster mode: TensorFlow's own distributed runtime, as TF1 used it.

One `tf.distribute.Server` per task of a `ClusterSpec`: parameter servers (`ps`) hold the variables, placed there by
`replica_device_setter`; workers build the same graph, train on their own shard of the data and send gradients.
Synchronous training wraps the optimizer in `SyncReplicasOptimizer` (one global step = the gradients of every
worker, averaged); asynchronous training lets each worker apply its own. Worker 0 is the chief: it initialises or
restores the variables, writes checkpoints, summaries and the run directory's JSON files, and evaluates.

This module holds what is about processes and hosts (roles, servers, the parameter-server loop, the one-machine
launcher); train.py's `fit_cluster` is the run loop of a worker.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple

from config import ConfigError


class Role(NamedTuple):
    """This process's place in the cluster."""
    ps_hosts: list  # host:port of each parameter server
    worker_hosts: list  # host:port of each worker; worker 0 is the chief
    job_name: str  # "ps" or "worker"
    task_index: int
    sync: bool  # SyncReplicasOptimizer (True) or asynchronous updates

    @property
    def num_workers(self):
        return len(self.worker_hosts)

    @property
    def is_chief(self):
        return self.job_name == "worker" and self.task_index == 0

    @property
    def device(self):
        return f"/job:{self.job_name}/task:{self.task_index}"

    def spec(self, tf):
        return tf.train.ClusterSpec({"ps": self.ps_hosts, "worker": self.worker_hosts})


def role_from_args(args):
    """The Role of the cluster flags, or None for a single-process run; ConfigError names a bad flag."""
    given = [args.ps_hosts, args.worker_hosts, args.job_name]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError("cluster mode needs all of --ps_hosts, --worker_hosts and --job_name")
    ps_hosts, worker_hosts = split_hosts("--ps_hosts", args.ps_hosts), split_hosts("--worker_hosts", args.worker_hosts)
    count = len(ps_hosts) if args.job_name == "ps" else len(worker_hosts)
    if not 0 <= args.task_index < count:
        raise ConfigError(f"--task_index: must be in [0, {count}) for --job_name {args.job_name}, "
                          f"got {args.task_index}")
    return Role(ps_hosts, worker_hosts, args.job_name, args.task_index, args.replicas == "sync")


def split_hosts(flag, text):
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{flag}: '{host}' is not host:port (port 1-65535)")
    if not hosts:
        raise ConfigError(f"{flag}: no hosts given")
    return hosts


def start_server(tf, role):
    address = (role.ps_hosts if role.job_name == "ps" else role.worker_hosts)[role.task_index]
    try:
        return tf.distribute.Server(role.spec(tf), job_name=role.job_name, task_index=role.task_index)
    except (tf.errors.OpError, RuntimeError, ValueError) as e:
        first_line = (str(e).strip().splitlines() or ["?"])[0]
        raise ConfigError(f"{role.job_name} {role.task_index}: cannot serve on {address} ({first_line[:160]})") \
            from None


def session_config(tf, base, role):
    """The worker's ConfigProto: it talks to the parameter servers and itself only, so it does not wait for (or
    depend on) the other workers being up."""
    base.device_filters.extend(["/job:ps", role.device])
    return base


def session_creator(tf, role, scaffold, master, config, checkpoint_dir):
    """The chief initialises the variables or restores them from checkpoint_dir; another worker waits until the
    chief has done so, checking every second (MonitoredTrainingSession's workers check every 30 s)."""
    if role.is_chief:
        return tf.train.ChiefSessionCreator(scaffold, master, config, checkpoint_dir=checkpoint_dir)

    class PromptWorkerSessionCreator(tf.train.SessionCreator):
        def create_session(self):
            scaffold.finalize()
            manager = tf.train.SessionManager(local_init_op=scaffold.local_init_op, ready_op=scaffold.ready_op,
                                              ready_for_local_init_op=scaffold.ready_for_local_init_op,
                                              graph=tf.get_default_graph(), recovery_wait_secs=1)
            return manager.wait_for_session(master, config=config, max_wait_secs=30 * 60)

    return PromptWorkerSessionCreator()


def quiet_queue_runner_shutdown(tf):
    """SyncReplicasOptimizer's token queue runner is blocked waiting for gradients when the chief closes its session,
    and its thread then prints the resulting CancelledError as an uncaught exception: expected at shutdown, so kept
    off the console. Any other thread exception is reported as usual."""
    import threading
    previous = threading.excepthook

    def hook(args):
        if not (issubclass(args.exc_type, tf.errors.CancelledError) and args.thread is not None
                and args.thread.name.startswith("QueueRunnerThread")):
            previous(args)
    threading.excepthook = hook


def done_queues(tf, role):
    """One queue per parameter server on which every worker puts a token when it has finished: the parameter server
    exits once it has one from each worker (a TF1 cluster has no other way to tell it training is over)."""
    queues = []
    for k in range(len(role.ps_hosts)):
        with tf.device(f"/job:ps/task:{k}"):
            queues.append(tf.FIFOQueue(role.num_workers, tf.int32, shapes=[[]], shared_name=f"done_queue_{k}"))
    return queues


def serve_ps(role):
    """A parameter server: serves variables until every worker has said it is done."""
    import rnn_model as rm
    tf = rm.tf
    server = start_server(tf, role)
    print(f"ps {role.task_index}: serving on {role.ps_hosts[role.task_index]}", flush=True)
    graph = tf.Graph()
    with graph.as_default():
        wait = done_queues(tf, role)[role.task_index].dequeue_many(role.num_workers)
    with tf.Session(server.target, graph=graph) as sess:
        sess.run(wait)
    print(f"ps {role.task_index}: all {role.num_workers} workers are done", flush=True)
    return 0


# --------------------------------------------------------------------------------------------------- one machine

def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_all(processes, seconds):
    """True if every process has exited within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if all(p.poll() is not None for p in processes):
            return True
        time.sleep(0.1)
    return False


def launch_local(script, argv, num_workers, run_dir, replicas="sync", timeout=None):
    """Starts 1 parameter server and num_workers workers of `script` on free 127.0.0.1 ports, waits for the workers,
    and always stops every process it started. The chief prints to this console; the others log to run_dir/logs/.
    Returns the first non-zero worker exit code (0 when all succeeded)."""
    if num_workers < 1:
        raise ConfigError(f"--local_cluster: needs at least 1 worker, got {num_workers}")
    ports = free_ports(num_workers + 1)
    hosts = ["--ps_hosts", f"127.0.0.1:{ports[0]}",
             "--worker_hosts", ",".join(f"127.0.0.1:{p}" for p in ports[1:]), "--replicas", replicas]
    log_dir = os.path.join(run_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    processes, logs = [], []

    def start(job, index):
        command = [sys.executable, script, *argv, *hosts, "--job_name", job, "--task_index", str(index)]
        if job == "worker" and index == 0:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL)
        log = open(os.path.join(log_dir, f"{job}_{index}.log"), "w")
        logs.append(log)
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    print(f"local cluster: 1 ps + {num_workers} workers on 127.0.0.1 ports {', '.join(map(str, ports))} "
          f"({replicas}); logs of the ps and of workers 1.. in {log_dir}", flush=True)
    previous_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the children
    try:
        ps = start("ps", 0)
        processes.append(ps)
        workers = [start("worker", k) for k in range(num_workers)]
        processes += workers
        deadline = time.time() + timeout if timeout else None
        while any(w.poll() is None for w in workers):
            failed = [k for k, w in enumerate(workers) if w.poll()]
            if failed:
                print(f"error: worker {failed[0]} exited with code {workers[failed[0]].returncode} (see "
                      f"{os.path.join(log_dir, f'worker_{failed[0]}.log') if failed[0] else 'above'}); "
                      "stopping the cluster", file=sys.stderr)
                return workers[failed[0]].returncode
            if ps.poll() is not None and not wait_all(workers, 10):
                print(f"error: the parameter server exited early (see {os.path.join(log_dir, 'ps_0.log')}); "
                      "stopping the cluster", file=sys.stderr)
                return 1
            if deadline and time.time() > deadline:
                print(f"error: the cluster did not finish within {timeout} s; stopping it", file=sys.stderr)
                return 1
            time.sleep(0.2)
        code = next((w.returncode for w in workers if w.returncode), 0)
        if code == 0:
            ps.wait(timeout=60)  # the ps exits by itself once every worker has signalled
        return code
    except KeyboardInterrupt:
        for process in processes[1:]:
            process.send_signal(signal.SIGINT)
        for process in processes[1:]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
