"""Who may do what on the broker: each principal's grants, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from broker import topics

Resource = Literal["topic", "group", "cluster"]
Pattern = Literal["literal", "prefixed"]

PLATFORM = "platform"
REGISTRY = "registry"
AUTHORITY = "authority"
AUDIT = "audit"
OVERSIGHT = "oversight"
PORTAL = "portal"
SERVICES = (PLATFORM, REGISTRY, AUTHORITY, AUDIT, OVERSIGHT, PORTAL)
RESERVED = frozenset({"admin", "controller", *SERVICES})
PLATFORM_APP = "renkei-platform"
AUDIT_GROUP = "renkei-audit"


@dataclass(frozen=True)
class Grant:
    resource: Resource
    name: str
    operations: tuple[str, ...]
    pattern: Pattern = "literal"


def _read(topic: str) -> Grant:
    return Grant("topic", topic, ("READ", "DESCRIBE"))


def _write(topic: str) -> Grant:
    return Grant("topic", topic, ("WRITE", "DESCRIBE"))


def _read_write(topic: str) -> Grant:
    return Grant("topic", topic, ("READ", "WRITE", "DESCRIBE"))


def _group(name: str, pattern: Pattern = "literal") -> Grant:
    return Grant("group", name, ("READ", "DESCRIBE"), pattern)


SERVICE_GRANTS: dict[str, tuple[Grant, ...]] = {
    PLATFORM: (
        _write(topics.AUDIT), _read(topics.PATTERNS), _read(topics.DIRECTORY),
        _write(topics.REGISTRY_IN), _read(topics.REGISTRY_OUT), _write(topics.AUTHORITY_IN),
        _read(topics.OVERSIGHT_OUT), _write(topics.OVERSIGHT_IN),
        _read(topics.PORTAL_OUT), _write(topics.PORTAL_IN), _read(topics.PORTAL_AUDIT),
        # the decider's topic and the platform's consumer group
        Grant("topic", PLATFORM_APP, ("ALL",), "prefixed"),
        _group(PLATFORM_APP, "prefixed"),
    ),
    REGISTRY: (
        _read(topics.REGISTRY_IN), _write(topics.REGISTRY_OUT), _read(topics.DIRECTORY),
        _read(topics.REGISTRY_PORTAL_IN), _write(topics.REGISTRY_PORTAL_OUT),
        _group("renkei-registry"),
    ),
    AUTHORITY: (
        _read(topics.AUTHORITY_IN), _write(topics.REGISTRY_IN), _write(topics.REGISTRY_OUT),
        _read(topics.DIRECTORY), _read(topics.AUTHORITY_PORTAL_IN),
        _write(topics.AUTHORITY_PORTAL_OUT), _group("renkei-authority"),
    ),
    # the heads it anchors: appended and read, never deleted (no DELETE, no ALTER_CONFIGS)
    AUDIT: (_read(topics.AUDIT), _read(topics.PATTERNS), _read(topics.DIRECTORY),
            _write(topics.ALERTS), _group(AUDIT_GROUP, "prefixed"),
            _read_write(topics.AUDIT_HEADS)),
    OVERSIGHT: (_read(topics.AUDIT), _read(topics.AUDIT_HEADS), _read(topics.DIRECTORY),
                _write(topics.OVERSIGHT_OUT), _read(topics.OVERSIGHT_IN), _read(topics.ALERTS),
                _group("renkei-oversight", "prefixed"),
                # the audit consumer's commits read, not made: the integrity page checks the
                # store against the tree noted with the last one, as `audit verify` does
                Grant("group", AUDIT_GROUP, ("DESCRIBE",))),
    # My Portal and the counter: their actions for the platform to log, residents' applications,
    # the registry side asked whose card logs in, the numbering authority for a new number
    PORTAL: (_write(topics.PORTAL_AUDIT), _read(topics.DIRECTORY), _write(topics.PORTAL_OUT),
             _read(topics.PORTAL_IN), _write(topics.REGISTRY_PORTAL_IN),
             _read(topics.REGISTRY_PORTAL_OUT), _write(topics.AUTHORITY_PORTAL_IN),
             _read(topics.AUTHORITY_PORTAL_OUT)),
}

# grants a service had and no longer has: provisioning takes them back from a broker that holds them
REVOKED: dict[str, tuple[Grant, ...]] = {
    PORTAL: (_write(topics.AUDIT),),  # its actions go through the platform (PORTAL_AUDIT)
}


def holder_group(holder: str) -> str:
    """The consumer-group prefix a holder's processes use."""
    return f"renkei.holder.{holder}."


def holder_grants(holder: str) -> dict[str, tuple[Grant, ...]]:
    """A holder writes only its outbox and reads its inbox, and its outbox (at a start: no
    request kept sent again that the broker has); the platform reads the outbox, writes the
    inbox."""
    outbox, inbox = topics.outbox(holder), topics.inbox(holder)
    return {
        holder: (
            _read_write(outbox), _read(inbox),
            _read(topics.DIRECTORY), _read(topics.PATTERNS),
            _group(holder_group(holder), "prefixed"),
        ),
        PLATFORM: (_read(outbox), _write(inbox)),
    }


def check_holder_id(holder: str) -> str:
    if holder in RESERVED:
        raise ValueError(f"{holder!r} is a reserved principal name, not a holder id")
    return holder
