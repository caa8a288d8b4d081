"""The platform's time windows, in a module of their own beside the platform's code: a holder's
library and My Portal keep to them without importing the platform's (the code service, numpy)."""

from __future__ import annotations

from datetime import timedelta

ANSWER_TIMEOUT = timedelta(seconds=30)
REPLAY_WINDOW = timedelta(minutes=2)
CLOCK_SKEW = timedelta(seconds=30)
# after a holder's keys are renewed, its requesters still take an answer session signed with its
# signing key before, dated by then, if the platform relayed it within this grace (its record's
# append time on the requester's inbox, however late the requester reads it): such an answer is
# relayed by its ticket's deadline, an answer timeout after it was sealed at most; a clock skew
# on each side (the provider's clock that dated the session, the operator's that dated the renewal)
SIGNING_GRACE = ANSWER_TIMEOUT + 2 * CLOCK_SKEW
