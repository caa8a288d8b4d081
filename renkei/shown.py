"""Untrusted text as a message shows it: cut to a width, its length said, never echoed whole."""

from __future__ import annotations


def short(text: str, width: int = 48) -> str:
    """`text` itself if it fits `width`, else its first `width` characters and its length."""
    return text if len(text) <= width else f"{text[:width]}…({len(text)} chars)"
