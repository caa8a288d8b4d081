"""The platform's time windows, in a module of its own: a holder's library keeps to them without
importing the platform's handlers (the code service, numpy)."""

from __future__ import annotations

from datetime import timedelta

ANSWER_TIMEOUT = timedelta(seconds=30)
REPLAY_WINDOW = timedelta(minutes=2)
CLOCK_SKEW = timedelta(seconds=30)
