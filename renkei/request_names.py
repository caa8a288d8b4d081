"""Which names in a holder's request (its id, pattern id, provider, data type) are unfit to be
carried: too long, or holding control characters (a line break in a log line, a line forged after
it). The platform refuses such a request (processors.rejection), the registry's and the
authority's services answer no such question of My Portal (renkei.questions): one check, loaded
by each without the other's code."""

from __future__ import annotations

import re

from audit.events import escaped

# A request id's length at most (a holder's UUIDv7 has 36 characters): every answer to a request
# carries its id, an access-log event twice, and must still fit the codec's limit. A request's
# other names (pattern id, provider, data type) are held to it too.
REQUEST_ID_CHARS = 128
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def too_long(value: str, name: str = "request id") -> str | None:
    """Why a request id (or another name in a request) is refused for its length (None: it is
    not)."""
    if len(value) <= REQUEST_ID_CHARS:
        return None
    return f"the {name} has {len(value)} characters, over the {REQUEST_ID_CHARS} allowed"


def unfit(value: str, name: str) -> str | None:
    """Why a name in a holder's request is MALFORMED: control characters, or too long, as it is
    or escaped as the audit store keys an event by its id (events.escaped: a backslash as two;
    longer, an event's step after it is cut off there and its events share one key)."""
    if CONTROL.search(value):
        return f"the {name} holds control characters"
    if len(value) <= REQUEST_ID_CHARS < (chars := len(escaped(value))):
        return (f"the {name} has {chars} characters with each backslash escaped as two, over "
                f"the {REQUEST_ID_CHARS} allowed")
    return too_long(value, name)
