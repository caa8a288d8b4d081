"""A town on Renkei: the registry, the numbering authority, the demo holders with their own
stores, the directory and the pattern list — and the processes that serve them."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from authority import store as authority_store
from authority.service import NumberingAuthority
from broker import provision
from holders.ping import ping
from holders.samples import SAMPLES, SampleHolder, own_number, populate
from holders.store import HolderStore, default_path
from processors import directory, keys, patterns
from registry import store as registry_store
from registry import tickets
from registry.residents import Resident
from renkei import sqlite
from renkei.logs import begun
from renkei.state import InUse, held, state_dir
from renkei.tether import GRACE_SECONDS, tethered
from schemas.messages import HolderEntry

# the services around the platform, each by its name and the command that runs it
SERVICES = {"registry": ("registry", "serve"), "authority": ("authority", "serve"),
            "audit": ("audit", "run")}
CONSENT = 0.9  # share of a private holder's people who gave consent
MADE_BY = "made_by"  # the registry's meta key naming what made it; a town's says TOWN
TOWN = "renkei town"  # also the founding operator the audit log names for its pattern list


@dataclass
class Town:
    residents: int
    seed: int
    held: dict[str, list[Resident]] = field(default_factory=dict)

    def sample(self, holder: str) -> SampleHolder:
        return next(s for s in SAMPLES if s.holder_id == holder)

    def own_numbers(self, holder: str) -> dict[str, str]:
        """Resident code → the holder's own number, for every resident it holds."""
        sample = self.sample(holder)
        return {r.resident_code: own_number(sample, n)
                for n, r in enumerate(self.held[holder], start=1)}

    def shared(self, first: str, second: str) -> list[tuple[str, str]]:
        """Residents both holders hold, as (first's own number, second's own number)."""
        theirs = self.own_numbers(second)
        return [(own, theirs[code]) for code, own in self.own_numbers(first).items()
                if code in theirs]


def check_registry(replace: bool = False) -> None:
    """Refuse to rebuild a registry a town did not make (the operator's own), unless `replace`."""
    path = registry_store.default_path()
    if replace or not path.exists():
        return
    registry = registry_store.RegistryStore.open(path)
    try:
        made_by = registry.meta(MADE_BY)
    finally:
        registry.close()
    if made_by != TOWN:
        raise registry_store.RegistryExists(
            f"a registry not made by a demo town is at {path}: a town would replace it; pass "
            "--replace, or use a fresh state folder (RENKEI_STATE=…)")


def directory_entry(sample: SampleHolder) -> HolderEntry:
    """The holder's directory entry as the town's set-up publishes it."""
    return directory.holder_entry(sample.holder_id, sample.name, sample.role, sample.unit,
                                  sample.private)


@contextmanager
def stores_held(samples: tuple[SampleHolder, ...]) -> Iterator[None]:
    """The holders' stores this process's alone (HolderStore.held's lock) while a town removes and
    makes them again: one a holder library (a holder's server) runs on is refused at once, before
    anything is rebuilt (InUse, naming the store and the process holding it), not deleted under
    it."""
    with ExitStack() as stack:
        for sample in samples:
            holder = sample.holder_id
            try:
                stack.enter_context(held(default_path(holder), f"holder library of {holder}"))
            except InUse as exc:
                raise InUse(f"a town would remove the holders' stores: {exc}") from None
        yield


def build(residents: int, seed: int, samples: tuple[SampleHolder, ...] = SAMPLES,
          replace: bool = False) -> Town:
    """Set everything up (idempotent for the broker; the registry and stores are rebuilt, a
    registry a town did not make only if `replace`, no store a holder library runs on). Of the
    sample legal pattern list, only the versions not on the list are published, logged as TOWN's
    PUBLISH: one an operator changed since stays as they left it (patterns.not_listed)."""
    check_registry(replace)
    with stores_held(samples):
        return _built(residents, seed, samples)


def _built(residents: int, seed: int, samples: tuple[SampleHolder, ...]) -> Town:
    provision.provision()
    keys.init()
    tickets.init()
    registry_store.build(registry_store.default_path(), residents, seed, replace=True,
                         noted={MADE_BY: TOWN})
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    numbers = authority_store.AuthorityStore(authority_store.default_path())
    authority = NumberingAuthority(numbers)
    authority.assign_registry(registry)
    town = Town(residents, seed)
    admin = provision.admin_client()
    entries = directory.service_entries()
    try:
        for sample in samples:
            provision.add_holder(admin, sample.holder_id, provision.Report())
            entries.append(directory_entry(sample))
            sqlite.removed(default_path(sample.holder_id))
            store = HolderStore.of(sample.holder_id)
            town.held[sample.holder_id] = populate(store, sample, registry,
                                                   numbers.number_of, seed)
            store.close()
            if sample.private:
                rng = random.Random(f"{seed}/consent")
                for resident in town.held[sample.holder_id]:
                    if rng.random() < CONSENT:
                        registry.give_consent(resident.resident_code, sample.holder_id,
                                              date(2026, 4, 1))
    finally:
        registry.close()
        numbers.close()
    asyncio.run(directory.publish(entries))
    asyncio.run(directory.publish_patterns(patterns.load(), TOWN, "the demo town's sample",
                                           chosen=patterns.not_listed))
    return town


def platform_name(instance: int) -> str:
    """The name of a town's platform instance `instance` (from 1): its process's, and its member's
    of the platform's consumer group (Processes.start_platform)."""
    return f"platform-{instance}"


def platform_names(instances: int) -> list[str]:
    """The names of a town's `instances` platform instances."""
    return [platform_name(n) for n in range(1, instances + 1)]


def log_path(name: str) -> Path:
    """Where a town's process `name` logs (Processes.start): logs/ of the state folder."""
    return state_dir() / "logs" / f"{name}.log"


def renkei_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("renkei")), *args]


@dataclass
class Processes:
    """The long-running processes of a town, each logging into the state folder, each stopping
    once this process has gone."""

    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ready_after: float = 0.0
    logged: set[str] = field(default_factory=set)  # the names whose log this run has begun

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`renkei *args` as `name`, its output in logs/<name>.log: begun afresh at its first
        start in this run (the run before's kept as <name>.log.1: logs do not grow run after
        run), gone on with at a start again (a killed process's restart: its last lines kept)."""
        log = log_path(name)
        if name not in self.logged:
            begun(log)
            self.logged.add(name)
        with log.open("ab") as output:
            proc = subprocess.Popen(renkei_command(*args), stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=tethered())
        self.running[name] = proc
        return proc

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """One of SERVICES, by its name."""
        return self.start(name, *SERVICES[name])

    def stop(self, name: str, timeout: float = GRACE_SECONDS) -> None:
        self._stop([self.running.pop(name)], timeout)

    def start_platform(self, instance: int, answer_timeout: float = 30.0,
                       loglevel: str = "warning") -> subprocess.Popen[bytes]:
        """A platform instance, `platform-N`, joining the platform's consumer group."""
        name = platform_name(instance)
        return self.start(name, "platform", "run", "--instance", str(instance), "--member", name,
                          "--answer-timeout", str(answer_timeout), "--loglevel", loglevel)

    def ended(self) -> dict[str, int]:
        """Each process that ended by itself (not stopped or killed through this), its exit code."""
        return {name: code for name, proc in self.running.items()
                if (code := proc.poll()) is not None}

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no clean shutdown, no goodbye to the broker."""
        proc = self.running.pop(name)
        proc.kill()
        proc.wait()

    def stop_all(self, timeout: float = GRACE_SECONDS) -> None:
        """Every process told at once (each finishes its batch and leaves), then awaited."""
        procs, self.running = list(self.running.values()), {}
        self._stop(procs, timeout)

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
        """SIGTERM once to each (a second, once its loop is over, would kill it mid-exit:
        writing its profile, say), then killed if still there after `timeout`."""
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def services(platform_instances: int = 1, answer_timeout: float = 30.0,
             probe: str = SAMPLES[0].holder_id, loglevel: str = "warning") -> Iterator[Processes]:
    """The platform, registry, authority and audit consumer running; ready when a ping goes
    through."""
    procs = Processes()
    try:
        for n in range(1, platform_instances + 1):
            procs.start_platform(n, answer_timeout, loglevel)
        for name in SERVICES:
            procs.start_service(name)
        started = time.monotonic()
        asyncio.run(ping(probe, within=120))
        procs.ready_after = time.monotonic() - started
        yield procs
    finally:
        procs.stop_all()
