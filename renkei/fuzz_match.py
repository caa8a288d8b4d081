"""Which answer belongs to which bad message: each must get exactly the answers it expects.

A message the codec refuses is answered by a Rejection with no request id and the codec's reason
and words; any other by one answer carrying its request id (a Rejection with a reason, a Pong, a
binding, linkage or re-keying answer), or by none where none is due (see `fuzz_plan`); a late
answer by none, or by one Rejection of its expired ticket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processors.decider import TICKET_EXPIRED
from renkei.fuzz_plan import Bad
from renkei.shown import short

REJECTION = "Rejection"


@dataclass(frozen=True, slots=True)
class Answer:
    """One message on a holder's inbox that answers something the holder sent."""

    holder: str
    request_id: str
    kind: str  # Rejection, Pong, LinkageAnswer, BindingAnswer, RekeyAnswer
    reason: str = ""
    detail: str = ""


@dataclass
class Matching:
    expected: int = 0  # answers due
    answered: int = 0  # due answers that came
    unanswered: int = 0  # due answers that did not come
    extra: int = 0  # answers nothing due explains (a second answer, or a stranger's)
    unclear: int = 0  # rejections of bad messages without a reason or words
    by_kind: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    unanswered_examples: list[str] = field(default_factory=list)
    extra_examples: list[str] = field(default_factory=list)


def match(bad: Sequence[Bad], answers: Iterable[Answer], examples: int = 10) -> Matching:
    """Pair the answers with the bad messages, sender by sender."""
    refused = Counter[tuple[str, str, str, str]]()  # (sender, reason, words, request id named)
    by_id = Counter[tuple[str, str]]()  # (sender, request id)
    origin: dict[tuple[str, str], str] = {}
    late = Counter[tuple[str, str]]()  # (sender, request id) of late answers
    for message in bad:
        if message.refused is not None:
            refused[(message.sender, message.refused, message.detail or "",
                     message.request_id)] += 1
        elif message.late:
            late[(message.sender, message.request_id)] += 1
        elif message.answers:
            by_id[(message.sender, message.request_id)] += message.answers
            origin.setdefault((message.sender, message.request_id), message.origin)
    found = Matching(expected=refused.total() + by_id.total())
    for answer in answers:
        codec = (answer.holder, answer.reason, answer.detail, answer.request_id)
        key = (answer.holder, answer.request_id)
        if answer.kind == REJECTION and refused[codec] > 0:
            refused[codec] -= 1
        elif by_id[key] > 0:
            by_id[key] -= 1
        elif late[key] > 0 and _expired(answer):
            late[key] -= 1
            found.expected += 1
        else:
            found.extra += 1
            if len(found.extra_examples) < examples:
                found.extra_examples.append(f"{answer.holder}: {answer.kind} "
                                            f"{short(answer.request_id)!r} {answer.reason}")
            continue
        found.answered += 1
        found.by_kind[answer.kind] += 1
        if answer.kind == REJECTION:
            found.rejected_by_reason[answer.reason] += 1
            found.unclear += not (answer.reason and answer.detail)
    left = [f"{sender}: codec {reason} ({short(words)})"
            for (sender, reason, words, _), n in refused.items() for _ in range(n)]
    left += [f"{sender}: {origin[(sender, rid)]} {short(rid)!r}"
             for (sender, rid), n in by_id.items() for _ in range(max(0, n))]
    found.unanswered = len(left)
    found.unanswered_examples = left[:examples]
    return found


def _expired(answer: Answer) -> bool:
    """A Rejection of an answer whose ticket had expired."""
    return answer.reason == "INVALID_TICKET" and answer.detail.startswith(TICKET_EXPIRED)
