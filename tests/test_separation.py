"""No logical path from a personal number to an ID code: separate keys, stores and code.

The numbering authority cannot compute ID or link codes: it has no key, loads no part of the
platform's code service and runs without its key store. The platform cannot turn a personal number
into an ID code by itself: its code service takes resident codes, and the only way from a number
to a resident code is the authority's logged look-up. My Portal opens neither the authority's
store nor the registry side's (it asks their processes), and has no key of the codes: the
registry side has the ID key alone (no link code), and tells the ID codes of a card's holder
for a login of that card.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli import authority_cli
from authority.service import NumberingAuthority
from authority.store import AuthorityStore
from processors import keys
from processors.codes import CodeService, IdCodes, InvalidCode, UnitEpoch
from processors.keys import MasterKeys
from registry import serve as registry_serve
from registry import store as registry_store
from registry.resident_code import random_codes
from renkei.state import STATE_ENV


def loaded_by(package: str) -> set[str]:
    """Every module a fresh interpreter has loaded after importing all modules of `package`."""
    script = ("import importlib, json, pkgutil, sys\n"
              f"package = importlib.import_module({package!r})\n"
              "for m in pkgutil.iter_modules(package.__path__):\n"
              "    importlib.import_module(package.__name__ + '.' + m.name)\n"
              "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent)
    return set(json.loads(out.stdout))


def _of(package: str, modules: set[str]) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


def test_the_authority_loads_nothing_of_the_platforms_codes_or_keys() -> None:
    loaded = loaded_by("authority")
    assert {"authority.service", "authority.store", "authority.cli"} <= loaded
    assert _of("processors", loaded) == set()


def test_the_platform_loads_nothing_of_the_authority() -> None:
    loaded = loaded_by("processors")
    assert {"processors.codes", "processors.keys", "processors.ff1"} <= loaded
    assert _of("authority", loaded) == set()


def test_the_portal_loads_nothing_of_the_authority_or_the_registrys_stores() -> None:
    """My Portal asks the numbering authority's own process for a resident's new number, and
    the registry side's whose card logs in: it opens neither's store nor runs their code, and
    loads nothing of the platform's codes or keys."""
    loaded = loaded_by("portal")
    assert {"portal.app", "portal.services"} <= loaded
    assert _of("authority", loaded) == set()
    assert _of("processors", loaded) == set()
    assert _of("registry", loaded) == set()  # the refusals it words too: renkei.refusals
    assert "cards.jlis" not in loaded


def test_the_registry_side_reads_the_id_key_alone(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry side turns a card holder's codes into the ID codes My Portal finds their
    entries by: it reads the ID key's own file, not the masters (so no holder's link-code key,
    nor the platform's sealing key), and what it has converts nothing into a link code."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    keys.init()
    residents = random_codes(5, seed=3)
    expected = CodeService(keys.load()).id_codes(residents)
    keys.store_path().unlink()  # the masters gone: the registry side never needed them
    codes = registry_serve.id_codes()
    assert codes.id_codes(residents) == expected
    assert type(codes) is IdCodes and not hasattr(codes, "_keys")
    assert not [name for name in dir(codes) if "link" in name or "resident_code" in name]


def test_the_authority_runs_without_the_key_store(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 200, 1)
    runner = CliRunner()
    assert runner.invoke(authority_cli, ["assign-all"]).exit_code == 0
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    code = next(registry.resident_codes())
    registry.close()
    number = runner.invoke(authority_cli, ["number-of"], input=code).output.strip()
    looked_up = runner.invoke(authority_cli, ["lookup", "--holder", "pension",
                                              "--purpose", "benefit"], input=number)
    assert looked_up.output.strip() == code
    assert not (tmp_path / "keys").exists()  # never needed, never created


def test_the_code_service_takes_no_personal_number(tmp_path: Path) -> None:
    codes = CodeService(MasterKeys.generate())
    for name, method in inspect.getmembers(codes, inspect.ismethod):
        if not name.startswith("_"):
            assert "number" not in name
            assert not [p for p in inspect.signature(method).parameters if "number" in p]
    store = AuthorityStore(tmp_path / "authority.db")
    resident = random_codes(1, seed=1)[0]
    number = NumberingAuthority(store).assign(resident)
    store.close()
    unit = UnitEpoch("city-a", 0)
    attempts: list[Callable[[], str]] = [lambda: codes.id_code(number),
                                         lambda: codes.link_code(number, unit),
                                         lambda: codes.resident_code(number, unit)]
    for attempt in attempts:
        with pytest.raises(InvalidCode):
            attempt()


def test_the_only_way_from_a_number_is_the_authoritys_logged_lookup(tmp_path: Path) -> None:
    codes = CodeService(MasterKeys.generate())
    store = AuthorityStore(tmp_path / "authority.db")
    authority = NumberingAuthority(store)
    residents = random_codes(100, seed=2)
    authority.assign_all(residents)
    unit = UnitEpoch("tax-office", 0)
    for resident in residents[:10]:
        number = authority.number_of(resident)
        assert number is not None
        through_authority = authority.lookup(number, "tax-office", "binding by personal number")
        assert through_authority == resident
        assert codes.link_code(through_authority, unit) == codes.link_code(resident, unit)
    assert [e.holder for e in store.lookups()] == ["tax-office"] * 10
    store.close()
