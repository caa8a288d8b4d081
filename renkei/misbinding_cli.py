"""`renkei chaos misbinding`: bind holder records with realistic errors against an adversarial
registry through the platform's own look-up and decision; count correct, investigated, wrong."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from renkei.misbinding import Outcome, Result, run
from renkei.options import residents_option, result_option, seed_option
from renkei.state import write_json

MISBINDING_RESULT = Path("results") / "chaos-misbinding.json"


@click.command("misbinding", short_help="An adversarial registry and holder records: 0 wrong.")
@residents_option(200, 20_000, help="residents of the adversarial registry")
@click.option("--records", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="holder records to bind (half of them awkward residents)")
@seed_option(1, "the adversarial registry and the holder records")
@result_option(MISBINDING_RESULT)
def misbinding(residents: int, records: int, seed: int, out: Path) -> None:
    """Mis-binding: an adversarial registry and erring holder records; the target is 0 wrong."""
    result = run(residents, records, seed)
    write_json(out, result.to_json())
    for line in table(result):
        click.echo(line)
    click.echo(f"written to {out}")
    if result.tally.total[Outcome.WRONG]:
        raise SystemExit(1)


def table(result: Result) -> list[str]:
    """The outcomes by error and by case, one row each, and the totals."""
    def row(label: str, counts: Counter[str]) -> str:
        return f"{label:<36}" + "".join(f"{counts[o]:>14}" for o in Outcome)

    header = f"{'':<36}" + "".join(f"{o.value:>14}" for o in Outcome)
    tally = result.tally
    return [f"{result.residents} residents, {result.records} records, seed {result.seed}, "
            f"{result.seconds:.1f}s",
            "by error in the holder's record" + header[31:],
            *(row(k, v) for k, v in sorted(tally.by_error.items())),
            "by resident" + header[11:],
            *(row(k, v) for k, v in sorted(tally.by_case.items())),
            row("total", tally.total)]
