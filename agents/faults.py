"""Why a training run stopped early, as exceptions, and the exit code ``mgpo train`` gives each.

A long run meets faults it must survive (a preemption signal, a bad image, a
non-finite loss) and faults after which it must stop cleanly with the last good
checkpoint intact (too many bad images, non-finite updates again and again, a
checkpoint that cannot be written). Each stop is one exception class here, with a
message that says what happened and what to do, and one exit code, taken from
``sysexits.h`` so that a job scheduler can tell them apart:

* 0: the run finished;
* 2: a usage error (bad flags, a missing model folder, an output folder already used);
* 65 (:class:`TooManyBadSamples`): more than ``--max-bad-fraction`` of the samples are
  unreadable, or one is under ``--on-bad-sample error``;
* 70 (:class:`NonFiniteUpdates`): ``--max-consecutive-skips`` updates in a row had a
  non-finite loss or gradient (none of them was applied);
* 74 (:class:`CheckpointWriteError`): a checkpoint could not be written (disk full, ...);
  the previous checkpoint is intact;
* 75 (:class:`RunPreempted`): SIGTERM or SIGINT; a checkpoint was written, so the same
  command line with ``--resume`` continues the run exactly.
"""

from __future__ import annotations

EXIT_BAD_DATA = 65  # EX_DATAERR
EXIT_NONFINITE = 70  # EX_SOFTWARE
EXIT_STORAGE = 74  # EX_IOERR
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again later (requeue with --resume)


class TrainingStopped(RuntimeError):
    """The run stopped before its last step; ``exit_code`` is what ``mgpo train`` returns."""

    exit_code = 1


class RunPreempted(TrainingStopped):
    """A SIGTERM or SIGINT stopped the run after a step, with a checkpoint of that step written."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, message: str, *, step: int, signal_name: str) -> None:
        super().__init__(message)
        self.step = step
        self.signal_name = signal_name


class TooManyBadSamples(TrainingStopped):
    """More samples are unreadable than the run allows (or one is, under ``on_bad_sample="error"``)."""

    exit_code = EXIT_BAD_DATA


class NonFiniteUpdates(TrainingStopped):
    """Too many optimiser updates in a row had a non-finite loss or gradient; none of them was applied."""

    exit_code = EXIT_NONFINITE


class CheckpointWriteError(TrainingStopped):
    """A checkpoint could not be written; its partial folder was removed and the previous checkpoint kept."""

    exit_code = EXIT_STORAGE


__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_NONFINITE",
    "EXIT_STORAGE",
    "EXIT_PREEMPTED",
    "TrainingStopped",
    "RunPreempted",
    "TooManyBadSamples",
    "NonFiniteUpdates",
    "CheckpointWriteError",
]
