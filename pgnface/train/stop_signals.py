"""Turning SIGINT / SIGTERM into a request to stop after the current step.

A training step killed half-way loses everything since the last checkpoint;
a step finished and checkpointed loses nothing. While a ``StopSignals`` block
runs, the first SIGINT or SIGTERM only records the request (the loop checks
``requested`` after each step and stops with a checkpoint); a second one acts
as usual, so a stuck step can still be interrupted.
"""

import signal
import threading
from typing import Optional

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: ``requested`` names the first stop signal received inside it, or is None.

    Signal handlers can only be set in the main thread; elsewhere the block
    changes nothing and signals act as usual.
    """

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        for sig, handler in self._previous.items():  # a second signal is not deferred
            signal.signal(sig, handler)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            # getsignal gives None for a handler not set from Python; the default is the closest.
            self._previous = {sig: signal.getsignal(sig) or signal.SIG_DFL for sig in _SIGNALS}
            for sig in _SIGNALS:
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
        self._previous = {}
