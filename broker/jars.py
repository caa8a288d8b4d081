"""The Kafka runtime: jars fetched from Maven Central with Maven, cached by version."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

POM = Path(__file__).with_name("pom.xml")
MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
CACHE_ENV = "RENKEI_KAFKA_CACHE"


class FetchFailed(RuntimeError):
    """Maven could not fetch the Kafka runtime."""


def kafka_version() -> str:
    """The pinned Kafka version: the `kafka.version` property of broker/pom.xml."""
    node = ET.parse(POM).find("m:properties/m:kafka.version", MAVEN_NS)
    assert node is not None and node.text, "broker/pom.xml has no kafka.version"
    return node.text.strip()


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "renkei"


def libs_dir() -> Path:
    return cache_root() / f"kafka-{kafka_version()}" / "libs"


def _marker() -> Path:
    return libs_dir().parent / "complete"


def fetched() -> bool:
    return _marker().exists()


def fetch() -> tuple[Path, bool]:
    """Copy the runtime jars into the cache unless they are there; return (dir, fetched now)."""
    libs = libs_dir()
    if fetched():
        return libs, False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchFailed("Maven (`mvn`) is not installed: it fetches Kafka from Maven Central")
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise FetchFailed(f"mvn failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    _marker().write_text(kafka_version() + "\n")
    return libs, True
