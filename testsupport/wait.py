"""The one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
               what: str = "the condition") -> None:
    """Call `predicate` every `interval` seconds until it returns something true.

    Raises TimeoutError naming `what` once `timeout` seconds have passed. An exception from
    `predicate` propagates: a predicate that should tolerate one catches it and returns False.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
