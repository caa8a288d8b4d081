"""The benchmark's plan, as saved and loaded: what its holders ask for — each requester's lawful
exchanges over the people both it and the provider have bound — and how big a real exchange's
messages are (for the baseline); made on the bound town by renkei.bench_planning."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from renkei.bare import Sizes
from renkei.exchanges import LAWFUL, Exchange
from renkei.state import read_json, state_dir, write_json

Job = tuple[int, str]  # (index of the exchange in LAWFUL, the requester's own number)


@dataclass(frozen=True)
class Plan:
    jobs: dict[str, list[Job]]  # requester → its jobs, to cycle through
    sizes: Sizes

    @property
    def holders(self) -> list[str]:
        """Every holder taking part, as requester or provider."""
        return sorted({h for e in self.exchanges() for h in (e.requester, e.provider)})

    def exchanges(self) -> list[Exchange]:
        return [LAWFUL[i] for jobs in self.jobs.values() for i in {i for i, _ in jobs}]

    def save(self, path: Path) -> None:
        write_json(path, {"jobs": self.jobs, "sizes": asdict(self.sizes)})

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = read_json(path)
        return cls({h: [(i, own) for i, own in jobs] for h, jobs in data["jobs"].items()},
                   Sizes(**data["sizes"]))


def default_path() -> Path:
    return state_dir() / "linkage-plan.json"
