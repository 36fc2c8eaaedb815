"""Progress of long jobs (training, generating pairs): a bar on a terminal, a line now and then in a log.

A tqdm bar redraws itself with carriage returns; written to a file or a pipe (CI, a
log, ``make demo > demo.log``) every redraw becomes a line, thousands of them. So
`progress` draws the bar only when its stream is a terminal, and otherwise writes
one plain line at most every ``every`` seconds, and always the last one::

    training zhang2016: 300/2000 (15%), 1.9 step/s, loss 2.31

Both have the same interface: ``update(n)``, ``set_postfix(**values)``, ``close()``
and use as a context manager.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["progress", "LogProgress"]


class LogProgress:
    """Plain progress lines: at most one every ``every`` seconds, and one when closed."""

    def __init__(self, *, total: int, initial: int = 0, desc: str, unit: str, file: IO[str],
                 every: float = 30.0) -> None:
        self.total, self.n, self.desc, self.unit, self.file, self.every = total, initial, desc, unit, file, every
        self.start_n = initial
        self.started = self.last = time.monotonic()
        self.postfix: dict[str, Any] = {}
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = now - self.started
        rate = f", {(self.n - self.start_n) / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n}/{self.total}{percent}{rate}{extra}", file=self.file, flush=True)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(*, total: int, desc: str, unit: str, initial: int = 0, enabled: bool = True,
             file: IO[str] | None = None, every: float = 30.0):
    """A tqdm bar if ``file`` (default: stderr) is a terminal, else `LogProgress`; nothing if not ``enabled``."""
    from tqdm import tqdm

    file = file if file is not None else sys.stderr
    isatty = getattr(file, "isatty", None)
    if not enabled or (callable(isatty) and isatty()):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=file,
                    disable=not enabled)
    return LogProgress(total=total, initial=initial, desc=desc, unit=unit, file=file, every=every)
