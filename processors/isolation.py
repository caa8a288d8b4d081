"""Poison isolation: a batch that fails on something unforeseen is handled again one item at a
time, so one bad item costs only itself and the partition keeps moving."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from renkei.envelope import Send

T = TypeVar("T")
log = logging.getLogger(__name__)


def isolated(items: Sequence[T], handle: Callable[[list[T]], list[Send]],
             failed: Callable[[T, Exception], list[Send]]) -> list[Send]:
    try:
        return handle(list(items))
    except Exception:
        log.exception("a batch of %d failed: handling it one item at a time", len(items))
    out: list[Send] = []
    for item in items:
        try:
            out += handle([item])
        except Exception as exc:
            log.exception("an item failed for good")
            out += failed(item, exc)
    return out
