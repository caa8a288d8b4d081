"""My Portal's questions to the services around the platform, as a service answers them.

A question comes on a topic only the portal may write, and its answer goes on one only the
portal reads and only this service writes: who asked and who answered is the broker's word (its
ACLs), never a field. The question is sealed to the service and the answer to the question's own
reply key (a key the portal made for it alone and drops once it stops waiting), both under the
question's request id, so the broker sees no resident code, name, card or number, and whoever
takes over the portal later (its principal, its key file) opens none of the answers the topic
keeps. A question read after its deadline is not acted on: the portal has given up waiting (a
number changed then would be one the resident never saw). It is answered with what was done for
it before, if anything was (a service stopped after acting and before answering reads it again,
its reply key with it), else TIMED_OUT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from renkei import sealing
from renkei.envelope import Send, send
from renkei.request_names import unfit
from schemas.codec import CODEC, SchemaError, UnknownSchema, first_string
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    PortalAnswer,
    PortalQuery,
)

log = logging.getLogger(__name__)
REQUEST_ID_CHARS = 64
"""The longest request id of a question answered (the portal's are UUIDs, 36 characters): the id
is the answer's key and is in its value, so a longer one could make an answer the broker does not
take, and the service would stop on that question at every start. Tighter than the platform's
bound on a holder's (renkei.request_names, 128), which it also meets (unfit_id)."""
Answer = Callable[[str, bytes, bool], object]
"""The service's answer (a message) to a question: its request id, its opened bytes, and whether
it was read after its deadline (then the answer says only what was done before: TooLate if
nothing was)."""


class TooLate(Exception):
    """A question read after its deadline, for which nothing was done before: nothing is."""


class NotFound(LookupError):
    """Nobody the question is about; the message is said to the portal (no personal data)."""


DECLINED = "declined: "
"""How a REFUSED answer's detail starts when the service declined the question (Declined), before
its reason: other REFUSED answers are questions it could not answer."""


class Declined(PermissionError):
    """A question the service will not act on, for `reason` (a short code, no personal data),
    which is said to the portal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


NO_REPLY_KEY = "no-reply-key"
"""Why a question is declined that has no reply key its answer can be sealed to."""


def unfit_id(request_id: str) -> str | None:
    """Why no answer is sent under a question's request id (None: one is): longer than
    REQUEST_ID_CHARS, or unfit as the platform finds a holder's (renkei.request_names.unfit):
    control characters, which the service's log lines and the answer's key would carry as they
    are (a line break in the log, a line forged after it). Said without the id."""
    if len(request_id) > REQUEST_ID_CHARS:
        return f"a request id of {len(request_id)} characters (at most {REQUEST_ID_CHARS})"
    return unfit(request_id, "request id")


def of_topic(records: Sequence[Any], topic: str) -> tuple[list[Any], list[Any]]:
    """The records of `topic` (the portal's questions), and the others."""
    return ([r for r in records if r.topic == topic], [r for r in records if r.topic != topic])


def answered(records: Sequence[Any], service: str, key: X25519PrivateKey, out: str,
             answer: Answer, now: datetime) -> list[Send]:
    """The answers, on `out`, to the portal's questions among `records`."""
    sent = []
    for record in records:
        try:
            question = CODEC.decode(record.value or b"", PortalQuery)
        except UnknownSchema as exc:
            sent += _refused_unknown(record.value or b"", service, out, exc)
            continue
        except SchemaError as exc:
            log.error("an unreadable question of the portal: %s", exc)
            continue
        if (why := unfit_id(question.request_id)) is not None:
            log.error("%s: a question of the portal is not answered: %s", service, why)
            continue
        sent.append(send(out, question.request_id,
                         _answer(question, service, key, answer, now)))
    return sent


def _refused_unknown(value: bytes, service: str, out: str, exc: UnknownSchema) -> list[Send]:
    """A question of a schema unknown here (a newer portal's) refused UNKNOWN_SCHEMA under its
    request id (its first field, codec.first_string), as the platform refuses a holder's
    (processors.rejection): the portal tells its resident so, rather than that the question timed
    out; none if its first field is no request id an answer could carry (logged only)."""
    request_id = first_string(value)
    if not request_id or (why := unfit_id(request_id)) is not None:
        log.error("%s: an unreadable question of the portal, naming no request id%s: %s",
                  service, "" if not request_id else f" ({why})", exc)
        return []
    log.error("%s: the portal's question %s refused UNKNOWN_SCHEMA (a newer portal's?): %s",
              service, request_id, exc)
    return [send(out, request_id, PortalAnswer(request_id, REFUSED,
                                               f"{exc.reason}: {exc}", b""))]


def _answer(question: PortalQuery, service: str, key: X25519PrivateKey, answer: Answer,
            now: datetime) -> PortalAnswer:
    """The answer sealed to the question's reply key; a question without one is declined, not
    acted on: an old portal's (v1), whose answer, sealed to the portal's directory key, would
    open for as long as the topic keeps it to whoever takes over the portal later, or one whose
    key no answer can be sealed to (a low-order point), for which the service would act (a new
    number, a challenge used) and then fail to answer."""
    if question.reply_key is None or not sealing.can_seal_to(question.reply_key):
        return _said(question, REFUSED, DECLINED + NO_REPLY_KEY)
    try:
        reply = answer(question.request_id, sealing.open_sealed(key, question.sealed_query,
                                                                question.request_id),
                       now > question.deadline)
        sealed = sealing.seal(question.reply_key, CODEC.encode(reply), question.request_id)
    except TooLate:
        return _said(question, TIMED_OUT, "asked after its deadline: nothing was done")
    except NotFound as exc:
        return _said(question, NOT_FOUND, str(exc))
    except Declined as exc:
        return _said(question, REFUSED, DECLINED + exc.reason)
    except Exception as exc:  # one question never stops the service (its message may hold
        log.error("%s: the portal's question %s refused: it failed with %s",  # personal data)
                  service, question.request_id, type(exc).__name__)
        return _said(question, REFUSED, f"the {service} could not answer this question "
                                        f"({type(exc).__name__})")
    return PortalAnswer(question.request_id, FOUND, "", sealed)


def _said(question: PortalQuery, status: str, detail: str) -> PortalAnswer:
    return PortalAnswer(question.request_id, status, detail, b"")
