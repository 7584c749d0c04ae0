"""Train an LSTM language model or sentence classifier in TensorFlow graph mode.

    python train.py [--config NAME|FILE.json] [--data NAME|PATH] [--run_dir DIR] [--resume] [--key=value ...]

The flow: resolve the config -> read the data and build the vocabulary -> build the graph once and finalize it ->
run epochs of Session.run calls -> checkpoints, TensorBoard events and a results.json in the run directory.
Running again with the same run directory (or --resume) continues from the latest checkpoint.
"""
import argparse
import contextlib
import dataclasses
import os
import sys
import time
from typing import NamedTuple

import numpy as np

import checkpoints
import cluster
import config
import data_handler
import pretrain
import run_dir
import stopping
import summaries
from chief import Outcome, Stop
from config import UserError


def main(argv=None, last_word=False):
    """last_word: the process ends with main (the command line), so signals after it are ignored."""
    argv = sys.argv[1:] if argv is None else argv
    with stopping.StopRequest(last_word) as stop:  # SIGINT and SIGTERM, from the first line on
        return run_command(argv, stop)


def run_command(argv, stop):
    try:
        args, cfg, run = parse_command_line(argv)
        role = cluster.role_from_args(args)
        if role or args.local_cluster:
            cfg = cluster.cluster_config(cfg, argv, role and args.local_cluster)
        run.check_usable()
        if args.local_cluster:
            with run.locked():  # refused now, before any process starts, if another run holds the directory
                complete = run.check_config(cfg) and said_complete(run, cfg, cluster.shape(args.local_cluster,
                                                                                      args.replicas == "sync"))
            return 0 if complete else cluster.launch_local(os.path.abspath(__file__), argv, args.local_cluster,
                                                           run.path, args.replicas)
        config.tensorflow_environment(cfg, args.verbose)
        if role and role.job_name == "ps":
            return cluster.serve_ps(role)
        runtime = cluster.ClusterRuntime(cfg, role) if role else cluster.LocalRuntime(cfg)
        with run.locked() if runtime.is_chief else contextlib.nullcontext():
            resuming = run.check_config(cfg)  # inside the lock: no other run can change the directory now
            # Checked on every chief (a run resumed in another runtime is refused); a cluster's chief goes on even
            # when the run is complete: its session releases the other workers, which train nothing.
            if runtime.is_chief and resuming and not cfg.cv and said_complete(run, cfg, runtime.cluster) and not role:
                return 0
            if runtime.is_chief and run.remove_interrupted_writes():
                print("note: removed the temporary files of an interrupted write", file=sys.stderr)
            if cfg.cv:
                return cross_validate(cfg, run, stop)
            return train_from_start(cfg, data_handler.task_data(cfg), run, resuming, runtime, stop)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory (lower hidden_size, batch_size, num_steps or vocab_size)", file=sys.stderr)
        return 1
    except OSError as e:  # the last resort for a file operation no narrower handler names
        print(f"error: {e.filename or 'a file operation'}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a signal where there was nothing to save, or a second one
        print("\ninterrupted; checkpoints saved before now are kept, and the same command resumes", file=sys.stderr)
        return stopping.exit_code(e)


def said_complete(run, cfg, runtime_cluster):
    """For a run that resumes: True when it has nothing left to train, said with its results. Refused in one line
    (run_dir.RunDir.check_rerun): a finished run asked to run otherwise, or a run resumed in another runtime
    (runtime_cluster: None for a single process)."""
    complete = run.check_rerun(cfg, runtime_cluster)
    if complete:
        print(complete, flush=True)
    return bool(complete)


def parse_command_line(argv):
    """Returns (args, cfg, run)."""
    overrides, rest = config.split_overrides(argv)
    named = next((rest[i + 1] for i in range(len(rest) - 1) if rest[i] == "--config"), None) or \
        next((arg.split("=", 1)[1] for arg in rest if arg.startswith("--config=")), None)
    shown = named if named in config.CONFIGS else config.DEFAULT_CONFIG  # --help shows the named config's values
    parser = config.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   epilog=f"config keys (defaults of --config {shown}):\n" +
                                   config.help_text(config.CONFIGS[shown]),
                                   formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", default=None, help=f"named config ({', '.join(config.CONFIGS)}; default "
                                                       f"{config.DEFAULT_CONFIG}) or a JSON config file")
    parser.add_argument("--run_dir", help="where checkpoints, events and results go (default runs/CONFIG[-DATA])")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run_dir with its saved config (schedule and speed keys such "
                             "as --max_max_epoch may be overridden)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines and warnings")
    cluster.add_arguments(parser)
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        raise UserError(config.unknown_argument(unknown[0]))
    # `--task classify` alone starts from the classifier's config, not from the language model's default.
    config_name = args.config or ("classify" if overrides.get("task") == "classify" else config.DEFAULT_CONFIG)
    run = run_dir.RunDir(args.run_dir or run_dir.default_path(config_name, overrides.get("data", "")))
    if args.resume:
        if not os.path.isdir(run.path):
            raise run_dir.missing(run.path)
        if not run.has_started():
            raise UserError(f"{run}: no checkpoint to resume from")
        base = run.load_config()
    elif config_name.endswith(".json"):
        base = run_dir.read_config(config_name)
    else:
        base = config.named_config(config_name)
    return args, config.apply_overrides(base, overrides), run


def cross_validate(cfg, run, stop):
    """K-fold CV over all examples: each fold is the test set once, the rest is split into train and valid; every
    fold is a run directory of its own, so an interrupted CV resumes at the fold it was in. Then (--cv_final) the
    run directory's own model trains on all of them, so that sample.py and export.py find a model there."""
    cdata = data_handler.classification_data(cfg)
    everything = cdata.everything()
    if len(everything.texts) < 2 * cfg.cv:
        raise UserError(f"{cdata.name}: {len(everything.texts)} examples are too few for --cv {cfg.cv}")
    results, final_started = [], run.has_checkpoint()  # the final model starts once every fold has finished
    if not final_started:  # once it has, config.json is the final model's (its own max_max_epoch)
        run.save_config(cfg)  # what a rerun of the folds is checked against
    for k, (train_part, valid, test) in enumerate(data_handler.cv_parts(everything, cfg.cv, cfg.valid_fraction,
                                                                        cfg.seed)):
        fold = run.fold(k)
        if final_started or fold.finished(cfg):
            print(f"--- fold {k + 1}/{cfg.cv}: finished before ({fold.results_path}), not trained again")
        else:
            print(f"--- fold {k + 1}/{cfg.cv}: train {len(train_part.texts):,} valid {len(valid.texts):,} "
                  f"test {len(test.texts):,}")
            data = data_handler.encode_classification(cfg, train_part, valid, test, cdata.label_names)
            code = train_from_start(cfg, data, fold, fold.has_checkpoint(), cluster.LocalRuntime(cfg), stop)
            if code:
                return code
        results.append(fold.load_results())
    summary = cv_summary(cfg, results, len(everything.texts), cfg.cv_final)
    run.save_cv_results(summary)
    print(f"{cfg.cv}-fold CV test accuracy: {100 * summary['mean_accuracy']:.2f} +- "
          f"{100 * summary['std_accuracy']:.2f} % (per fold: "
          f"{', '.join(f'{100 * a:.1f}' for a in summary['accuracy_per_fold'])})")
    if not cfg.cv_final:
        return 0
    return train_final_model(dataclasses.replace(cfg, max_max_epoch=summary["final_model"]["epochs"]), cdata,
                             everything, run, stop)


def cv_summary(cfg, results, examples, final_model):
    """cv_results.json: the folds' test accuracies (the estimate) and what the final model is, or that there is
    none. Its epochs are the folds' mean best epoch, rounded half up: the training length validation chose."""
    accuracies = [r["test"]["accuracy"] for r in results]
    epochs = max(1, int(np.floor(np.mean([r["best"].get("epoch") or r["stopped"]["epochs_trained"]
                                          for r in results]) + 0.5)))
    plural = "" if epochs == 1 else "s"
    final = {"epochs": epochs, "examples": examples,
             "note": f"trained on all {examples:,} examples for {epochs} epoch{plural} (the folds' mean best epoch); "
                     "nothing was held out, so it has no validation or test score of its own: the folds' mean "
                     "accuracy estimates it"} if final_model else \
        {"note": "not trained (--cv_final false): the run directory holds the folds alone"}
    return {"folds": cfg.cv, "accuracy_per_fold": accuracies, "mean_accuracy": float(np.mean(accuracies)),
            "std_accuracy": float(np.std(accuracies)), "final_model": final, "per_fold": results}


def train_final_model(cfg, cdata, everything, run, stop):
    """The run directory's own model, on every example and without a validation split, for cfg's epochs; resumed
    like any run when interrupted, and not trained again once finished."""
    if run.finished(cfg):
        print(f"--- final model: finished before ({run.results_path}), not trained again")
        return 0
    print(f"--- final model: train {len(everything.texts):,} (all the examples; none held out) for "
          f"{cfg.max_max_epoch} epoch{'' if cfg.max_max_epoch == 1 else 's'}")
    nothing = data_handler.LabelledExamples([], [])
    data = data_handler.encode_classification(cfg, everything, nothing, nothing, cdata.label_names)
    return train_from_start(cfg, data, run, run.has_checkpoint(), cluster.LocalRuntime(cfg), stop)


# --------------------------------------------------------------------------------------------------- the run

class TrainingGraph(NamedTuple):
    graph: object  # tf.Graph, finalized
    controls: object  # rnn_model.Controls
    task: object  # tasks.LanguageModel or tasks.Classifier
    saver: object  # the latest checkpoints, 3 kept
    best_saver: object  # the best checkpoint
    weights_saver: object  # restores the model's weights alone: the global step and the rest stay as they are
    init: object  # initialises every variable (fed the task's initial_feed)
    local_init: object  # initialises this process's own variables (after a restore too)


def build_training_graph(cfg, data, runtime):
    import rnn_model as rm
    import tasks
    from tf1 import tf
    with runtime.building() as graph:
        controls = rm.build_controls(cfg, runtime.worker_device)
        optimizer = runtime.wrap_optimizer(rm.make_optimizer(cfg, controls.learning_rate))
        task = tasks.build(cfg, data, controls, optimizer, runtime.allows_buckets)
        # Pruning is the run directory's (3 latest, 1 best): TensorFlow's would read the paths as patterns.
        saver, best_saver = (tf.train.Saver(max_to_keep=0, save_relative_paths=True) for _ in range(2))
        weights_saver = tf.train.Saver(task.weights.variables())
        init = tf.group(tf.global_variables_initializer(), tf.local_variables_initializer())
        local_init = tf.local_variables_initializer()
    return TrainingGraph(graph, controls, task, saver, best_saver, weights_saver, init, local_init)


def train_from_start(cfg, data, run, resuming, runtime, stop):
    """train(), a fresh run from a language model's weights (--init_from; a classifier's also --pretrain_epochs); a
    resumed run goes on from its own checkpoint."""
    if not resuming and (cfg.init_from or cfg.pretrain_epochs):
        code, data = pretrain.start_from_language_model(cfg, data, run, stop, train)
        if code:
            return code
    return train(cfg, data, run, resuming, runtime, stop)


def train(cfg, data, run, resuming, runtime, stop):
    """One run: the graph built once, then epochs of training and validation, then the best checkpoint's results."""
    config.check_memory(cfg, len(data.vocab), len(data.label_names or ()))
    if runtime.is_chief:
        run.save_config_and_vocab(cfg, data.vocab, data.label_names, resuming, runtime.cluster)
        if not resuming and data.texts:  # once: a resumed run trains on what its data/ already holds
            run.save_splits(data.texts, data.label_names is not None, cfg.encoding)
    train_tokens = data.splits["train"][0] if data.label_names else data.splits["train"]  # classify: (seqs, labels)
    counts = summaries.token_counts(data.vocab, train_tokens)  # the projector's metadata, from all the data
    data = data._replace(splits={**data.splits, "train": runtime.shard(data.splits["train"])})
    g = build_training_graph(cfg, data, runtime)
    if not g.task.num_batches:
        raise UserError("the training data (this worker's shard of it) has no full batch: use fewer workers, or a "
                        "smaller batch_size or num_steps")
    if runtime.is_chief:
        summaries.write_projector_files(run, g.task.weights.embedding.op.name, data.vocab, counts)
    print(f"run directory: {run}; vocabulary {len(data.vocab):,}; {g.task.num_batches} batches per epoch")

    def start_model(sess):  # the chief's (or the single process's) start: the latest checkpoint, or a fresh model
        if resuming:
            saved = checkpoints.RunCheckpoints(run)
            summaries.write_projector_pointer(run, saved.restore_for_resume(sess, g.saver))
            saved.keep_limits()
            sess.run(g.local_init)
        else:
            sess.run(g.init, g.task.initial_feed)

    from tf1 import tf
    try:
        with runtime.session(g.graph, start_model) as sess:
            resumed_at = int(sess.run(g.controls.global_step)) if resuming else None
            with runtime.duties(cfg, g, sess, run, stop, resumed_at) as duties:
                with stop.armed():
                    outcome = fit(cfg, g, sess, runtime, duties, stop)
                if stop.requested:  # also when the signal came as the schedule ended
                    outcome = outcome._replace(reason=Stop.INTERRUPT)
                if outcome.reason in (Stop.INTERRUPT, Stop.MAX_STEPS):
                    print(f"{'interrupted' if outcome.reason == Stop.INTERRUPT else 'stopped (--max_steps)'} at "
                          f"step {outcome.global_step}; checkpoint saved in {run.checkpoint_dir}. " +
                          ("Run the same command again to resume." if outcome.reason == Stop.INTERRUPT else
                           "Raise --max_steps (or leave it out) and run again to continue."))
                else:
                    duties.finish(outcome, runtime)
    except tf.errors.ResourceExhaustedError as e:  # checkpoints.writing says a write's: this is memory
        raise UserError(f"out of memory ({checkpoints.error_reason(e)}); lower batch_size, eval_batch_size, "
                        "num_steps or hidden_size") from None
    return stop.exit_code if outcome.reason == Stop.INTERRUPT else 0


def fit(cfg, g, sess, runtime, duties, stop):
    """The epoch loop, for a single process and every cluster worker alike: the learning-rate schedule and the
    training steps; validation, summaries, checkpoints and patience are the duties' (the chief's)."""
    steps_per_epoch = g.task.num_batches * runtime.workers_per_step
    schedule_end = cfg.max_max_epoch * steps_per_epoch
    last_step = min(schedule_end, cfg.max_steps) if cfg.max_steps else schedule_end
    global_step = int(sess.run(g.controls.global_step))
    epoch, start = global_step // steps_per_epoch, global_step % steps_per_epoch // runtime.workers_per_step
    if global_step:  # past the schedule's end (a limit lowered), no epoch number: none is left to train
        where = f"epoch {epoch + 1}, batch {start}" if global_step < schedule_end else "the schedule's end"
        print(f"resuming at step {global_step} ({where})", flush=True)
    reason = Stop.SCHEDULE
    # A cluster's chief trains on until the last step, even when the other workers have finished their epochs.
    while global_step < last_step and (epoch < cfg.max_max_epoch or runtime.is_chief):
        if duties.out_of_patience(epoch):
            reason = Stop.PATIENCE
            break
        learning_rate = learning_rate_at(cfg, min(epoch, cfg.max_max_epoch - 1))
        sess.run(g.controls.learning_rate_update, {g.controls.new_learning_rate: learning_rate})
        done = run_epoch(cfg, g.task, sess, epoch, start, global_step, last_step, duties, stop, learning_rate)
        global_step = done.global_step
        if done.stopped and done.batches_done < g.task.num_batches:  # stopped mid-epoch: save, do not validate
            duties.save_latest(global_step)
            reason = Stop.INTERRUPT if stop.requested else reason
            break
        print(f"epoch {min(epoch + 1, cfg.max_max_epoch)}/{cfg.max_max_epoch}  step {global_step}  "
              f"lr {learning_rate:.4g}  train {g.task.describe(done.train) if done.train else '-'}  "
              f"{done.rate:,.0f} {g.task.unit}" + duties.end_epoch(global_step, epoch, learning_rate), flush=True)
        if stop.requested:
            reason = Stop.INTERRUPT
            break
        epoch, start = max(epoch + 1, global_step // steps_per_epoch), 0
    if reason == Stop.SCHEDULE and cfg.max_steps and cfg.max_steps <= global_step < schedule_end:
        reason = Stop.MAX_STEPS
    return Outcome(reason, global_step, epoch)


def learning_rate_at(cfg, epoch):
    """The PTB schedule: the initial rate for max_epoch epochs, then multiplied by lr_decay every epoch."""
    return cfg.learning_rate * cfg.lr_decay ** max(epoch + 1 - cfg.max_epoch, 0)


class EpochResult(NamedTuple):
    stopped: bool  # by Ctrl-C or at the last step, before the epoch's batches were all trained
    batches_done: int  # batches of the epoch trained, counting those before `start`
    global_step: int
    train: dict  # mean training metrics over the steps run here ({} if none)
    rate: float  # items (tokens or examples) per second


def run_epoch(cfg, task, sess, epoch, start, global_step, last_step, duties, stop, learning_rate):
    """Trains the epoch's batches from batch `start` on, with the duties' summaries and checkpoints after each step;
    stops at last_step (checked before each step, so a rerun at the limit trains none) or after a step when a
    signal asked for it."""
    from tqdm import tqdm
    totals, count, items, began = {}, 0, 0, time.time()
    bar = tqdm(total=task.num_batches, initial=start, desc=f"epoch {epoch + 1}/{cfg.max_max_epoch}",
               unit="batch", disable=None, leave=False, dynamic_ncols=True)
    stopped, batches_done = False, start
    for batch in task.train_batches(epoch, start):
        if global_step >= last_step or stop.requested:
            stopped = True
            break
        step = task.train_step(sess, batch, duties.wants_summary(global_step))
        duties.after_step(step, learning_rate)
        global_step, batches_done, count, items = step.global_step, batches_done + 1, count + 1, items + step.items
        for key, value in step.metrics.items():
            totals[key] = totals.get(key, 0.0) + value
        if count % 10 == 0:
            bar.set_postfix_str(f"{task.describe(step.metrics)}  {items / (time.time() - began):,.0f} {task.unit}")
        bar.update(1)
    bar.close()
    return EpochResult(stopped, batches_done, global_step, {k: v / count for k, v in totals.items()},
                       items / max(time.time() - began, 1e-9))


if __name__ == "__main__":
    sys.exit(main(last_word=True))
