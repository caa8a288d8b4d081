"""A holder id given on the command line, checked before any path is built from it."""

from __future__ import annotations

from broker import acls, credentials


def registered(holder: str) -> str:
    """`holder`, if it is a valid holder id registered from this state folder (its credentials
    are here: `renkei holder register` or `renkei broker add-holder`); else ValueError."""
    acls.check_holder_id(credentials.check_name(holder))
    if not credentials.known(holder):
        raise ValueError(f"{holder!r} is not a registered holder (renkei holder register "
                         f"{holder} --name … --role …)")
    return holder
