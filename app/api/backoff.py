"""Exponential backoff with jitter, and the gate that spaces reconnection attempts with it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay n (n = 0, 1, ...) is base * factor**n, capped, then shortened by up to `jitter`
    of itself, so that instances that lost a store together do not come back in lockstep."""

    base: float = 0.25
    factor: float = 2.0
    # A store that came back waits at most this long for the next attempt of an instance
    # that saw it down (requests meanwhile fail fast): 2 s, not more. One attempt per store,
    # instance and 1-2 s is nothing for a store; a 10 s cap kept writes failing for up to
    # 10 s after Weaviate was back (the chaos run of issue 16).
    cap: float = 2.0
    jitter: float = 0.5
    # A store that refuses the connection (nothing listens yet, or it is starting up) answered
    # at once and cost itself nothing: the next attempt may come this soon, so that requests
    # fail for at most this long after it is back. Waiting out the backoff instead was the
    # cause of the chaos soak's last failed writes (issue 16): 503s for up to 2 s after a
    # killed store was already back.
    refused: float = 0.1

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and self.factor >= 1 and 0 <= self.jitter < 1
                and 0 <= self.refused <= self.cap):
            raise ValueError(f"invalid backoff {self}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        # The exponent is bounded first: factor**attempt would overflow after a long outage.
        exponent = min(attempt, 64)
        ceiling = min(self.cap, self.base * self.factor**exponent)
        return ceiling * (1 - self.jitter * rand())


class ReconnectGate:
    """Says whether a store may be connected to now: after n consecutive failures, not
    before delay(n - 1) has passed. Requests never wait here; they fail fast instead."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        self.backoff = backoff
        self.failures = 0
        self._clock = clock
        self._rand = rand
        self._next_attempt = 0.0

    def wait_left(self) -> float:
        """Seconds until the next attempt is allowed; 0 when it is allowed now."""
        return max(0.0, self._next_attempt - self._clock())

    def record_failure(self, refused: bool = False) -> float:
        """Note one more failure; returns the delay before the next attempt. A refused
        connection is retried after the short `refused` delay instead of the backoff's."""
        if refused:
            delay = self.backoff.refused
        else:
            delay = self.backoff.delay(self.failures, self._rand)
        self.failures += 1
        self._next_attempt = self._clock() + delay
        return delay

    def record_success(self) -> None:
        self.failures = 0
        self._next_attempt = 0.0
