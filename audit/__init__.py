"""Audit: the access-log events, the tamper-evident store, its proofs and its commands."""
