"""The demo's exchanges: lawful ones between the sample holders, and a few unlawful ones, and the
staff who make them — plain data, without the holder library (a baseline benchmark holder needs
them, not the library; a Renkei one not the demo's scenario)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exchange:
    requester: str
    pattern: str
    provider: str
    data_type: str
    purpose: str
    limit: int | None = None


LAWFUL = (
    Exchange("nenkin", "P-037", "sakura-town", "local_tax", "国民年金保険料の免除審査"),
    Exchange("sakura-kodomo", "P-074", "sakura-town", "local_tax", "児童手当の所得審査"),
    Exchange("sakura-kodomo", "P-074", "sakura-town", "resident_record", "児童手当の世帯確認"),
    Exchange("sakura-town", "P-027", "nenkin", "pension_benefit", "介護保険料の特別徴収"),
    Exchange("sakura-town", "P-016", "sakura-hospital", "vaccination_record", "予防接種歴の確認"),
    Exchange("sakura-hospital", "P-120", "acme-kenpo", "insurance_eligibility", "資格確認"),
    Exchange("acme-kenpo", "P-002", "sakura-town", "local_tax", "高額療養費の所得区分"),
)
UNLAWFUL = (
    Exchange("sakura-hospital", "P-120", "sakura-town", "local_tax", "病院が住民税を照会", 2),
    Exchange("acme-kenpo", "P-002", "nenkin", "pension_benefit", "健保組合が年金を照会", 2),
    Exchange("sakura-kodomo", "P-075", "sakura-town", "local_tax", "廃止された特例給付", 2),
    Exchange("nenkin", "P-037", "sakura-town", "resident_record", "改正で外れた住民票情報", 2),
    Exchange("nenkin", "P-999", "sakura-town", "local_tax", "存在しないパターン", 1),
)


def staff(holder: str) -> tuple[str, str]:
    """The sample holders' registered staff member and terminal."""
    return f"{holder}-staff-1", f"{holder}-term-1"
