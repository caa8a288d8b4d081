"""Stores' files read by a process of their own: this one may hold a connection on the store
(the suite's holders' libraries, started once for the session), and closing a file of it this
process opened drops every POSIX lock the process holds on the file, that connection's too:
another process would take itself for the store's last one and delete its write-ahead log, and
what the connection committed after would be written to the deleted file, lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SCAN = """import errno
import os
import sys
from pathlib import Path


def written(path):
    # The file's bytes but its holes: the broker preallocates each partition's indexes at
    # 10 MiB, sparse (most of the state folder's size, GBs of zeros read for nothing), and a
    # needle, no NUL byte in it, cannot lie in or across a hole.
    with open(path, "rb") as file:
        at, end = 0, os.fstat(file.fileno()).st_size
        while at < end:
            try:
                at = os.lseek(file.fileno(), at, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data past `at`
                    return
                raise
            hole = os.lseek(file.fileno(), at, os.SEEK_HOLE)
            file.seek(at)
            yield file.read(hole - at)
            at = hole


needles = [bytes.fromhex(line) for line in sys.stdin.read().split()]
if any(0 in needle for needle in needles):
    sys.exit("a needle with a NUL byte could lie across a hole")
for place in map(Path, sys.argv[1:]):
    for path in [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]:
        try:
            held = list(written(path))
        except FileNotFoundError:  # gone since it was listed (the broker's checkpoint .tmp files)
            continue
        for index, needle in enumerate(needles):
            if any(needle in data for data in held):
                print(index, path)
"""


def containing(places: list[Path], *needles: bytes) -> dict[bytes, list[Path]]:
    """Each needle → every file under these places (files or folders) whose bytes contain it,
    each file read once (the broker's segments and preallocated indexes are most of the state
    folder)."""
    found: dict[bytes, list[Path]] = {needle: [] for needle in needles}
    said = subprocess.run([sys.executable, "-c", _SCAN, *map(str, places)],
                          input="\n".join(needle.hex() for needle in needles).encode(),
                          capture_output=True, check=True).stdout
    for line in said.decode().splitlines():
        index, path = line.split(" ", 1)
        found[needles[int(index)]].append(Path(path))
    return found


def copied(source: Path, target: Path, *left_out: str) -> None:
    """The folder `source` copied to `target` but for the names `left_out` (globs)."""
    copy = ("import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], "
            "ignore=shutil.ignore_patterns(*sys.argv[3:]))")
    subprocess.run([sys.executable, "-c", copy, str(source), str(target), *left_out],
                   check=True)
