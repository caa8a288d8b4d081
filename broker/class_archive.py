"""Kafka's classes archived for the broker's JVM (AppCDS), made once beside the cached jars by
`renkei broker fetch`: a broker started from it is ready on about half the CPU (4.6-5.2 s
instead of 8.5-9.8 s to ready, on this 2-core machine)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from broker import jars

# an archive not of this JVM build and classpath is passed over by the JVM, which would say so on
# the broker's stdout: unsaid, as the broker starts just the same, without it
QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off", "-Xlog:class+path=off")


def path(java_bin: str) -> Path:
    """Where the archive of `java_bin` is: an archive is its JVM build's own (its libjvm, whose
    file a JDK upgraded in place replaces), and of the jars it was made from (cached by
    version)."""
    real = Path(java_bin).resolve()
    jvm = real.parent.parent / "lib" / "server" / "libjvm.so"
    built = (jvm if jvm.exists() else real).stat()
    build = hashlib.sha256(f"{real}\0{built.st_size}\0{built.st_mtime_ns}".encode())
    return jars.libs_dir().parent / f"classes-{build.hexdigest()[:16]}.jsa"


def options(java_bin: str) -> tuple[str, ...]:
    """The options that start a broker from the archive, once it is made (none before)."""
    archive = path(java_bin)
    return (f"-XX:SharedArchiveFile={archive}", *QUIET) if archive.exists() else ()


def checking(archive: Path) -> tuple[str, ...]:
    """The options of a JVM that fails at its start unless it can start from `archive`."""
    return ("-Xshare:on", f"-XX:SharedArchiveFile={archive}")


def making(to: Path) -> tuple[str, ...]:
    """The options of the JVM that archives the classes it loaded into `to` as it exits."""
    return (f"-XX:ArchiveClassesAtExit={to}", *QUIET)
