"""Where training runs: in this one process (LocalRuntime), or on TensorFlow's own distributed runtime as TF1 used
it (ClusterRuntime). train.py's one epoch loop runs on either; a runtime supplies what differs between them: the
graph's placement, the session, the worker's shard of the data and whether this process does the chief's work.

One `tf.distribute.Server` per task of a `ClusterSpec`: parameter servers (`ps`) hold the variables, placed there by
`replica_device_setter`; workers build the same graph, train on their own shard of the data and send gradients.
Synchronous training wraps the optimizer in `SyncReplicasOptimizer` (one global step = the gradients of every
worker, averaged); asynchronous training lets each worker apply its own. Worker 0 is the chief: it initialises or
restores the variables, writes checkpoints, summaries and the run directory's JSON files, and evaluates.

This module also holds what is about processes and hosts: roles, servers, the parameter-server loop and the
one-machine launcher.
"""
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

import chief
import stopping
from config import UserError


class LocalRuntime:
    """One process on all of the data: the graph on the config's device, a plain session, every chief duty."""
    is_chief = True  # saves checkpoints, writes summaries and results, evaluates
    workers_per_step = 1  # batches consumed by one global step
    allows_buckets = True  # a classifier may have one training graph per bucket width
    cluster = None  # what the run directory records of the runtime (runtime.json): a single process

    def __init__(self, cfg):
        self.cfg = cfg
        self.worker_device = "/gpu:0" if cfg.device == "gpu" else "/cpu:0"

    def shard(self, items):
        return items

    def wrap_optimizer(self, optimizer):
        return optimizer

    @contextlib.contextmanager
    def building(self):
        """`with runtime.building() as graph:` builds the one graph of the run, then finalizes it."""
        from tf1 import tf
        graph = tf.Graph()
        with graph.as_default(), tf.device(self.worker_device):
            tf.set_random_seed(self.cfg.seed)
            yield graph
        graph.finalize()  # from here on nothing may add an op: the run loop only runs the graph

    @contextlib.contextmanager
    def session(self, graph, prepare):
        """A session whose variables prepare(sess) has restored or initialised."""
        import rnn_model as rm
        from tf1 import tf
        if self.cfg.device == "gpu" and not rm.gpu_available():
            print("warning: --device gpu but no GPU is visible; running on the CPU", file=sys.stderr)
        with tf.Session(graph=graph, config=rm.session_config(self.cfg)) as sess:
            prepare(sess)
            yield sess

    def describe(self, global_step):
        return None

    def duties(self, cfg, g, sess, run, stop, resumed_at):
        """What this process does besides training: all the chief's work."""
        return chief.Chief(cfg, g, sess, run, stop, resumed_at)


class ClusterRuntime:
    """One worker of a cluster: variables on the parameter servers (replica_device_setter), a session on this
    worker's server, its shard of the training data. The chief (worker 0) initialises or restores the variables and
    does the chief's work; another worker waits until the variables are ready, then trains. With sync,
    SyncReplicasOptimizer averages one gradient of every worker per global step."""

    def __init__(self, cfg, role):
        self.cfg, self.role = cfg, role
        self.is_chief = role.is_chief
        self.workers_per_step = 1 if role.sync else role.num_workers
        self.allows_buckets = not role.sync  # SyncReplicasOptimizer applies the gradients of one train op only
        self.worker_device = role.device
        self.cluster = shape(role.num_workers, role.sync)  # what the run directory records (runtime.json)
        self.server = None  # this process's tf.distribute.Server, started when the graph is built
        self.optimizer = None  # the wrapped optimizer (SyncReplicasOptimizer with sync)
        self.ops = None  # ClusterOps, built with the graph

    def shard(self, items):
        """A worker's share of the training data: a contiguous slice of a token stream (so that batches still
        continue row by row), every N-th example of a list of sentences."""
        index, count = self.role.task_index, self.role.num_workers
        if isinstance(items, np.ndarray):
            return items[index * len(items) // count:(index + 1) * len(items) // count]
        return tuple(part[index::count] for part in items)  # (sentences, labels)

    def wrap_optimizer(self, optimizer):
        from tf1 import tf
        if self.role.sync:
            optimizer = tf.train.SyncReplicasOptimizer(optimizer, replicas_to_aggregate=self.role.num_workers,
                                                       total_num_replicas=self.role.num_workers)
        self.optimizer = optimizer
        return optimizer

    @contextlib.contextmanager
    def building(self):
        from tf1 import tf
        self.server = start_server(tf, self.role)
        graph = tf.Graph()
        placement = tf.train.replica_device_setter(worker_device=self.role.device, cluster=self.role.spec(tf))
        with graph.as_default(), tf.device(placement):
            tf.set_random_seed(self.cfg.seed)
            yield graph
            self.ops = build_cluster_ops(tf, self.role, self.optimizer)
        graph.finalize()

    @contextlib.contextmanager
    def session(self, graph, prepare):
        import rnn_model as rm
        from tf1 import tf
        config = rm.session_config(self.cfg)
        # The worker talks to the parameter servers and itself only, so it does not wait for the other workers.
        config.device_filters.extend(["/job:ps", self.role.device])
        if self.is_chief:
            sess = tf.Session(self.server.target, graph=graph, config=config)
            prepare(sess)
        else:
            manager = tf.train.SessionManager(local_init_op=self.ops.local_init, ready_op=self.ops.ready,
                                              ready_for_local_init_op=self.ops.ready, graph=graph,
                                              recovery_wait_secs=1)
            sess = manager.wait_for_session(self.server.target, config=config, max_wait_secs=30 * 60)
        wait_until_reachable(tf, sess, self.ops)
        coordinator = tf.train.Coordinator()
        if self.ops.sync_hook:
            quiet_queue_runner_shutdown(tf)
            self.ops.sync_hook.after_create_session(sess, coordinator)  # tokens, and the chief's queue runner
        try:
            yield sess
            if self.ops.release_workers is not None:
                try:
                    # A worker that leaves puts tokens in the queue that synchronous steps wait on: a worker whose
                    # gradient went stale while it waited (the chief during evaluation) is not left waiting.
                    sess.run(self.ops.release_workers)
                except (tf.errors.CancelledError, tf.errors.OutOfRangeError):
                    pass  # the chief has left and closed the token queue: a waiting worker's step ends with it
            sess.run(self.ops.done_signals)  # tells the parameter servers this worker is finished
        finally:
            coordinator.request_stop()
            sess.close()

    def duties(self, cfg, g, sess, run, stop, resumed_at):
        """The chief's work on the chief; the other workers only train."""
        return chief.Chief(cfg, g, sess, run, stop, resumed_at) if self.is_chief else chief.Worker(g.task)

    def describe(self, global_step):
        return {**self.cluster, "global_step": global_step}


class ClusterOps(NamedTuple):
    ready: object  # another worker's: names the global variables the chief has not yet initialised
    local_init: object  # this worker's own variables (the batch size, SyncReplicasOptimizer's local step)
    sync_hook: object  # SyncReplicasOptimizer's session hook, its ops built; None when async
    release_workers: object  # puts a token per worker into the sync token queue; None when async
    done_signals: list  # one enqueue per parameter server
    ping: object  # int32 placeholder on this worker
    pongs: list  # the ping's value read on each parameter server: they have reached this worker


def build_cluster_ops(tf, role, optimizer):
    sync_hook = release_workers = None
    if role.sync:
        sync_hook = optimizer.make_session_run_hook(role.is_chief)
        sync_hook.begin()
        release_workers = optimizer.get_init_tokens_op(role.num_workers)
    ready = None if role.is_chief else tf.report_uninitialized_variables(tf.global_variables())
    with tf.device(role.device):
        ping = tf.placeholder(tf.int32, [], name="ping")
    pongs = []
    for k in range(len(role.ps_hosts)):
        with tf.device(f"/job:ps/task:{k}"):
            pongs.append(tf.identity(ping, name=f"pong_{k}"))
    return ClusterOps(ready, tf.local_variables_initializer(), sync_hook, release_workers,
                      [queue.enqueue(1) for queue in done_queues(tf, role)], ping, pongs)


def wait_until_reachable(tf, sess, ops, seconds=60):
    """Waits until every parameter server can fetch a value from this worker. A worker's first fed value (the
    learning rate) is fetched by the parameter server that holds its variable; a server that tried this worker's
    address before it listened may refuse for a moment (gRPC backs off), which would end the run for nothing."""
    deadline = time.time() + seconds
    while True:
        try:
            sess.run(ops.pongs, {ops.ping: 1})
            return
        except tf.errors.UnavailableError:
            if time.time() > deadline:
                raise UserError(f"the parameter servers cannot reach this worker's address within {seconds} s "
                                "(is its port open to them?)") from None
            time.sleep(0.5)


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


def shape(workers, sync):
    """A cluster as its run directory records it (runtime.json, and results.json's "cluster" with the global step):
    a resumed run must train in the same one, for its global step to count the same batches."""
    return {"workers": workers, "replicas": "sync" if sync else "async"}


def add_arguments(parser):
    group = parser.add_argument_group("cluster (TensorFlow's distributed runtime; see README)")
    group.add_argument("--ps_hosts", help="comma-separated host:port of the parameter servers")
    group.add_argument("--worker_hosts", help="comma-separated host:port of the workers (worker 0 is the chief)")
    group.add_argument("--job_name", choices=("ps", "worker"), help="this process's job")
    group.add_argument("--task_index", type=int, default=0, help="this process's index within its job")
    group.add_argument("--replicas", choices=("sync", "async"), default="sync",
                       help="sync: SyncReplicasOptimizer aggregates every worker's gradients per step; async: each "
                            "worker applies its own")
    group.add_argument("--local_cluster", type=int, default=0, metavar="N",
                       help="start 1 parameter server and N workers on 127.0.0.1 and train with them")


def role_from_args(args):
    """The Role of the cluster flags, or None for a single-process run; UserError names a bad flag."""
    given = [args.ps_hosts, args.worker_hosts, args.job_name]
    if not any(given):
        return None
    if not all(given):
        raise UserError("cluster mode needs all of --ps_hosts, --worker_hosts and --job_name")
    ps_hosts, worker_hosts = split_hosts("--ps_hosts", args.ps_hosts), split_hosts("--worker_hosts", args.worker_hosts)
    count = len(ps_hosts) if args.job_name == "ps" else len(worker_hosts)
    if not 0 <= args.task_index < count:
        raise UserError(f"--task_index: must be in [0, {count}) for --job_name {args.job_name}, "
                          f"got {args.task_index}")
    return Role(ps_hosts, worker_hosts, args.job_name, args.task_index, args.replicas == "sync")


def cluster_config(cfg, argv, both_kinds):
    """The config of a cluster run: the keys only a single process runs are refused, or (the config's patience, not
    the user's) dropped with a note. both_kinds: --local_cluster given with the flags of a cluster's own process."""
    if cfg.cv:
        raise UserError("--cv: cross-validation runs in a single process, not in cluster mode")
    if cfg.pretrain_epochs:
        raise UserError("--pretrain_epochs: pretraining runs in a single process, not in cluster mode")
    if cfg.patience:
        if any(a == "--patience" or a.startswith("--patience=") for a in argv):
            raise UserError("--patience: early stopping runs in a single process; cluster workers follow the "
                            "schedule (set --max_max_epoch instead)")
        print(f"note: cluster mode trains every epoch of the schedule (the config's patience {cfg.patience} "
              "applies to single-process runs)", file=sys.stderr)
        cfg = dataclasses.replace(cfg, patience=0)
    if both_kinds:
        raise UserError("--local_cluster starts its own cluster: leave out --ps_hosts, --worker_hosts and "
                        "--job_name")
    return cfg


def split_hosts(flag, text):
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"{flag}: '{host}' is not host:port (port 1-65535)")
    if not hosts:
        raise UserError(f"{flag}: no hosts given")
    return hosts


def start_server(tf, role):
    address = (role.ps_hosts if role.job_name == "ps" else role.worker_hosts)[role.task_index]
    try:
        return tf.distribute.Server(role.spec(tf), job_name=role.job_name, task_index=role.task_index)
    except (tf.errors.OpError, RuntimeError, ValueError) as e:
        first_line = (str(e).strip().splitlines() or ["?"])[0]
        raise UserError(f"{role.job_name} {role.task_index}: cannot serve on {address} ({first_line[:160]})") \
            from None


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
    from tf1 import tf
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


def supervise(ps, workers, log_dir, timeout=None):
    """Waits for the workers; the first failure (a worker's non-zero exit, the parameter server gone, the timeout)
    is said in one line and returned as the exit code."""
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


def without_flag(argv, flag):
    """argv without `flag VALUE` / `flag=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def launch_local(script, argv, num_workers, run_dir, replicas="sync", timeout=None):
    """Starts 1 parameter server and num_workers workers of `script` on free 127.0.0.1 ports, waits for the workers,
    and always stops every process it started. The chief prints to this console; the others log to run_dir/logs/.
    Returns the first non-zero worker exit code (0 when all succeeded)."""
    if num_workers < 1:
        raise UserError(f"--local_cluster: needs at least 1 worker, got {num_workers}")
    ports = free_ports(num_workers + 1)
    hosts = ["--ps_hosts", f"127.0.0.1:{ports[0]}",
             "--worker_hosts", ",".join(f"127.0.0.1:{p}" for p in ports[1:]), "--replicas", replicas]
    log_dir = os.path.join(run_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    processes, logs = [], []

    def start(job, index):
        command = [sys.executable, script, *without_flag(argv, "--local_cluster"), *hosts, "--job_name", job,
                   "--task_index", str(index)]
        if job == "worker" and index == 0:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL)
        log = open(os.path.join(log_dir, f"{job}_{index}.log"), "a")  # a restarted cluster adds to its logs
        logs.append(log)
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    print(f"local cluster: 1 ps + {num_workers} workers on 127.0.0.1 ports {', '.join(map(str, ports))} "
          f"({replicas}); logs of the ps and of workers 1.. in {log_dir}", flush=True)
    try:
        ps = start("ps", 0)
        processes.append(ps)
        workers = [start("worker", k) for k in range(num_workers)]
        processes += workers
        return supervise(ps, workers, log_dir, timeout)
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM (train.py's StopRequest): the workers save, then stop
        code = stopping.exit_code(e)
        for process in processes[1:]:
            process.send_signal(code - 128)
        for process in processes[1:]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        return code
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
