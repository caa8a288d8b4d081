"""A town's set-up (the demo's, the benchmark's, the chaos runs') removes the demo holders' stores
and makes them again; it removed one a holder library ran on (`renkei holder run`, which holds
its store: HolderStore.held), the store deleted under the server. It is refused at once, before
anything is rebuilt, naming the store and the process holding it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from holders.samples import SAMPLES
from holders.store import HolderStore
from renkei import town
from renkei.state import InUse, state_folder

HOLDER = SAMPLES[0].holder_id

# a holder library's process: its store held (as HolderClient.start holds it) until stdin ends,
# a record of its own in it
_HOLDING = """
import sys
from holders.store import HolderStore
store = HolderStore.of(sys.argv[1])
store.db.execute("CREATE TABLE its_own (record TEXT)")
store.db.execute("INSERT INTO its_own VALUES ('kept')")
store.db.commit()
with store.held(f"holder library of {sys.argv[1]}"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_town_is_not_built_over_a_store_a_holder_library_runs_on(tmp_path: Path) -> None:
    with state_folder(tmp_path):
        holding = subprocess.Popen([sys.executable, "-c", _HOLDING, HOLDER], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert holding.stdout is not None and holding.stdout.readline() == "held\n"
            with pytest.raises(InUse) as refused:
                town.build(20, 5, samples=SAMPLES[:1])
        finally:
            holding.communicate(timeout=30)
        store = HolderStore.of(HOLDER)
        try:
            kept = store.db.execute("SELECT record FROM its_own").fetchall()
        finally:
            store.close()
    assert str(refused.value) == (
        f"a town would remove the holders' stores: another holder library of {HOLDER} is "
        f"running in {tmp_path / 'holders' / HOLDER / 'holder.db'} (process {holding.pid}): "
        "wait for it to end")
    assert kept == [("kept",)]
