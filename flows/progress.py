"""Training progress for the flows (plain, no Prefect in here): log lines every few seconds and, in a terminal,
a progress bar.

`TrainingProgress` is a generator's `progress_callback` (generators/base.py): each epoch it gets the epoch
number, the epoch cap and the epoch's figures. It logs `epoch 3/100: loss 1.234, validation_nll 1.2; 12 s so far,
at most 4 min left` at INFO on the logger it is given (the Prefect run logger under a flow, so the lines reach the
server), at most once per `every` seconds plus the first epoch. The time left is an upper bound: the cap's
remaining epochs at the mean epoch time so far, and early stopping may end training sooner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """12 s, 4 min, 1 h 05 min."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class TrainingProgress:
    """A progress callback: INFO log lines every `every` seconds, and a tqdm bar when `bar` is true."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, every: float = 5.0, bar: bool = False,
                 label: str = "training", clock: Callable[[], float] = time.monotonic):
        self.logger, self.every, self.label, self.clock = logger, every, label, clock
        self.show_bar, self.bar = bar, None
        self.start = clock()
        self.last_logged: float | None = None
        self.epochs_seen = 0

    def __call__(self, epoch: int, epochs: int, record: dict) -> None:
        now = self.clock()
        self.epochs_seen = epoch
        figures = ", ".join(f"{name} {value:.4g}" for name, value in record.items()
                            if isinstance(value, (int, float)) and name != "seconds")
        if self.show_bar:
            self._advance_bar(epoch, epochs, figures)
        if self.last_logged is not None and now - self.last_logged < self.every:
            return
        self.last_logged = now
        elapsed = now - self.start
        left = elapsed / epoch * (epochs - epoch)
        self.logger.info("%s epoch %d/%d: %s; %s so far, at most %s left", self.label, epoch, epochs, figures,
                         duration(elapsed), duration(left))

    def _advance_bar(self, epoch: int, epochs: int, figures: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            # The first epoch ended before the bar existed: start it there (initial=epoch), or tqdm would time
            # that whole epoch as an instant and show a rate of thousands of epochs a second.
            self.bar = tqdm(total=epochs, initial=epoch, desc=self.label, unit="epoch", leave=False)
        self.bar.update(epoch - self.bar.n)
        # Redraw every epoch: tqdm skips draws within its 0.1 s mininterval, so fast last epochs would never show
        # (leave=False then clears a bar that stopped short of its total).
        self.bar.set_postfix_str(figures, refresh=True)

    def finish(self) -> None:
        """Close the bar and log the total: `trained 23 epochs in 41 s`."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.epochs_seen:
            self.logger.info("%s: %d epochs in %s", self.label, self.epochs_seen, duration(self.clock() - self.start))
