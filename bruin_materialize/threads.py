"""Helper threads that never take a signal.

The kernel hands a process's signal to any thread that does not block it. Python runs its handlers
in the main thread whichever thread took the signal, but a signal whose default is to be ignored
(SIGWINCH) is dropped by the thread that takes it, and while `exec` holds the forwarded signals
blocked to take them with sigtimedwait, a helper thread that does not block them would take them
instead: bruin would miss them, or a SIGTERM would run our handler while bruin still runs. With
every signal blocked in the helpers, the main thread gets them all.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def start_daemon(target: Callable[[], object], name: str) -> threading.Thread:
    """Start `target` on a daemon thread that blocks every signal (a new thread inherits the mask
    of the thread that starts it, so the mask is set around the start)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
