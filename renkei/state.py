"""The git-ignored state folder: broker data, secrets, keys and stores live here, never in git."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any, TypeVar

STATE_ENV = "RENKEI_STATE"
OWN_STATE = ".state"  # the state folder's name by default, and of those Renkei's runs keep in it

log = logging.getLogger(__name__)
T = TypeVar("T")


def state_dir() -> Path:
    """The state folder: `$RENKEI_STATE`, else `.state` in the working directory; not made
    here (a command that only reads or stops leaves none behind): what writes in it makes the
    folders it writes in (folder_made: private_dir, write_json, held)."""
    return Path(os.environ.get(STATE_ENV) or Path.cwd() / OWN_STATE)


def folder_made(path: Path) -> Path:
    """The folder `path` made with the folders it is in (`mkdir -p`); the state folder among
    them made this user's alone (0700), as its secrets' folders are: its logs and stores name
    holders and requests."""
    top = state_dir()
    if path.is_relative_to(top):
        top.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_tightened() -> None:
    """The state folder, if there, made this user's alone (0700) if it is Renkei's own and
    this user's and others may read it (one made before it was made so). Renkei's own is a
    `.state` folder or one in one (the default; compose's, a bench's, a chaos run's): not a
    folder RENKEI_STATE names that others may use too (`.`, a home, a group's). One not
    Renkei's own, another's (a container's mount point, root's) or one that cannot be changed
    (mounted read-only) is left as it is: said at WARNING."""
    top = state_dir()
    try:
        found = top.stat()
    except FileNotFoundError:
        return
    mode = found.st_mode & 0o777
    if not mode & 0o077:
        return
    if found.st_uid != os.geteuid():
        why = f"it is user {found.st_uid}'s"
    elif OWN_STATE not in Path(os.path.normpath(top.absolute())).parts:  # a link kept as named
        why = f"in no {OWN_STATE} folder, it may be not Renkei's alone: chmod 700 it if it is"
    else:
        try:
            top.chmod(0o700)
            return
        except OSError as exc:
            why = str(exc)
    log.warning("the state folder %s stays readable by others (mode %o): %s", top, mode, why)


@contextmanager
def state_folder(path: Path) -> Iterator[Path]:
    """`$RENKEI_STATE` = `path` for this process and those it starts; restored after."""
    before = os.environ.get(STATE_ENV)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ[STATE_ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(STATE_ENV, None)
        else:
            os.environ[STATE_ENV] = before


class NotPrivate(RuntimeError):
    """A folder that must be private is another user's, and others may read it."""


class InUse(RuntimeError):
    """Another run holds this state folder."""


@contextmanager
def held(path: Path, what: str) -> Iterator[None]:
    """`path` (a state folder a run starts anew or reuses, or a file one process keeps, as the
    portal's inbox) for this process alone while it runs: a second `what` there is refused at
    once (InUse), instead of stopping the first one's broker, mixing its records into the first
    one's or keeping state in memory beside it. The lock is a file beside `path` (it outlives a
    folder being emptied) and goes with the process, whatever ends it."""
    folder_made(path.parent)
    with open(path.parent / f"{path.name}.lock", "a+", encoding="ascii") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise InUse(f"another {what} is running in {path} (process {holder}): "
                        "wait for it to end") from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


@contextmanager
def _flocked(path: Path, flags: int) -> Iterator[None]:
    """`path`, opened with `flags` (made this user's alone if they create it), locked (flock)."""
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def folder_locked(path: Path) -> AbstractContextManager[None]:
    """The folder `path` locked (flock, which a read-only mount allows) while this process reads
    and rewrites files in it that others rewrite too: files replaced whole (a new inode each
    time) cannot be locked themselves, their folder can."""
    return _flocked(path, os.O_RDONLY)


def file_locked(path: Path) -> AbstractContextManager[None]:
    """The lock file `path` (made if missing, never replaced) locked while this process reads and
    rewrites the one file replaced whole it stands for, where its folder's lock would make those
    on the folder's other files wait too."""
    return _flocked(path, os.O_RDONLY | os.O_CREAT)


@asynccontextmanager
async def file_awaited(path: Path, held_by: str, every: float = 0.05,
                       patience: float = 2.0) -> AsyncIterator[None]:
    """The lock file `path` (made if missing) locked (flock) while this task does what one
    process or task at a time may do; waited for, `every` seconds asked again, so that the
    event loop goes on meanwhile (another of its tasks may hold it), and given up when the task
    is cancelled. Waited for `patience` seconds, what holds it (`held_by`) is said once at
    WARNING (one hung, or stopped with Ctrl-Z, holds it for ever), and waited for on."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    said_at: float | None = time.monotonic() + patience
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if said_at is not None and time.monotonic() >= said_at:
                    log.warning("waiting for %s (%s): Ctrl-C ends this command", held_by, path)
                    said_at = None
                await asyncio.sleep(every)
        yield
    finally:
        os.close(fd)


def state_path(*parts: str) -> Path:
    """A path under the state folder, not made here (a command that only reads tells it is not
    there yet); ValueError for a part that would lead out of the state folder."""
    for part in parts:
        if not part or PurePath(part).is_absolute() or ".." in PurePath(part).parts:
            raise ValueError(f"{part!r} would lead out of the state folder")
    return state_dir().joinpath(*parts)


def private_dir(*parts: str, made: bool = True) -> Path:
    """A folder under the state folder that only this user may read. One already so is left
    as it is (a container may mount it read-only), and so is one root made (a container's
    mount point for the files mounted into it, as compose.yaml's): only its owner could change
    it, and the files in it keep their own modes; unless others may write in it (anyone could
    put their own key there): that one is chmodded, which its owner or root alone may do.
    Another user's that others may read is not private: NotPrivate. Made if missing, unless
    not `made`: what only reads gets the path it would be at and tells it is not there."""
    path = state_path(*parts)
    if not made and not path.exists():
        return path
    folder_made(path.parent)
    path.mkdir(exist_ok=True, mode=0o700)
    found = path.stat()
    mode = found.st_mode & 0o777
    if mode != 0o700 and (found.st_uid == os.geteuid() or mode & 0o022):
        path.chmod(0o700)
    elif mode & 0o077 and found.st_uid != 0:
        raise NotPrivate(f"{path} is user {found.st_uid}'s and others may read it (mode "
                         f"{mode:o}): it is not private; make it yours (chown {os.geteuid()} "
                         f"{path}) or its owner's alone (chmod 700 {path}), or use a state "
                         f"folder of your own (${STATE_ENV})")
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file readable by this user only (secrets, configs that embed them)."""
    _write(path, text, 0o600)


def write_public(path: Path, text: str) -> None:
    """Write a file every user may read (what verifiers read: a CA's certificate, its CRL)."""
    _write(path, text, 0o644)


def write_json(path: Path, data: Any, private: bool = False, new: bool = False) -> None:
    """Write `data` as JSON; if `new`, only where no file is (else FileExistsError)."""
    _write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n",
           0o600 if private else 0o644, new)


def _write(path: Path, text: str, mode: int, new: bool = False) -> None:
    """Write whole or not at all: a reader never sees a half-written file. If `new`, the file
    must not be there yet: of two processes making it at once, one wins, the other gets
    FileExistsError (link, like O_EXCL, fails on a name that exists) and nothing is replaced."""
    folder_made(path.parent)
    # a name no one can guess, made here (O_EXCL, 0600): a file another user made in the
    # folder under a predictable one would be written into, kept as theirs, and moved in place
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    partial = Path(name)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if not new:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)
    finally:
        partial.unlink()


def kept_aside(path: Path) -> Path:
    """A copy of the file `path` beside it before it is replaced, named for the time
    (`.env.20261205T195500Z.bak`; `.env.20261205T195500Z.2.bak` the second kept within that
    second), readable by this user only (it may hold secrets); never over another."""
    stamp = f"{path.name}.{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    n = 1
    while True:
        aside = path.with_name(f"{stamp}.bak" if n == 1 else f"{stamp}.{n}.bak")
        try:
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(path.read_bytes())
            return aside


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_or(read: Callable[[], T], damaged: Callable[[str], Exception]) -> T:
    """What `read` makes of a file (a key's, in JSON); `damaged(why)` raised in its place, in
    one line, if the file is not what it is for: not JSON, a field missing, a value of another
    form (`why`: which of them)."""
    try:
        return read()
    except (ValueError, KeyError, TypeError) as exc:
        raise damaged(type(exc).__name__) from None
