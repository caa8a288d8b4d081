"""A throwaway PostgreSQL server from Debian's packages, on a free loopback port, for the tests."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import debian
from tests.kafka_helpers import free_port

PACKAGE = "postgresql"
SYSTEM_USER = "postgres"
SUPERUSER = "renkei"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on the PATH, or where Debian's packages put them."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def install() -> Path:
    """Install Debian's postgresql if its programs are missing (needs root, as in CI)."""
    found = binaries()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"PostgreSQL is not installed: run `apt-get install -y {PACKAGE}`")
    debian.installed((PACKAGE,), lambda: binaries() is not None, recommends=False)
    found = binaries()
    if found is None:
        raise RuntimeError(f"`apt-get install {PACKAGE}` left no initdb behind")
    return found


def _as_owner(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run it as the packages' system user."""
    return ["runuser", "-u", SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def server() -> Iterator[str]:
    """Start a fresh cluster (fsync off: test data only); yields its admin URL; removes it."""
    bin_dir = install()
    data = Path(tempfile.mkdtemp(prefix="renkei-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SYSTEM_USER)
        os.chown(data, owner.pw_uid, owner.pw_gid)
    port = free_port()
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                              "--auth=trust", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                              "-l", str(data / "server.log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def fresh_schema(admin_url: str, name: str) -> str:
    """A new empty schema in the server; the URL of a connection that works in it."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{admin_url}?options=-csearch_path%3D{name}"

