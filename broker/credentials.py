"""SASL/SCRAM principals and their generated passwords, kept in the state folder."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from renkei.shown import short
from renkei.state import private_dir, read_json, write_json

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # fullmatch


class UnknownPrincipal(LookupError):
    """No credentials for that principal in the state folder."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(
            f"invalid principal name {short(name)!r}: use a-z, 0-9 and '-', at most 63 characters"
        )
    return name


def _path(username: str, made: bool = True) -> Path:
    """`username`'s credentials' file; its folder made unless not `made` (private_dir)."""
    return private_dir("secrets", made=made) / f"{check_name(username)}.json"


def issue(username: str) -> Credentials:
    """Credentials for `username`: the stored ones, or new ones generated and stored."""
    return load(username) if _path(username).exists() else _new(username)


def renew(username: str) -> Credentials:
    """New credentials for `username` (one with credentials here), stored in place of its
    old ones: the broker lets it log in with them once given them (provision.renew_password)."""
    load(username)
    return _new(username)


def _new(username: str) -> Credentials:
    """New credentials for `username`, generated and stored."""
    creds = Credentials(username, secrets.token_urlsafe(32))
    write_json(_path(username), {"username": creds.username, "password": creds.password},
               private=True)
    return creds


def known(username: str) -> bool:
    """Whether the state folder holds credentials for `username` (a valid name)."""
    return _path(username, made=False).exists()


def load(username: str) -> Credentials:
    path = _path(username, made=False)
    if not path.exists():
        raise UnknownPrincipal(f"no credentials for principal {username!r} in {path.parent}: "
                               "`renkei broker provision` makes the services', `renkei holder "
                               "register` a holder's")
    data = read_json(path)
    return Credentials(data["username"], data["password"])
