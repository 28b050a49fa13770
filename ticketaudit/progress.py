"""Progress for logs: plain lines (stage, done / total, elapsed, estimate) when stderr is not a terminal, as in
every CI job, so a long audit never looks hung; terminals get Rich's bars instead (``cli._progress``)."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_SECONDS = 10.0
"""At most one line per stage this often (plus a line when a stage starts and when it ends)."""


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class PlainProgress:
    """The audit's ``progress(description, done, total)`` callback as plain lines through ``write``."""

    def __init__(self, write: Callable[[str], None], *, every: float = EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.every, self.clock = write, every, clock
        self.stage: str | None = None
        self.started = self.last = 0.0
        self.done = self.total = 0
        self.began = clock()

    def __call__(self, description: str, done: int, total: int) -> None:
        now = self.clock()
        if description == "Done":
            self.close()
            self.write(f"[ticketaudit {_duration(now - self.began)}] finished")
            return
        if description != self.stage:
            self._finish(now)
            self.stage, self.started, self.last = description, now, now
            self.write(f"[ticketaudit {_duration(now - self.began)}] {description}")
        self.done, self.total = done, total
        if total > 1 and done and (now - self.last >= self.every or done >= total):
            self.last = now
            self.write(f"[ticketaudit {_duration(now - self.began)}] {description}: {self._count()}")

    def _count(self) -> str:
        elapsed = self.clock() - self.started
        words = f"{self.done:,} / {self.total:,} ({self.done / self.total:.0%}), {_duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            words += f", about {_duration(elapsed / self.done * (self.total - self.done))} left"
        return words

    def _finish(self, now: float) -> None:
        if self.stage is not None:
            self.write(f"[ticketaudit {_duration(now - self.began)}] {self.stage}: done in {_duration(now - self.started)}")

    def close(self) -> None:
        """The last stage's end line."""
        self._finish(self.clock())
        self.stage = None
