"""Training and generation throughput of graphlstm, against PyTorch in the same run when torch is importable.

    python benchmarks/benchmark.py [--configs small,medium] [--precisions float32,bfloat16] [--repeats 5]
                                   [--steps 20] [--warmup 5] [--length 2000] [--xla off|on|both] [--set KEY=VALUE]
                                   [--no_torch] [--smoke] [--json FILE]

Training: the PTB configs on random token ids (vocabulary 10,000), through train.py's own training graph and the
language-model task's train_step (the graph, feeds and state carrying of a real run); warm-up steps are not timed;
each repeat times `--steps` steps. Every measurement runs in a fresh child process so that its peak resident memory
is its own. Each precision is measured for
both frameworks: float32, and bfloat16 mixed precision (graphlstm's --precision bfloat16; PyTorch's CPU autocast).
Generation: steps per second of sample.py's decoder for a 2-layer 512-unit character model (with and without XLA;
sampling, top-p, beams of 4 and 8 beside 4 and 8 samples), with random weights (speed does not depend on their
values), against the limit of this CPU at batch 1: the step's matrix products alone, each weight read once.

FLOP model (multiply-adds count 2): a token costs 2*(in + H)*4H per LSTM layer and 2*H*V for the softmax forward;
training costs 3x the forward (the backward pass computes two products per forward product). Elementwise work is
not counted, so GFLOP/s is a lower bound on the work done.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import config  # noqa: E402  (after the path insert)

VOCAB = 10000
GENERATION = dict(level="char", num_layers=2, hidden_size=512, vocab=65)


def flops_per_token(cfg, vocab_size, training=True):
    forward, in_size = 0, cfg.embedding_dim
    for _ in range(cfg.num_layers):
        forward += 2 * (in_size + cfg.hidden_size) * 4 * cfg.hidden_size
        in_size = cfg.hidden_size
    forward += 2 * cfg.hidden_size * vocab_size
    return 3 * forward if training else forward


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step, warmup, steps, repeats):
    """Seconds of each of `repeats` runs of `steps` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - began)
    return times


def random_lm_graph(cfg, vocab_size, num_batches):
    """train.py's training graph of a language model over random token ids, enough for num_batches batches."""
    import numpy as np
    import cluster
    import data_handler
    import train
    rng = np.random.RandomState(0)
    tokens = cfg.batch_size * (cfg.num_steps * (num_batches + 2) + 1)
    splits = {name: rng.randint(0, vocab_size, tokens).astype(np.int32) for name in ("train", "valid", "test")}
    vocab = data_handler.Vocab([f"w{i}" for i in range(vocab_size)])
    return train.build_training_graph(cfg, data_handler.TaskData(vocab, None, splits, {}),
                                      cluster.LocalRuntime(cfg))


def bench_train_tf(cfg, warmup, steps, repeats):
    g = random_lm_graph(cfg, VOCAB, warmup + steps * repeats)
    import rnn_model as rm
    from tf1 import tf
    with tf.Session(graph=g.graph, config=rm.session_config(cfg)) as sess:
        sess.run(g.init)
        batches = g.task.train_batches(0, 0)
        times = timed(lambda: g.task.train_step(sess, next(batches), False), warmup, steps, repeats)
    return times


def bench_train_torch(cfg, warmup, steps, repeats):
    import numpy as np
    import torch
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCAB, cfg.embedding_dim)
            self.dropout = torch.nn.Dropout(1 - cfg.keep_prob)
            self.lstm = torch.nn.LSTM(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers,
                                      dropout=1 - cfg.keep_prob if cfg.num_layers > 1 else 0.0)
            self.softmax = torch.nn.Linear(cfg.hidden_size, VOCAB)

        def forward(self, x, state):  # x [T, B]
            outputs, state = self.lstm(self.dropout(self.embedding(x)), state)
            return self.softmax(self.dropout(outputs)), state

    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    rng = np.random.RandomState(0)
    state = [torch.zeros(cfg.num_layers, cfg.batch_size, cfg.hidden_size) for _ in range(2)]

    # --precision bfloat16 is CPU autocast: matmuls (and nn.LSTM) in bfloat16, weights and the loss in float32.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16")

    def step():
        nonlocal state
        ids = torch.from_numpy(rng.randint(0, VOCAB, (cfg.num_steps + 1, cfg.batch_size)))
        with autocast:
            logits, new_state = model(ids[:-1], tuple(s.detach() for s in state))
        loss = loss_fn(logits.float().reshape(-1, VOCAB), ids[1:].reshape(-1)) / cfg.batch_size
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        state = new_state

    return timed(step, warmup, steps, repeats)


def generation_config(overrides):
    return config.apply_overrides(config.named_config("char"), dict(
        overrides, num_layers=GENERATION["num_layers"], hidden_size=GENERATION["hidden_size"]))


def generation_vocab():
    import string
    import data_handler
    return data_handler.Vocab(["<unk>", "\n"] + list(string.printable[:GENERATION["vocab"] - 2]))


def bench_generate(mode, length, num_samples, repeats, overrides, strategy=None):
    """Seconds of sample.py's decoding (sample.decode over the decoder's pieces) of `length` tokens."""
    import numpy as np
    import sample
    import rnn_model as rm
    from tf1 import tf
    cfg = generation_config(overrides)
    graph, decoders, _, tables, fresh = sample.generation_graph(cfg, generation_vocab(), [mode])
    model = decoders[mode]
    feed = {model.settings.prime: "To be", model.settings.seeds: np.arange(num_samples)}
    feed.update({getattr(model.settings, key): value for key, value in (strategy or {}).items()})
    with tf.Session(graph=graph, config=rm.session_config(cfg)) as sess:
        sess.run([tables, fresh])
        return timed(lambda: sample.decode(sess, model, feed, length), 1, 1, repeats)


def product_shapes(cfg):
    """The [in, out] weight matrices a generation step multiplies one row by: each layer's recurrent kernel (and
    above the first its input kernel; the first layer's input is a table lookup for characters), and the softmax."""
    hidden = cfg.hidden_size
    shapes = [(hidden, 4 * hidden)]
    shapes += [(hidden, 4 * hidden), (hidden, 4 * hidden)] * (cfg.num_layers - 1)
    return shapes + [(hidden, GENERATION["vocab"])]


def bench_products(library, precision, length, repeats):
    """Seconds of `length` generation steps' products alone (a row times every weight matrix, each result feeding
    the next so that nothing runs ahead): the rate at which this CPU streams the weights, the limit of decoding at
    batch 1. library: numpy (its BLAS), tensorflow (a tf.while_loop on the executor) or xla (that loop compiled)."""
    import numpy as np
    cfg = generation_config({"precision": precision})
    rng = np.random.RandomState(0)
    weights = [rng.uniform(-0.05, 0.05, shape).astype(np.float32) for shape in product_shapes(cfg)]
    if library == "numpy":
        def run():
            x = np.ones((1, cfg.hidden_size), np.float32)
            for _ in range(length):
                for w in weights:
                    y = x @ w
                    x = y[:, :cfg.hidden_size] if y.shape[1] >= cfg.hidden_size else x + y[:, :1]
        return timed(run, 1, 1, repeats)
    import decoder
    import lstm
    import rnn_model as rm
    from tf1 import tf
    dtype = lstm.compute_dtype(cfg)
    with tf.Graph().as_default():
        variables = [tf.Variable(w) for w in weights]
        kernels = [tf.identity(v) for v in variables]  # as the decoder passes its weights

        def loop(*kernels):
            kernels = [tf.cast(k, dtype) for k in kernels]

            def body(t, x):
                for k in kernels:
                    y = product(x, k)
                    x = y[:, :cfg.hidden_size] if k.shape[1] >= cfg.hidden_size else x + y[:, :1]
                return t + 1, x
            return tf.while_loop(lambda t, _: t < length, body, [0, tf.ones([1, cfg.hidden_size])])[1]
        product = decoder.product_for(cfg, jit=library == "xla")  # the decoder's own product
        if library == "xla":
            loop = tf.function(loop, jit_compile=True, autograph=False)
        out = loop(*kernels)
        with tf.Session(config=rm.session_config(cfg)) as sess:
            sess.run(tf.global_variables_initializer())
            return timed(lambda: sess.run(out), 1, 1, repeats)


def generation_run(folder, overrides):
    """A run directory holding a 2x512 character model with random weights, for sample.py end to end."""
    import checkpoints
    import sample
    from tf1 import tf
    import run_dir
    import summaries
    cfg = generation_config(overrides)
    vocab = generation_vocab()
    run = run_dir.RunDir(folder)
    run.save_config_and_vocab(cfg, vocab)
    graph, _, saver, _, fresh = sample.generation_graph(cfg, vocab)
    with tf.Session(graph=graph) as sess:
        sess.run(fresh)
        summaries.write_projector_pointer(run, checkpoints.RunCheckpoints(run).save_latest(sess, saver, 0))
    return run


def seconds_of(command, repeats, env):
    """Median wall seconds of a fresh process running command."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - began)
        if done.returncode:
            raise RuntimeError(f"{command}: failed:\n{done.stderr[-3000:]}")
    return statistics.median(times)


def end_to_end(lengths, repeats, overrides, env, rates):
    """Wall seconds of `python sample.py --length L --generator G` (TensorFlow's import, the graph, the restore and
    the generation) on a random 2x512 character model, beside `python -c "import tensorflow"`; then how the default
    compares with the import plus the fastest path's generation time at the measured steady rates."""
    import tempfile
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # this process builds the model: TensorFlow quiet, as below
    import sample
    with tempfile.TemporaryDirectory() as folder:
        run = generation_run(folder, overrides)
        importing = seconds_of([sys.executable, "-c", "import tensorflow"], repeats, env)
        print(f"{'end to end (fresh process)':<46} {'seconds':>10}")
        print(f"{'import tensorflow':<46} {importing:>10.2f}")
        base = [sys.executable, "sample.py", "--run_dir", run.path]
        seconds_of(base + ["--length", "1"], 1, env)  # auto's one-time timing, kept in the run directory
        speed = run.load_generation_speed()
        for length in lengths:
            for generator in sample.GENERATORS:
                seconds = seconds_of(base + ["--length", str(length), "--generator", generator], repeats, env)
                chosen = f" (took {sample.choose_generator('auto', speed, speed['machine'], length)[0]})" \
                    if generator == "auto" else ""
                print(f"{f'sample.py --length {length} --generator {generator}':<46} {seconds:>10.2f}{chosen}")
                if generator == "auto":
                    fastest = min(length / rate for rate in rates.values())
                    print(f"fast start: the default at {length} chars took {seconds / (importing + fastest):.2f}x "
                          f"(import {importing:.2f} s + fastest path's generation {fastest:.2f} s)")


def child(spec):
    """Runs one measurement (in its own process) and prints its JSON."""
    kind, name, framework = spec["kind"], spec["name"], spec["framework"]
    if kind == "train":
        cfg = config.apply_overrides(config.named_config(name), spec.get("overrides", {}))
        bench = bench_train_tf if framework == "tf" else bench_train_torch
        times = bench(cfg, spec["warmup"], spec["steps"], spec["repeats"])
        items = cfg.batch_size * cfg.num_steps * spec["steps"]
        result = {"rates": [items / t for t in times], "ms_per_step": [1000 * t / spec["steps"] for t in times],
                  "gflops": flops_per_token(cfg, VOCAB) / 1e9}
    elif kind == "products":
        times = bench_products(framework, spec["precision"], spec["length"], spec["repeats"])
        result = {"rates": [spec["length"] / t for t in times],
                  "ms_per_step": [1000 * t / spec["length"] for t in times]}
    else:
        num_samples = spec.get("num_samples", 1)
        times = bench_generate(framework, spec["length"], num_samples, spec["repeats"], spec.get("overrides", {}),
                               spec.get("strategy"))
        # Rates count the characters of all samples; a step is one token of every sample.
        result = {"rates": [spec["length"] * num_samples / t for t in times],
                  "ms_per_step": [1000 * t / spec["length"] for t in times]}
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


def measure(spec, env):
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{spec}: the measurement failed:\n{done.stderr[-3000:]}")


def torch_available():
    try:
        import torch
        return bool(torch.__version__)
    except ImportError:
        return False


def parse_settings(parser, items):
    """--set KEY=VALUE items -> {key: value}, each checked against the config (one-line parser error if bad)."""
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            config.apply_overrides(config.Config(), {key: value})
        except config.UserError as error:
            raise config.UserError(f"--set {item}: {error}") from None
        settings[key] = value
    return settings


def main(argv=None):
    return run_script(run, argv)


def run_script(run, argv):
    """run(argv) of a benchmark script, a bad flag said in one line with exit code 2."""
    try:
        return run(argv)
    except config.UserError as error:
        print(f"{os.path.basename(sys.argv[0])}: {error}", file=sys.stderr)
        return 2


def parse_arguments(argv):
    """(args, precisions, settings) of the command line, each flag checked."""
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--configs", default="small,medium", help="PTB configs to train (comma-separated; none: "
                                                                   "generation alone)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each measurement")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--length", type=int, default=2000, help="tokens generated per timed repeat (in-graph)")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="matmul precisions to measure, comma-separated: float32, bfloat16")
    parser.add_argument("--xla", default="off", choices=("on", "off", "both"),
                        help="graphlstm training with XLA auto-clustering (--xla of train.py)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every graphlstm measurement, e.g. xla_loss=false")
    parser.add_argument("--no_torch", action="store_true", help="skip PyTorch even when it is installed")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and few steps: checks that it runs")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("repeats", "steps", "length"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup: must not be negative")
    unknown = [name for name in args.configs.split(",") if name not in config.CONFIGS and args.configs != "none"]
    if unknown:
        parser.error(f"--configs: unknown config '{unknown[0]}' (known: {', '.join(config.CONFIGS)})")
    precisions = args.precisions.split(",")
    if not precisions or any(p not in config.KEYS["precision"].choices for p in precisions):
        parser.error(f"--precisions: expected float32 and/or bfloat16, got '{args.precisions}'")
    return args, precisions, parse_settings(parser, args.set)


def generation_rows(args, precisions, record):
    """The generation measurements (each through record), against this CPU's limit: the rate at which it runs a
    step's products alone (the best of NumPy's BLAS, TensorFlow's executor and XLA). Returns the batch-1 float32
    rates of the two loops (for the end-to-end comparison)."""
    generation = {"kind": "generate", "name": "char-2x512", "repeats": args.repeats, "length": args.length}
    rates = {}
    for precision in precisions:
        libraries = ("numpy", "tensorflow", "xla") if precision == "float32" else ("tensorflow", "xla")
        limit = max(record(f"products alone, {library} {precision} (steps)",
                           dict(generation, kind="products", framework=library, precision=precision))
                    for library in libraries)
        print(f"limit {precision}: {limit:,.0f} steps/s at batch 1 ({weight_megabytes(precision):.1f} MB of weights "
              f"a step, {limit * weight_megabytes(precision) / 1000:.1f} GB/s)")
        for framework in ("xla", "plain"):
            for name, strategy, samples in (("sampling", {}, 1), ("top-p 0.9", {"top_p": 0.9}, 1),
                                            ("4 samples", {}, 4), ("beam 4", {"beam_width": 4}, 1),
                                            ("8 samples", {}, 8), ("beam 8", {"beam_width": 8}, 1)):
                rate = record(f"generate {framework} {precision}, {name} (steps)",
                              dict(generation, framework=framework, num_samples=samples, strategy=strategy,
                                   overrides={"precision": precision}), per_step=True)
                print(f"    {rate / limit:.0%} of the limit")
                if precision == "float32" and name == "sampling":
                    rates[framework] = rate
    return rates


def weight_megabytes(precision):
    cfg = generation_config({"precision": precision})
    return sum(a * b for a, b in product_shapes(cfg)) * (2 if precision == "bfloat16" else 4) / 1e6


def run(argv):
    args, precisions, settings = parse_arguments(argv)
    if args.child:
        return child(json.loads(args.child))
    overrides = smoke_overrides(args)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    use_torch = not args.no_torch and torch_available()
    rows = []  # (label, result) of every measurement, for --json
    record = recorder(rows, env)
    print(f"cpu: {config.cpu_description()}")
    print(f"{'measurement':<46} {'min/s':>10} {'median/s':>10} {'max/s':>10} {'ms/step':>9} {'peak MB':>8} "
          f"{'GFLOP/s':>8}")
    ratios = training_rows(args, precisions, settings, overrides, use_torch, record, env)
    rates = generation_rows(args, precisions, record)
    end_to_end((20,) if args.smoke else (500, 5000), 1 if args.smoke else min(args.repeats, 3),
               overrides if args.smoke else {}, env, rates)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({label: result for label, result in rows}, f, indent=2)
    print_ratios(args, use_torch, ratios)
    return 0


def smoke_overrides(args):
    """--smoke: tiny shapes and few steps (args changed in place); returns the config overrides of every training
    measurement ({} without --smoke)."""
    if not args.smoke:
        return {}
    args.configs, args.repeats, args.steps, args.warmup, args.length = "small", 2, 2, 1, 20
    return {"hidden_size": "16", "num_steps": "5", "batch_size": "4"}


def recorder(rows, env):
    """record(label, spec, run_env, per_step): measures spec in a child process, prints its row, appends
    (label, result) to rows and returns its median rate (per step of all rows with per_step, else per item)."""
    def record(label, spec, run_env=env, per_step=False):
        result = measure(spec, run_env)
        if per_step:
            result["rates"] = [rate / spec.get("num_samples", 1) for rate in result["rates"]]
        rows.append((label, result))
        rates = result["rates"]
        print(f"{label:<46} {min(rates):>10,.0f} {statistics.median(rates):>10,.0f} {max(rates):>10,.0f} "
              f"{statistics.median(result['ms_per_step']):>9.2f} {result['peak_rss_mb']:>8,.0f}"
              + (f" {result['gflops'] * statistics.median(rates):>8.1f}" if "gflops" in result else ""), flush=True)
        return statistics.median(rates)
    return record


def training_rows(args, precisions, settings, overrides, use_torch, record, env):
    """The training measurements of every --configs config (each through record): graphlstm at each precision and
    --xla setting, PyTorch at each precision. Returns the [(label, ratio)] of graphlstm's rate to PyTorch's."""
    xla_env = dict(env, TF_XLA_FLAGS=(env.get("TF_XLA_FLAGS", "") + " --tf_xla_cpu_global_jit").strip())
    ratios = []
    for name in [] if args.configs == "none" else args.configs.split(","):  # none: generation alone
        base = {"kind": "train", "name": name, "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats}
        ours, theirs = {}, {}  # precision -> words/s (ours: the faster of the --xla settings)
        for precision in precisions:
            for xla in {"on": [True], "off": [False], "both": [False, True]}[args.xla]:
                spec = dict(base, framework="tf",
                            overrides=dict(overrides, **settings, precision=precision, xla=str(xla).lower()))
                rate = record(f"train {name} graphlstm {precision}{' +xla' if xla else ''} (words)", spec,
                              xla_env if xla else env)
                ours[precision] = max(ours.get(precision, 0.0), rate)
            if use_torch:
                spec = dict(base, framework="torch", overrides=dict(overrides, precision=precision))
                theirs[precision] = record(f"train {name} pytorch {precision} (words)", spec)
        for precision in theirs:
            ratios.append((f"graphlstm / pytorch, train {name} {precision}", ours[precision] / theirs[precision]))
        if "bfloat16" in ours and "float32" in theirs:
            ratios.append((f"graphlstm bfloat16 / pytorch float32, train {name}", ours["bfloat16"] / theirs["float32"]))
    return ratios


def print_ratios(args, use_torch, ratios):
    """The last lines: why there is no ratio, or each ratio."""
    if args.no_torch:
        print("pytorch: skipped (--no_torch), no ratio")
    elif not use_torch:
        print("pytorch: not installed (pip install torch==2.13.0), no ratio")
    for label, ratio in ratios:
        print(f"ratio {label}: {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
