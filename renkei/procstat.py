"""What a process costs, from /proc: CPU seconds (user + system), time it waited for a CPU, how
often it was put on one, resident and peak memory; and how the whole machine's CPUs were spent."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
KIB = 1024
MACHINE = ("busy", "idle", "stolen")


def machine_seconds() -> dict[str, float]:
    """CPU seconds of the whole machine so far, summed over its CPUs: busy, idle (waiting for
    I/O included), and stolen (a virtual machine's CPU running something else of the host's)."""
    with open("/proc/stat", encoding="ascii") as stat:
        first = stat.readline().split()  # "cpu user nice system idle iowait irq softirq steal …"
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in first[1:9])
    ticks = (user + nice + system + irq + softirq, idle + iowait, steal)
    return {name: t / TICKS for name, t in zip(MACHINE, ticks, strict=True)}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process so far; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def scheduled(pid: int) -> tuple[float, int] | None:
    """Of all the process's threads (schedstat): the seconds they were ready to run but waited
    for a CPU, and how many times they were put on one (each wake-up or turn after another)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    waited = runs = 0
    for task in tasks:
        try:
            _, wait, slices = (task / "schedstat").read_text().split()[:3]
        except (OSError, ValueError):
            continue  # a thread that just ended, or no scheduler statistics
        waited, runs = waited + int(wait), runs + int(slices)
    return waited / 1e9, runs


def _status_bytes(pid: int, key: str) -> int | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * KIB
    return None


def rss(pid: int) -> int | None:
    """Resident memory now, in bytes."""
    return _status_bytes(pid, "VmRSS")


def peak_rss(pid: int) -> int | None:
    """The most resident memory the process has had, in bytes (VmHWM)."""
    return _status_bytes(pid, "VmHWM")


def snapshot(pids: dict[str, int]) -> dict[str, tuple[float, float, int]]:
    """(CPU seconds, run-queue seconds, times put on a CPU) of each named process still alive."""
    found = {}
    for name, pid in pids.items():
        cpu, scheduling = cpu_seconds(pid), scheduled(pid)
        if cpu is not None and scheduling is not None:
            found[name] = (cpu, *scheduling)
    return found
