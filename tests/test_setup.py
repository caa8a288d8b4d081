"""What `make setup` leaves (the editable install of the repository), and what the tests install."""

from __future__ import annotations

import sysconfig
from importlib.metadata import distributions
from pathlib import Path

from tests import debian

ROOT = Path(__file__).parent.parent


def test_the_editable_install_is_a_plain_path_entry() -> None:
    """A flat layout with no package-dir had setuptools install a meta-path finder of its own,
    warning at length in every `make setup` ("Editable installation. … Please be careful with
    folders in your working directory …"): the repository is put on sys.path by a .pth file,
    and nothing else is installed to find its packages."""
    (installed,) = distributions(name="renkei", path=[sysconfig.get_paths()["purelib"]])
    files = installed.files or []
    assert not [file for file in files if "finder" in file.name], files
    (pth,) = (file for file in files if file.name.endswith(".pth"))
    assert Path(pth.read_text(encoding="utf-8").strip()) == ROOT.resolve()


def test_packages_another_process_installed_while_this_one_waited_are_not_installed_again(
        ) -> None:
    """Two workers of a parallel run asking for one package: the second, given the lock once
    the first has installed it, finds it there and runs no apt-get (which, for this package no
    archive has, would fail)."""
    asked = iter([False, True])
    debian.installed(("renkei-no-such-package",), lambda: next(asked))
    assert next(asked, None) is None
