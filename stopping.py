"""Why a run stops before its schedule ends: the user asks (Ctrl-C), or training diverges. Either way what the run
had is kept: Ctrl-C stops after the step and saves; a divergence stops before anything of it is saved.
"""
import collections
import math
import signal
import statistics
import sys

from config import UserError


class DivergenceGuard:
    """Stops a run that diverges, before anything of it is saved: a step whose loss or gradient norm is not finite, or
    whose loss exceeds 2 ln(outputs) (twice a uniform guess's) plus 3 times the median loss of the last 100
    steps; a validation loss that is not finite or 5 times past that limit (an overfitting classifier's
    validation loss climbs well above its training loss, so it gets room). The checkpoints that may hold the
    diverging weights are removed, so the run resumes from the newest one before it, with a lower learning rate
    if the user gives one."""

    def __init__(self, num_outputs, run):
        self.floor = 2 * math.log(max(num_outputs, 2))
        self.recent = collections.deque(maxlen=100)  # the last step losses that passed
        self.run = run  # the chief's run directory, whose checkpoints a divergence prunes; None elsewhere

    def limit(self):
        return self.floor + 3 * (statistics.median(self.recent) if self.recent else 0.0)

    def check_step(self, step, result, learning_rate):
        loss = result.metrics["loss"]
        if not (math.isfinite(loss) and math.isfinite(result.gradient_norm)):
            self.stop(step, f"the training loss is {loss:.4g} and the gradient norm {result.gradient_norm:.4g}",
                      learning_rate)
        if loss > self.limit():
            self.stop(step, f"the training loss jumped to {loss:.4g} (limit {self.limit():.4g})", learning_rate)
        self.recent.append(loss)

    def check_validation(self, step, loss, learning_rate):
        if not (math.isfinite(loss) and loss <= 5 * self.limit()):
            self.stop(step + 1, f"the validation loss is {loss:.4g} (limit {5 * self.limit():.4g})", learning_rate)

    def stop(self, step, what, learning_rate):
        """The weights that gave step's loss came from the step before: its checkpoint and later ones go."""
        resume = "from the start"
        if self.run:
            newest = self.run.discard_checkpoints_from(step - 1)
            resume = f"from step {newest}" if newest is not None else resume
        raise UserError(f"step {step}: {what}: training diverged. Lower --learning_rate (now {learning_rate:.4g}) "
                        f"or --max_grad_norm and run the same command again; it resumes {resume}")


class StopRequest:
    """Ctrl-C asks the loop to stop after the current step (and save); a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self.previous = None  # the SIGINT handler to put back

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step to save a checkpoint (Ctrl-C again to quit at once)", file=sys.stderr)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)
