"""What only the chief does while a model trains: validation at each epoch's end, TensorBoard summaries, the latest and
best checkpoints, patience, and the final results. The chief is the single process, or a cluster's chief worker; the
other workers of a cluster get a Worker, which keeps only the divergence check. train.py's loop calls the same
methods on either, so it has no chief/worker branches.
"""
import enum
import os
from typing import NamedTuple

import checkpoints
import config
import stopping
import summaries


class Stop(str, enum.Enum):
    """Why training ended (results.json's "why")."""
    SCHEDULE = "schedule"  # every epoch of --max_max_epoch trained
    PATIENCE = "patience"  # --patience epochs without a better validation metric
    MAX_STEPS = "max_steps"  # --max_steps reached before the schedule's end
    INTERRUPT = "interrupt"  # SIGINT or SIGTERM: saved after the step, resumable


# results.json of a model trained without a validation split (a cross-validation's final model on all the data).
NOTHING_HELD_OUT = ("nothing was held out: trained on all the data, so no validation or test score of its own; "
                    "cv_results.json holds the cross-validation's estimate")


class Outcome(NamedTuple):
    reason: Stop
    global_step: int
    epochs_done: int  # epochs trained to their end


class Worker:
    """A cluster worker that is not the chief: it trains, and stops on divergence; nothing else is its to do."""

    def __init__(self, task):
        self.task = task
        self.guard = stopping.DivergenceGuard(task.num_outputs, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wants_summary(self, global_step):
        return False

    def after_step(self, step, learning_rate):
        self.guard.check_step(step.global_step, step, learning_rate)

    def save_latest(self, global_step):
        pass

    def end_epoch(self, global_step, epoch, learning_rate):
        return ""

    def out_of_patience(self, epochs_done):
        return False

    def finish(self, outcome, runtime):
        pass


class Chief(Worker):
    """The chief's share, for one run: opened (as a context) around the epoch loop, it holds the event writers."""

    def __init__(self, cfg, g, sess, run, stop, resumed_at):
        """g: train.TrainingGraph; resumed_at: the global step a resumed run restarts from (None: a fresh run)."""
        super().__init__(g.task)
        self.cfg, self.g, self.sess, self.run, self.stop, self.resumed_at = cfg, g, sess, run, stop, resumed_at
        self.guard = stopping.DivergenceGuard(g.task.num_outputs, run)
        self.best = run.load_best(g.task.metric) if resumed_at else {}  # a fresh run ignores an old best
        self.checkpoints = checkpoints.RunCheckpoints(run)
        self.writers = None

    def __enter__(self):
        started = self.run.has_run_events()  # asked before the writers open their files there
        self.writers = summaries.EventWriters(self.run, self.g.graph, self.resumed_at).__enter__()
        if not started:  # HParams shows the config a run started with
            self.writers.add_to_run(summaries.hparams(config.to_dict(self.cfg), trial_id=self.run.name))
        return self

    def __exit__(self, *exc):
        return self.writers.__exit__(*exc)

    def wants_summary(self, global_step):
        return (global_step + 1) % self.cfg.summary_every == 0

    def after_step(self, step, learning_rate):
        may_save = self.guard.check_step(step.global_step, step, learning_rate)  # before anything is saved
        if step.summary is not None:
            self.writers.add_step(step.summary, step.global_step)
        every = self.cfg.checkpoint_every
        if may_save and every and step.global_step % every == 0:
            self.save_latest(step.global_step)

    def save_latest(self, global_step):
        with self.stop.saving():
            saved = self.checkpoints.save_latest(self.sess, self.g.saver, global_step)
            summaries.write_projector_pointer(self.run, saved)

    def end_epoch(self, global_step, epoch, learning_rate):
        """Validation, its summaries, the latest checkpoint and, if better, the best; returns the epoch line's end."""
        task = self.task
        if not task.has_split("valid"):  # a cross-validation's final model: nothing held out, the last epoch counts
            self.save_latest(global_step)
            return "  (no validation split)"
        valid = task.evaluate(self.sess, "valid")
        self.guard.check_validation(global_step, valid["loss"], learning_rate)
        with checkpoints.writing(self.run.path, "TensorBoard events"):
            self.writers.add(self.sess, task, "valid", valid, global_step)
        self.save_latest(global_step)
        best = self.best.get(task.metric)
        improved = best is None or (valid[task.metric] > best if task.higher_is_better else valid[task.metric] < best)
        if improved:
            self.best = {"step": global_step, "epoch": epoch + 1, task.metric: valid[task.metric]}
            with self.stop.saving():
                self.checkpoints.save_best(self.sess, self.g.best_saver, global_step, self.best)
        return f"  valid {task.describe(valid)}" + ("  (best)" if improved else "")

    def out_of_patience(self, epochs_done):
        """Counted from best.json, so a resumed run remembers it."""
        patience = self.cfg.patience
        if not (patience and self.best and epochs_done - self.best["epoch"] >= patience):
            return False
        print(f"early stopping: no better validation {self.task.metric} since epoch {self.best['epoch']} "
              f"(--patience {patience}); the best checkpoint is evaluated", flush=True)
        return True

    def finish(self, outcome, runtime):
        """results.json: the best checkpoint's validation and test metrics, and why training stopped."""
        results = self.final_results(outcome.global_step)
        results["stopped"] = self.stopped_because(outcome)
        results["cluster"] = runtime.describe(outcome.global_step)
        with checkpoints.writing(self.run.path, "results.json"):
            self.run.save_results(results)

    def final_results(self, global_step):
        """Validation and test metrics of the best checkpoint (of the latest if no epoch was validated)."""
        task, run = self.task, self.run
        best = run.load_best(task.metric)
        # The weights alone: in a cluster the global step is shared, and the other workers stop by it.
        restored = self.checkpoints.restore_for_use(self.sess, self.g.weights_saver) if best else None
        results = {"task": self.cfg.task, "best": best, "checkpoint": restored, "valid": None, "test": None}
        if not task.has_split("valid"):
            results["held_out"] = NOTHING_HELD_OUT
            print(f"final weights: {NOTHING_HELD_OUT}")
            return results
        results["valid"] = task.evaluate(self.sess, "valid")
        where = (f"best checkpoint (step {best['step']})" if restored and os.path.dirname(restored) == run.best_dir
                 else f"checkpoint {restored}" if restored else "final weights (no epoch was validated)")
        line = f"{where}: valid {task.describe(results['valid'])}"
        if task.has_split("test"):
            results["test"] = task.evaluate(self.sess, "test")
            with checkpoints.writing(run.path, "TensorBoard events"):
                self.writers.add(self.sess, task, "test", results["test"], global_step)
            line += f"  test {task.describe(results['test'])}"
        self.writers.add_to_run([summaries.final_metrics(results, task.metric)], global_step)  # HParams' metrics
        print(line)
        return results

    def stopped_because(self, outcome):
        """results.json's account of why and when training ended."""
        cfg, metric, best = self.cfg, self.task.metric, self.run.load_best(self.task.metric)
        if outcome.reason == Stop.PATIENCE:
            detail = (f"early stopping: no better validation {metric} in the {cfg.patience} epochs after epoch "
                      f"{best['epoch']} (--patience {cfg.patience})")
        else:
            detail = f"the schedule ended: {outcome.epochs_done} of --max_max_epoch {cfg.max_max_epoch} epochs trained"
        return {"why": outcome.reason.value, "detail": detail,
                "epochs_trained": min(outcome.epochs_done, cfg.max_max_epoch),
                "global_step": outcome.global_step, "best_epoch": best.get("epoch")}
