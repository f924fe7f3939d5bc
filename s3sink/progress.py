"""The catch-up progress bar: one line on a terminal, redrawn in place.

``s3sink catchup`` shows it when its standard output is a terminal, and writes it there: on a
pipe or in a file the output is only the summary line, for scripts to read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: Redraw at most this often (seconds).
REDRAW_S = 0.5
WIDTH = 20


class ProgressBar:
    """``bar(done, total)`` (offsets archived of the offsets to archive) redraws the line at
    most every :data:`REDRAW_S`; the final state (``done >= total``) is always drawn and ends
    the line. :meth:`close` ends a line left open, so that what follows starts on its own."""

    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REDRAW_S,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.interval = interval
        self._drawn_at: float | None = None
        self._drawn: tuple[int, int] | None = None
        self._open = False

    def __call__(self, done: int, total: int) -> None:
        final = done >= total
        if final and self._drawn == (done, total) and not self._open:
            return  # already shown as finished
        now = self.clock()
        if not final and self._drawn_at is not None and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        self._drawn = (done, total)
        self.stream.write("\r" + render(done, total))
        if final:
            self.stream.write("\n")
        self._open = not final
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def render(done: int, total: int) -> str:
    pct = 100.0 * min(done, total) / total if total > 0 else 100.0
    bar = "#" * int(pct * WIDTH / 100)
    return f"[{bar:<{WIDTH}}] {pct:5.1f}% offsets {done:,}/{total:,}"
