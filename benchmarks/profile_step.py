"""Where one training step's time goes: TensorFlow's trace of a step of train.py's own graph on random token ids.

    python benchmarks/profile_step.py [--config small] [--vocab 10000] [--set KEY=VALUE] [--warmup 5] [--top 12]

Prints the step's wall time and number of ops, then op time summed by op type and by part of the model: each
layer's time loop forward and backward, and the rest of its work (input projection, weight gradients, stacking the
per-step tensors), the embedding, the softmax and loss, clipping and the optimizer. Op times are summed over both
threads, so they can add up to more than the wall time, and an op that waits for a core counts its wait too: read
the shares, not the microseconds. `--vocab 10` leaves only the LSTM layers' cost.
"""
import collections
import statistics
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmark import parse_settings, random_lm_graph, run_script  # noqa: E402  (after the path is set)
import config  # noqa: E402


def part_of(name):
    """'gradients/model/layer_1/IdentityN_grad/lstm_backward/step_3/MatMul' -> 'layer_1 backward: time loop'."""
    direction = "backward" if name.startswith("gradients/") else "forward"
    layer = re.search(r"(?:^|/)(layer_\w+?)/", name)
    if layer:
        where = "time loop" if "/step_" in name else "the rest"
        return f"{layer.group(1)} {direction}: {where}"
    if "embedding" in name:
        return f"embedding {direction}"
    if name.startswith(("clip_by_global_norm", "global_norm", "GradientDescent", "Adam", "RMSProp", "controls")):
        return "clipping and optimizer"
    if re.match(r"(gradients/)?(model(_\d+)?/|SparseSoftmax)", name):
        return f"softmax and loss {direction}"
    return f"other {direction}"


def main(argv=None):
    return run_script(run, argv)


def run(argv):
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--config", default="small", help="named config to profile")
    parser.add_argument("--vocab", type=int, default=10000, help="vocabulary size of the random ids")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--top", type=int, default=12, help="op types to list")
    args = parser.parse_args(argv)
    if args.config not in config.CONFIGS:
        parser.error(f"--config: unknown config '{args.config}' (known: {', '.join(config.CONFIGS)})")
    if args.vocab < 2 or args.warmup < 0 or args.top < 1:
        parser.error("--vocab must be at least 2, --warmup not negative, --top at least 1")
    cfg = config.apply_overrides(config.named_config(args.config), parse_settings(parser, args.set))
    g = random_lm_graph(cfg, args.vocab, args.warmup + 7)
    import rnn_model as rm
    from tf1 import tf
    task, model = g.task, g.task.train_model
    with tf.Session(graph=g.graph, config=rm.session_config(cfg)) as sess:
        sess.run(g.init)
        batches = task.train_batches(0, 0)
        for _ in range(args.warmup):
            task.train_step(sess, next(batches), False)
        walls = []
        for _ in range(5):  # untraced: tracing itself slows a step down
            began = time.perf_counter()
            task.train_step(sess, next(batches), False)
            walls.append(time.perf_counter() - began)
        inputs, targets, _ = next(batches)
        feed = rm.feed_state({model.inputs: inputs, model.targets: targets}, model.initial_state, task.state)
        options, metadata = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), tf.RunMetadata()
        sess.run(model.train.train_op, feed, options=options, run_metadata=metadata)
    by_type, by_part, count = collections.Counter(), collections.Counter(), 0
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            if node.node_name == "_SOURCE":
                continue
            op_type = node.timeline_label.split(" = ")[-1].split("(")[0] or node.node_name
            by_type[op_type] += node.op_end_rel_micros - node.op_start_rel_micros
            by_part[part_of(node.node_name)] += node.op_end_rel_micros - node.op_start_rel_micros
            count += 1
    total = sum(by_type.values())
    print(f"{args.config} (vocab {args.vocab}, {cfg.precision}{', xla_loss' if cfg.xla_loss else ''}): "
          f"{statistics.median(walls) * 1000:.1f} ms a step (median of 5 untraced); the traced step ran {count} ops, "
          f"{total / 1000:.1f} ms of op time")
    for title, counter, limit in (("op type", by_type, args.top), ("part", by_part, None)):
        print(f"\n{title:<42} {'ms':>8} {'share':>6}")
        for key, micros in counter.most_common(limit):
            print(f"{key:<42} {micros / 1000:>8.2f} {100 * micros / total:>5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
