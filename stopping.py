"""Why a run stops before its schedule ends: the user or the cluster asks (Ctrl-C, SIGTERM), or training diverges.
Either way what the run had is kept: a signal stops after the step and saves; a divergence stops before anything of
it is saved.
"""
import collections
import contextlib
import math
import os
import signal
import statistics

import checkpoints
import summaries
from config import UserError


class DivergenceGuard:
    """Stops a run that diverges, before anything of it is saved.

    A step whose loss or gradient norm is not finite stops it at once. A loss above 2 ln(outputs) (twice a uniform
    guess's) plus 3 times the median of the last 100 step losses is suspect: the periodic checkpoint is held back,
    and a third suspect step in a row stops the run (one bad batch is not a divergence). So is a validation loss that
    is not finite or 5 times past the limit (an overfitting classifier's validation loss climbs well above its
    training loss, so it gets room). Latest checkpoints that may hold diverging weights are removed; the best one was
    validated and stays."""

    def __init__(self, num_outputs, run):
        self.floor = 2 * math.log(max(num_outputs, 2))
        self.recent = collections.deque(maxlen=100)  # the last step losses that were not suspect
        self.suspect_since = None  # the first step of the current run of suspect losses
        self.run = run  # the chief's run directory, whose checkpoints a divergence prunes; None elsewhere

    def limit(self):
        return self.floor + 3 * (statistics.median(self.recent) if self.recent else 0.0)

    def check_step(self, step, result, learning_rate):
        """After a step, before anything is saved; returns whether the weights may be checkpointed."""
        loss = result.metrics["loss"]
        if not math.isfinite(loss):
            self.stop(step, step - 1, f"the training loss is {loss:.4g}", learning_rate)
        if not math.isfinite(result.gradient_norm):  # this update went wrong, the weights before it did not
            self.stop(step, step, f"the gradient norm is {result.gradient_norm:.4g}", learning_rate)
        if loss > self.limit():
            self.suspect_since = self.suspect_since or step
            if step - self.suspect_since >= 2:
                self.stop(step, self.suspect_since - 1, f"the training loss jumped to {loss:.4g} (limit "
                                                  f"{self.limit():.4g}) for 3 steps", learning_rate)
            return False
        self.suspect_since = None
        self.recent.append(loss)
        return True

    def check_validation(self, step, loss, learning_rate):
        if not (math.isfinite(loss) and loss <= 5 * self.limit()):
            self.stop(step, step, f"the validation loss is {loss:.4g} (limit {5 * self.limit():.4g})", learning_rate)

    def stop(self, step, first_bad, what, learning_rate):
        """step: where it showed; first_bad: the first global step whose weights are suspect (its latest
        checkpoint and later ones go)."""
        resume = "from the newest checkpoint before it"
        if self.run:
            newest = checkpoints.RunCheckpoints(self.run).discard_latest_from(first_bad)
            if newest:
                summaries.write_projector_pointer(self.run, newest)  # the pointer named a removed one
            resume = f"from step {checkpoints.step_of(newest)}" if newest else "from the start"
        raise UserError(f"step {step}: {what}: training diverged. Lower --learning_rate (now "
                        f"{learning_rate:.4g}) or --max_grad_norm and run the same command again; it resumes "
                        f"{resume}")


class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the program where it is: the exit code is 128 + the signal's number (130 for Ctrl-C,
    143 for SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def exit_code(interrupt):
    """The exit code of a KeyboardInterrupt: an Interrupted's own, 130 for Python's plain one (SIGINT)."""
    return getattr(interrupt, "exit_code", 128 + signal.SIGINT)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what Slurm, Kubernetes and cloud preemption send


def say(line):
    """Writes a line to stderr from a signal handler: os.write, since a handler that prints while the program was
    printing would meet a busy stream."""
    os.write(2, (line + "\n").encode())


class StopRequest:
    """SIGINT and SIGTERM alike, for the whole of train.py (every fold, a pretraining language model, the cluster
    worker). While training steps run (armed), the first signal asks the loop to stop after the current step and
    save; a second stops at once, unless a checkpoint is being written: then the save finishes and the loop stops.
    Elsewhere (start-up, building a graph, the final evaluation) there is nothing to save, and a signal stops at
    once. Either way the run ends with exit code 128 + the signal, and a rerun resumes it."""

    def __init__(self, last_word=False):
        self.last_word = last_word  # the program ends with this block: a late signal must not turn its exit into a kill
        self.signum = None  # the first signal received
        self.is_armed = False
        self.saving_now = False
        self.previous = {}  # the handlers to put back

    @property
    def requested(self):
        return self.signum is not None

    @property
    def exit_code(self):
        return 128 + self.signum

    def __enter__(self):
        self.previous = {signum: signal.signal(signum, self.handle) for signum in STOP_SIGNALS}
        return self

    def handle(self, signum, frame):
        first = not self.requested
        self.signum = self.signum or signum
        if first and self.is_armed:
            say(f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint (again to quit at "
                "once)")
        elif self.saving_now:
            say("\nfinishing the checkpoint being written, then stopping")
        else:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def armed(self):
        """Around the training loop: a first signal waits for the step to end, and the loop saves."""
        self.is_armed = True
        try:
            yield
        finally:
            self.is_armed = False

    @contextlib.contextmanager
    def saving(self):
        """Around a checkpoint's save: no signal cuts it short (the loop stops at its next check)."""
        self.saving_now = True
        try:
            yield
        finally:
            self.saving_now = False

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, signal.SIG_IGN if self.last_word else handler)


@contextlib.contextmanager
def signals_interrupt():
    """For the readers (sample.py, export.py): SIGTERM ends them as Ctrl-C does, as an Interrupted that main turns
    into one line and exit code 143 (130 for Ctrl-C)."""
    def handle(signum, frame):
        raise Interrupted(signum)
    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
