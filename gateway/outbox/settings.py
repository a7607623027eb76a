"""Delivery settings of the outbox, read from the environment.

| variable | default | meaning |
| --- | --- | --- |
| ``SILTA_OUTBOX_MAX_ATTEMPTS`` | 50 | attempts before a message is dead |
| ``SILTA_OUTBOX_BACKOFF_BASE_SECONDS`` | 5 | wait after the first failed attempt |
| ``SILTA_OUTBOX_BACKOFF_CAP_SECONDS`` | 900 | longest wait between attempts |
| ``SILTA_OUTBOX_BACKOFF_JITTER`` | 0.5 | share of each wait drawn at random (0 to 1) |
| ``SILTA_OUTBOX_HTTP_TIMEOUT_SECONDS`` | 30 | timeout of each HTTP operation |
| ``SILTA_OUTBOX_POLL_SECONDS`` | 1 | pause of an idle dispatcher |
| ``SILTA_OUTBOX_BATCH_SIZE`` | 10 | messages claimed at a time |

With the defaults a message is retried for 8 to 11 hours (the waits double from 5 s
up to 15 min, less their jitter) before it is dead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    max_attempts: int = 50
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 900.0
    backoff_jitter: float = 0.5
    http_timeout_seconds: float = 30.0
    poll_seconds: float = 1.0
    batch_size: int = 10

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.batch_size < 1:
            raise ValueError("The outbox needs max_attempts and batch_size of at least 1")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ValueError("SILTA_OUTBOX_BACKOFF_JITTER must be between 0 and 1")
        if self.backoff_base_seconds < 0 or self.backoff_cap_seconds < 0:
            raise ValueError("The outbox backoff cannot be negative")

    @property
    def lease_seconds(self) -> float:
        """How long a claimed batch stays with its dispatcher: long enough to send every
        message of it, after which a dead dispatcher's messages are due again."""
        return self.batch_size * self.http_timeout_seconds + 60.0

    def backoff_seconds(self, attempts: int, random_fraction: float) -> float:
        """The wait after the ``attempts``-th failed attempt: exponential from the base,
        capped, shortened by up to ``backoff_jitter`` of itself (``random_fraction`` in
        [0, 1)) so that messages failed together do not all come back together."""
        exponent = min(max(attempts - 1, 0), 62)
        delay = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2.0**exponent)
        return delay * (1.0 - self.backoff_jitter * random_fraction)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutboxSettings:
        values = os.environ if env is None else env
        defaults = cls()

        def number(name: str, default: float) -> float:
            raw = values.get(f"SILTA_OUTBOX_{name}", "").strip()
            return float(raw) if raw else default

        return cls(
            max_attempts=int(number("MAX_ATTEMPTS", defaults.max_attempts)),
            backoff_base_seconds=number("BACKOFF_BASE_SECONDS", defaults.backoff_base_seconds),
            backoff_cap_seconds=number("BACKOFF_CAP_SECONDS", defaults.backoff_cap_seconds),
            backoff_jitter=number("BACKOFF_JITTER", defaults.backoff_jitter),
            http_timeout_seconds=number("HTTP_TIMEOUT_SECONDS", defaults.http_timeout_seconds),
            poll_seconds=number("POLL_SECONDS", defaults.poll_seconds),
            batch_size=int(number("BATCH_SIZE", defaults.batch_size)),
        )
