"""Poison isolation: a batch that fails on something unforeseen is handled again one item at a
time, so one bad item costs only itself and the partition keeps moving; should even its
fallback answer fail, the item is dropped (and logged) rather than stop the partition."""

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
            out += _answered(failed, item, exc)
    return out


def _answered(failed: Callable[[T, Exception], list[Send]], item: T,
              exc: Exception) -> list[Send]:
    """What `failed` makes of an item that failed for good; nothing if it fails too."""
    try:
        return failed(item, exc)
    except Exception:
        log.exception("the answer to an item that failed for good failed too: it is dropped")
        return []
