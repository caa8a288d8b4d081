"""Card login: the portal's challenge, the trip to the card reader, and the checks on return.

Realms: `resident` (My Portal, a JPKI card), `counter` and `oversight` (an officer card with that
role), and `present` (at the counter, the resident standing there logs in with their own card,
inside the staff member's session). The certificate leads to the resident only through the
registry side's table of cards, asked of its process with the login itself (certificate, origin,
challenge and signature), which that side checks again before it tells the resident's ID codes.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import urlencode

from aiohttp import web

from cards import ca
from cards.login import (
    FORGED_MARK,
    FROM_THE_FUTURE,
    NO_CA,
    NOT_YET_VALID,
    REVOKED,
    UNCHECKABLE,
    Refused,
    challenge,
)
from portal.context import PLATFORM
from portal.services import Unanswered
from portal.sessions import Challenge, Officer, Session, Signed
from portal.web import READER_RETURN, SESSION, SESSIONS, SITE, login_page, render, session_of
from renkei import quiet_http
from renkei.questions import NO_REPLY_KEY
from schemas.messages import CardLogin

log = logging.getLogger(__name__)
REALMS = {"resident": ca.JPKI, "counter": ca.OFFICERS, "oversight": ca.OFFICERS,
          "present": ca.JPKI}
# the realms whose login a page is asked for by its address (a counter visitor's is the desk's,
# and is offered again when refused)
OWN_PAGE = frozenset(REALMS) - {"present"}
SIGNED = "/login/signed"  # where the reader's return sends the login's browser on to
HOME = {"resident": "/history", "counter": "/counter", "oversight": "/oversight",
        "present": "/counter"}
# why the portal or the registry side (registry.portal) refused a login, in the page's words:
# a signature for another site, or a question no answer can be sealed to, the portal's fault; a
# CA's revocation list stale, missing or not the CA's (cards.login), no card's; a challenge
# from the future, the portal's clock ahead of the registry side's, and a card whose certificate
# is not valid yet, the CA's clock ahead of the checker's; one whose mark is forged, or
# checked against a CA certificate that cannot be read, the portal's fault
REFUSALS = {REVOKED: "refused_revoked", "expired": "refused_expired",
            "unknown-card": "refused_unknown", "wrong-role": "refused_role",
            "challenge": "refused_challenge", "unknown-challenge": "refused_not_under_way",
            "too-many-logins": "refused_too_many",
            FROM_THE_FUTURE: "refused_clock", NOT_YET_VALID: "refused_clock",
            "unanswered": "refused_unanswered",
            "origin": "refused_portal", NO_REPLY_KEY: "refused_portal",
            FORGED_MARK: "refused_portal", NO_CA: "refused_portal",
            **dict.fromkeys(UNCHECKABLE, "refused_crl")}


async def page(request: web.Request) -> web.Response:
    realm = request.query.get("as", "resident")
    return render(request, "login.html", realm=realm if realm in OWN_PAGE else "resident",
                  refused=None)


async def start(request: web.Request) -> web.Response:
    """Make a challenge for this browser and send it to the card reader with it: in the session
    renewed, whose id this browser alone is given (a login started in a session planted in
    another's browser, its id known, completes in none)."""
    realm = str((await request.post()).get("realm", ""))
    if realm not in REALMS or (realm == "present" and _counter_staff(session_of(request)) is None):
        raise web.HTTPForbidden(text="no such login")
    session = request[SESSION] = request.app[SESSIONS].renew(session_of(request),
                                                             login_start=True)
    wall = request.app[SESSIONS].wall
    at, mark = wall(), wall.mark()
    nonce = challenge(at, mark)  # signed with its time and mark: the registry side refuses it stale
    request.app[SESSIONS].challenge(session, Challenge(nonce, realm, at, mark))
    site = request.app[SITE]
    query = urlencode({"origin": site.origin, "authority": REALMS[realm],
                       "challenge": nonce.hex(), "return": f"{site.origin}{READER_RETURN}"})
    raise web.HTTPSeeOther(f"{site.reader}/sign?{query}")


def _counter_staff(session: Session) -> Officer | None:
    """The counter staff logged in to the session, if any: a visitor's login is theirs."""
    officer = session.officer
    return officer if officer is not None and officer.role == "counter" else None


async def returned(request: web.Request) -> web.Response:
    """The reader's return, posted from the reader's own site (no session's cookie comes with
    it): what it returned kept with the challenge it names, the browser sent on to `card`."""
    form = await quiet_http.form(request)
    nonce = str(form.get("challenge", ""))
    request.app[SESSIONS].sign(nonce, Signed(str(form.get("certificate", "")),
                                             str(form.get("signature", ""))))
    raise web.HTTPSeeOther(f"{SIGNED}?{urlencode({'challenge': nonce})}")


async def card(request: web.Request) -> web.Response:
    """The login's browser come back from the reader (a top-level GET: its session's cookie
    comes with it): the challenge must be one of this session's pending ones, returned, used
    once; a login started in another session completes in none but that one."""
    session = session_of(request)
    nonce = request.query.get("challenge", "")
    asked = session.named(nonce)  # its realm is the login to offer again if this one is refused
    if asked is None:  # used, replaced by newer logins of this browser's, or none of its own
        return _refused(request, _offered(session), "too-many-logins" if session.too_many(nonce)
                        else "unknown-challenge")
    pending = session.take_challenge(nonce, request.app[SESSIONS].wall)
    if pending is None or pending.signed is None:
        return _refused(request, asked.realm, "challenge")
    platform = request.app[PLATFORM]
    certificate, origin = pending.signed.certificate, request.app[SITE].origin
    try:
        signature = bytes.fromhex(pending.signed.signature)
        verified = platform.verifier.verify(REALMS[pending.realm], certificate.encode(), origin,
                                            pending.nonce, signature)
    except ValueError:
        return _refused(request, pending.realm, "bad-signature")
    except Refused as exc:
        return _refused(request, pending.realm, exc.reason)
    if REALMS[pending.realm] == ca.JPKI:
        try:
            resident = await platform.resident_of_card(
                verified.serial, CardLogin(certificate, origin, pending.nonce, signature))
        except Refused as exc:  # by the registry side, which checks the login again
            return _refused(request, pending.realm, exc.reason)
        except Unanswered:
            return _refused(request, pending.realm, "unanswered", status=503)
        if resident is None:
            return _refused(request, pending.realm, "unknown-card")
        if pending.realm == "present":
            staff = _counter_staff(session)  # logged out, or in as another, in another tab?
            if staff is None:
                return _refused(request, "counter", "wrong-role")
            session.present = None  # shown only once its look-up is logged
            await platform.kafka.counter(staff, resident, "COUNTER_VIEWED")
            session.present = resident
        else:
            fresh = request.app[SESSIONS].renew(replace(session, officer=None, present=None,
                                                        resident=resident))
            request[SESSION] = fresh
    else:
        if verified.role != pending.realm:
            return _refused(request, pending.realm, "wrong-role")
        officer = Officer(verified.serial, verified.common_name, verified.organization,
                          verified.role)
        request[SESSION] = request.app[SESSIONS].renew(replace(
            session, officer=officer, resident=None, present=None))
    raise web.HTTPSeeOther(HOME[pending.realm])


def _offered(session: Session) -> str:
    """The login offered again for a return naming no login under way: the newest under way,
    else a visitor's at a counter desk, else the officer's own, else a resident's."""
    if session.challenges:
        return next(reversed(session.challenges.values())).realm
    if _counter_staff(session) is not None:
        return "present"
    return session.role or "resident"


def _refused(request: web.Request, realm: str, reason: str, status: int = 403) -> web.Response:
    log.warning("card login refused (%s): %s", realm, reason)
    return render(request, "login.html", status=status, realm=realm, here=_login_page(realm),
                  refused=REFUSALS.get(reason, "refused_other"))


def _login_page(realm: str) -> str:
    """The page a `realm`'s login starts from (a counter visitor's: the desk)."""
    return login_page(realm) if realm in OWN_PAGE else HOME["present"]


async def logout(request: web.Request) -> web.Response:
    """End the session, a new one in its language in its place; to its side's login page (its
    officer's role's, else a resident's)."""
    ended = session_of(request)
    request.app[SESSIONS].end(ended)
    request[SESSION] = request.app[SESSIONS].new(ended.lang)
    raise web.HTTPSeeOther(login_page(ended.role))
