"""Re-keying a link-code unit: a holder's old link codes → ID codes → link codes of the new epoch.

The holder submits its list of link codes; it gets back, item by item, the new code (so its
bindings survive) or why the old one is not valid. After the bump, codes of the old epoch are
refused: under the new epoch's key they do not decrypt to a resident code.
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.codes import CodeService, Result, UnitEpoch


def rekey(codes: CodeService, link_codes: Sequence[str], unit: str, old_epoch: int,
          new_epoch: int) -> list[Result]:
    """The new link code of each old one, or an `InvalidCode` for that item."""
    if new_epoch <= old_epoch:
        raise ValueError(f"a new key epoch follows the old one ({old_epoch} → {new_epoch})")
    return codes.convert_batch(link_codes, UnitEpoch(unit, old_epoch), UnitEpoch(unit, new_epoch))
