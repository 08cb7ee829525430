"""Turn SIGTERM and SIGINT into a request to stop after the current step.

SLURM and Kubernetes send SIGTERM some seconds before they kill a job; Ctrl-C
sends SIGINT. Inside :class:`StopSignals` the first such signal only sets
:attr:`StopSignals.received`: the trainer finishes the step it is in, writes a
checkpoint and stops (:class:`~mgpo_agents.faults.RunPreempted`). A second signal
abandons the step at once (``KeyboardInterrupt``); the latest checkpoint on disk
is then where ``--resume`` continues.

Handlers can only be installed from the main thread; elsewhere (a trainer
driven from a worker thread) the block runs without them and signals keep their
previous behaviour.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context manager: the first SIGTERM/SIGINT is recorded, the second interrupts."""

    def __init__(self) -> None:
        self.received: Optional[str] = None  # the first signal's name, e.g. "SIGTERM"
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], traceback: Optional[TracebackType]) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: Optional[FrameType]) -> None:
        name = signal.Signals(number).name
        if self.received is not None:
            raise KeyboardInterrupt(f"second stop signal ({name}): abandoning the current step; the latest checkpoint is kept")
        self.received = name
        print(f"\nmgpo train: received {name}; finishing the current step, then writing a checkpoint and stopping "
              "(send it again to stop at once)", file=sys.stderr, flush=True)


__all__ = ["StopSignals", "STOP_SIGNALS"]
