"""`renkei chaos crash` (processes killed under load) and `renkei chaos report` (every chaos
result in one report)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from renkei import logs
from renkei.crash_chaos import FROZEN_FOR, SUSPENDED_FOR, CrashChaos, run_crash_chaos
from renkei.options import (
    FiniteRange,
    SaidDefault,
    residents_option,
    result_option,
    seed_option,
)
from renkei.state import state_dir, write_json

RESULTS = Path("results")
CRASH_RESULT = RESULTS / "chaos-crash.json"
REPORT = RESULTS / "chaos-report.json"
PARTS = ("crash", "broker", "fuzz", "misbinding")  # results/chaos-<part>.json


@click.command("crash", short_help="Kill -9 each part of the system in turn under load.")
@click.option("--seconds", type=FiniteRange(min=5), default=60.0, show_default=True,
              help="how long to send requests (kills stop with it)")
@click.option("--rate", type=FiniteRange(min=0.5), default=20.0, show_default=True,
              help="lawful requests per second (one in ten a binding)")
@click.option("--instances", type=click.IntRange(1, 8), default=3, show_default=True,
              help="platform instances in the consumer group")
@click.option("--every", type=FiniteRange(min=1), default=4.0, show_default=True,
              help="seconds between kills")
@click.option("--suspend-every", type=FiniteRange(min=5), default=None, cls=SaidDefault,
              show_default="none", help="seconds between suspensions of a provider holder, "
                                        f"each resumed {SUSPENDED_FOR:g} s later")
@click.option("--freeze-every", type=FiniteRange(min=5), default=None, cls=SaidDefault,
              show_default="none", help="seconds between freezes (SIGSTOP) of a platform "
                                        f"instance, each let go on {FROZEN_FOR[0]:g}-"
                                        f"{FROZEN_FOR[1]:g} s later (SIGCONT)")
@residents_option(50, 300, help="residents of the run's town")
@seed_option(2026, "the town, the requests sent, the order of the kills and the freezes")
@result_option(CRASH_RESULT)
def crash(seconds: float, rate: float, instances: int, every: float,
          suspend_every: float | None, freeze_every: float | None, residents: int, seed: int,
          out: Path) -> None:
    """Kill -9 platform instances, holders' servers, the audit consumer, the broker, the registry
    and the authority in turn under load, linkage requests and one binding in ten (in
    <state>/chaos-crash, loopback only), with --suspend-every a provider holder suspended and
    resumed between the kills, as an operator does, with --freeze-every a platform instance
    frozen past its session timeout and let go on, as a stalled machine; count what was lost or
    doubled."""
    with logs.quieted("aiokafka"):  # its retries are the point here
        result = asyncio.run(run_crash_chaos(state_dir() / "chaos-crash", seconds, rate,
                                             residents, instances, every, seed,
                                             suspend_every=suspend_every,
                                             freeze_every=freeze_every))
    write_json(out, result.to_json())
    for line in summary(result):
        click.echo(line)
    click.echo(f"written to {out}")
    if not result.exactly_once:
        raise SystemExit(1)


def summary(r: CrashChaos) -> list[str]:
    """The figures, one per line."""
    return [
        f"kills: {len(r.kills)} in {r.seconds:g}s, one every {r.every_seconds:g}s ("
        + ", ".join(f"{k} {v}" for k, v in r.kills_by_kind.items()) + f"); "
        f"{r.platform_instances} platform instances",
        f"jobs: {r.jobs} at {r.rate:g}/s ({r.binding_jobs} of them bindings), {r.accepted} "
        f"accepted ({r.refused_at_door} attempts tried again while a server could not be "
        "reached); never accepted "
        + (", ".join(f"{k} {v}" for k, v in r.never_accepted.items()) or "0")
        + f"; requests recorded beyond those accepted {r.recorded_beyond_accepted}",
        *([_made("suspensions", r.suspend_every_seconds, r.suspensions)]
          if r.suspend_every_seconds else []),
        *([_made("freezes", r.freeze_every_seconds, r.freezes) + ", frozen "
           + ", ".join(f"{s:g}" for _, _, s in r.freezes) + " s"]
          if r.freeze_every_seconds else []),
        *r.checked.lines(),
        f"latency: p50 {r.latency_p50_seconds}s, max {r.latency_max_seconds}s; died by "
        f"themselves {r.died or 'none'}; tracebacks {r.tracebacks or 'none'}",
        "exactly once: " + ("yes" if r.exactly_once else "NO"),
    ]


def _made(what: str, every: float, made: list[tuple[float, str, float]]) -> str:
    """How many of `what` were made, one every `every` seconds, and of which, as many each."""
    return (f"{what}: {len(made)}, one every {every:g}s ("
            + ", ".join(f"{who} {n}" for who, n in Counter(who for _, who, _ in made).items())
            + ")")


@click.command("report", short_help="One report of the chaos results in the results folder.")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=RESULTS,
              show_default=True, help="the folder the results are read from, the report written to")
def report(files: tuple[Path, ...], results: Path) -> None:
    """Every chaos result found in the results folder (each part's, and those other runs wrote
    with --out there), or the FILES given, its headline figures, in one report; none found is
    said, and no report written."""
    parts = {} if files else {part: results / f"chaos-{part}.json" for part in PARTS}
    given = {str(path): _read(path) for path in files} if files else others(results)
    if not given and not any(path.exists() for path in parts.values()):
        raise click.ClickException(f"no chaos run to report in {results}: run `renkei chaos "
                                   f"{'|'.join(PARTS)}` first")
    found: dict[str, Any] = {}
    for part, path in parts.items():
        if path.exists():
            found[part] = _reported(part, _read(path))
        else:
            click.echo(f"{part}: not run (renkei chaos {part})")
    for name, result in given.items():
        found[name] = _reported(name, result)
    write_json(results / REPORT.name, found)
    click.echo(f"written to {results / REPORT.name}")


def others(results: Path) -> dict[str, dict[str, Any]]:
    """The chaos results in `results` (JSON saying what was done) but each part's own, by path."""
    mine = {f"chaos-{part}.json" for part in PARTS} | {REPORT.name}
    return {str(path): result for path in sorted(results.glob("*.json"))
            if path.name not in mine and "what" in (result := _result(path) or {})}


def _result(path: Path) -> dict[str, Any] | None:
    """A file's JSON object; None for a file that holds none."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def _read(path: Path) -> dict[str, Any]:
    """A chaos result's file, read (ClickException if it holds none)."""
    result = _result(path)
    if result is None:
        raise click.ClickException(f"{path} holds no chaos result (no JSON object)")
    return result


def _reported(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """A chaos result, its headline figures said under `name`."""
    click.echo(f"{name}: {result.get('what', '')}")
    for key, value in headline(result).items():
        click.echo(f"  {key}: {value}")
    return result


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """A result's figures: its numbers, flags and small tables (not its long lists)."""
    return {k: v for k, v in result.items() if k != "what" and (
        isinstance(v, bool | int | float) or (isinstance(v, dict) and len(v) <= 12))}
