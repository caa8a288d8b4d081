"""aiokafka's lines said again within a minute are dropped: while the broker is away, each
client says the same error on every attempt (36,000–50,000 lines in a 3-minute chaos run,
nearly all of four texts), and once a minute tells the operator as much."""

from __future__ import annotations

import logging
import time

SAID_EVERY = 60.0  # seconds: the same line of aiokafka's, at most this often
KEPT = 1000  # different lines remembered before those said over a minute ago are dropped


class _Repeats(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._said: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text, now = record.getMessage(), time.monotonic()
        said = self._said.get(text)
        if said is not None and now - said < SAID_EVERY:
            return False
        if len(self._said) >= KEPT:  # lines with offsets or ids in them: forget the old
            self._said = {t: at for t, at in self._said.items() if now - at < SAID_EVERY}
        self._said[text] = now
        return True


_REPEATS = _Repeats()


def install() -> None:
    """Put aiokafka's loggers (each module has its own) behind the filter; again is harmless."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] == "aiokafka":
            logger.addFilter(_REPEATS)
