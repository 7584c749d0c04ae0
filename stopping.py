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
            newest = self.run.discard_checkpoints_from(first_bad)
            resume = f"from step {newest}" if newest is not None else "from the start"
        raise UserError(f"step {step}: {what}: training diverged. Lower --learning_rate (now "
                        f"{learning_rate:.4g}) or --max_grad_norm and run the same command again; it resumes "
                        f"{resume}")


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
