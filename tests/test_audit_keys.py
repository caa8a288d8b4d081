"""The audit log's head key as each command needs it: `verify` checks heads with the public key
alone (all an auditor checking a copy of a store is given); `query` reads with it too, and
`query --person` proves against the latest head the store holds; the commands that sign heads
need the private key and say so in one line when only the public one is there. No broker."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.heads import (
    NoKey,
    SignedHead,
    Signer,
    TreeHead,
    includes,
    key_path,
    private_key_path,
    verify_head,
)
from audit.merkle import EMPTY_ROOT
from audit.store import AuditStore
from renkei.state import STATE_ENV, write_json
from tests.kafka_helpers import renkei, said_in_one_line
from tests.test_audit_store import PERSONS, T0, event, item


def _public_alone(path: Path, public_hex: str) -> None:
    write_json(path, {"algorithm": "Ed25519", "public_key": public_hex}, private=True)


def test_the_public_key_alone_checks_heads_and_signs_none(tmp_path: Path) -> None:
    path = tmp_path / "head-key.json"
    signer = Signer.load_or_create(path)
    signed = signer.sign_head(TreeHead(0, EMPTY_ROOT, T0))
    _public_alone(path, signer.public_key.public_bytes_raw().hex())
    public = Signer.public(path)
    assert public.key_id == signer.key_id and verify_head(signed, public.public_key)
    with pytest.raises(NoKey, match="public key alone"):
        public.sign_head(TreeHead(0, EMPTY_ROOT, T0))
    with pytest.raises(NoKey, match="is the public key alone: this command signs heads"):
        Signer.load(path)
    with pytest.raises(NoKey, match="no head key at"):
        Signer.public(tmp_path / "none.json")


def test_verify_needs_the_public_key_alone(tmp_path: Path) -> None:
    """`renkei audit verify` read the whole key file and made a private key of it: with the
    public key alone it failed (a KeyError, with a traceback). Now it checks every head with the
    public key, and a command that signs heads (head, purge, query) says it needs the private
    key; a public key not the log's makes verify report every head as not the log's."""
    state = tmp_path / "state"
    key = state / "audit" / "head-key.json"
    with AuditStore(tmp_path / "audit.db", Signer.load_or_create(key), head_every=2) as store:
        store.append_many([item(event(n)) for n in range(5)])
        store.sign_head()
        public_hex = store.signer.public_key.public_bytes_raw().hex()
    _public_alone(key, public_hex)
    env = {STATE_ENV: str(state)}
    verified = renkei("audit", "verify", "--no-anchor", "--db", str(tmp_path / "audit.db"), env=env,
                      check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "5 entries checked" in verified.stdout and "ok:" in verified.stdout
    head = renkei("audit", "head", "--db", str(tmp_path / "audit.db"), env=env, check=False)
    assert head.returncode == 1
    said_in_one_line(head.stderr, "is the public key alone: this command signs heads")
    _public_alone(key, Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex())
    other = renkei("audit", "verify", "--no-anchor", "--db", str(tmp_path / "audit.db"), env=env,
                   check=False)
    assert other.returncode == 1 and "TAMPERED" in other.stderr


def test_querying_the_store_needs_the_head_keys_public_half_alone(tmp_path: Path) -> None:
    """As My Portal's mounts give it: the store and audit/head-key.json, the key elsewhere."""
    state = tmp_path / "state"
    key = Signer.load_or_create(tmp_path / "head-key.json")
    (state / "audit").mkdir(parents=True)
    _public_alone(state / "audit" / "head-key.json", key.public_key.public_bytes_raw().hex())
    AuditStore(state / "audit" / "audit.db", key).close()
    run = renkei("audit", "query", env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["entries"] == []
    assert not (state / "keys").exists()


def test_a_persons_entries_are_proved_with_the_public_key_alone_against_the_stored_head(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`query --person` (the oversight body's too) signed a head to prove against, so it needed
    the log's key itself, which signs a rewritten log's heads as well: with the public half
    alone it proves against the latest head the store holds, writes nothing, and shows an entry
    after that head as pending, not dropped."""
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    with AuditStore(state / "audit" / "audit.db", Signer.load_or_create()) as store:
        store.append_many([item(event(n)) for n in range(7)])
        signed = store.sign_head()
        store.append_many([item(event(n)) for n in range(7, 10)])
        key = store.signer.public_key
    private_key_path().unlink()
    for command in ("audit", "oversight"):
        run = renkei(command, "query", "--person", input=PERSONS[0])
        page = json.loads(run.stdout)
        head = SignedHead.from_json(page["head"])
        assert head == signed and verify_head(head, key)
        assert [e["serial"] for e in page["entries"]] == [0, 3, 6, 9]
        *proved, after = page["entries"]
        assert all(includes(head.head, e["serial"], item(event(e["serial"]))[1],
                            [bytes.fromhex(p) for p in e["inclusion_proof"]]) for e in proved)
        assert after["pending"] is True and "inclusion_proof" not in after
    with AuditStore(state / "audit" / "audit.db", Signer.public()) as store:
        assert store.heads() == [signed]
    _public_alone(key_path(), Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex())
    run = renkei("oversight", "query", "--person", input=PERSONS[0], check=False)
    assert run.returncode == 1 and "TAMPERED: the latest head in the store is not" in run.stderr
    assert [set(e) & {"inclusion_proof", "pending"} for e in json.loads(run.stdout)["entries"]
            ] == [set()] * 4


def test_a_column_edited_under_its_signed_bytes_is_shown_as_signed_and_not_proved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`query` printed the store's columns next to a proof of the signed bytes: a column edited
    in the store passed for proved. It shows what the bytes say, no proof, and says TAMPERED."""
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    db = state / "audit" / "audit.db"
    with AuditStore(db, Signer.load_or_create()) as store:
        store.append_many([item(event(n)) for n in range(4)])
        store.sign_head()
    with closing(sqlite3.connect(db)) as edit, edit:
        edit.execute("UPDATE entries SET requester = 'edited-holder' WHERE serial = 3")
    for command in ("audit", "oversight"):
        run = renkei(command, "query", "--person", input=PERSONS[0], check=False)
        assert run.returncode == 1
        assert "TAMPERED: the columns of entries 3 differ" in run.stderr
        first, edited = json.loads(run.stdout)["entries"]
        assert "inclusion_proof" in first and "columns_differ" not in first
        assert edited["requester"] == event(3).requester != "edited-holder"
        assert edited["columns_differ"] is True and "inclusion_proof" not in edited


@pytest.mark.parametrize(("edit", "said"), [
    ("occurred_at = 'x'", "TAMPERED: the columns of entries 3 differ"),
    ("person = 'hidden'", "TAMPERED: the columns of entries 3 differ"),
    ("occurred_at = 'x', leaf = x'00'", "TAMPERED: entry 3: neither its columns nor its bytes "
                                        "make an event")])
def test_a_row_edited_into_no_event_is_said_tampered(tmp_path: Path, edit: str,
                                                     said: str) -> None:
    """Columns that make no event were read from the entry's bytes, and then the columns
    passed for the bytes' (no TAMPERED); a time of text ended in a traceback; a row whose bytes
    make none either was said to be a bad --after."""
    state = tmp_path / "state"
    db = state / "audit" / "audit.db"
    db.parent.mkdir(parents=True)
    with AuditStore(db, Signer.load_or_create(key_path_in(state, "private"))) as store:
        store.append_many([item(event(n)) for n in range(4)])
        store.sign_head()
    _public_alone(key_path_in(state, "public"), store.signer.public_key.public_bytes_raw().hex())
    with closing(sqlite3.connect(db)) as edited, edited:
        edited.execute(f"UPDATE entries SET {edit} WHERE serial = 3")
    run = renkei("audit", "query", "--db", str(db), env={STATE_ENV: str(state)}, check=False)
    assert run.returncode == 1 and said in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "--after" not in run.stderr


def test_keys_init_which_provision_runs_moves_the_head_key_out_of_the_portals_mount(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state folder from before kept the head key in audit/, which My Portal mounts: the
    audit consumer moved it on its first start, which may come after the portal's; provision's
    `keys init` moves it before any service starts. It makes none where there is none."""
    state = tmp_path / "state"
    monkeypatch.setenv(STATE_ENV, str(state))
    old = state / "audit" / "head-key.json"
    before = Signer.load_or_create(old)
    said = renkei("keys", "init").stdout
    assert json.loads(old.read_text()) == {
        "algorithm": "Ed25519", "public_key": before.public_key.public_bytes_raw().hex()}
    moved = state / "keys" / "audit" / "head-key.json"
    assert moved.stat().st_mode & 0o777 == 0o600 and Signer.load(moved).key_id == before.key_id
    assert f"the audit log's head key is at {moved}" in said
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "fresh"))
    assert "head key" not in renkei("keys", "init").stdout
    assert not list((tmp_path / "fresh").rglob("head-key.json"))


def test_a_missing_head_key_is_said_as_each_command_needs_it(tmp_path: Path) -> None:
    """No head key in the state folder: the commands that sign heads (head, purge) name the key
    itself they need, not 'the public key is enough', which they refuse; `query` (--person too)
    names the public half, which is enough for it."""
    state = tmp_path / "state"
    (state / "audit").mkdir(parents=True)
    AuditStore(state / "audit" / "audit.db", Signer.generate()).close()
    env = {STATE_ENV: str(state)}
    for command in ("head", "purge"):
        run = renkei("audit", command, env=env, check=False)
        assert run.returncode == 1, run.stdout
        said_in_one_line(run.stderr, f"no head key at {state / 'keys' / 'audit' / 'head-key.json'}"
                                     ": this command signs heads, with the head key itself")
        assert "the public key is enough" not in run.stderr, command
    for given in ((), ("--person",)):
        run = renkei("audit", "query", *given, env=env, check=False, input="ABC98765XYZ\n")
        assert run.returncode == 1
        said_in_one_line(run.stderr, f"no head key at {state / 'audit' / 'head-key.json'}: "
                                     "`renkei audit run` makes it; to check a copy of a store, "
                                     "put its head key (the public key is enough) there")


@pytest.mark.parametrize(("which", "text"), [
    ("public", '{"algorithm": "Ed2'), ("public", '{"algorithm": "Ed25519", "public": "00"}'),
    ("public", '{"algorithm": "Ed25519", "public_key": "00"}'), ("public", "[]"),
    ("private", '{"algorithm": "Ed2')])
def test_a_damaged_head_key_is_said_in_one_line(tmp_path: Path, which: str, text: str) -> None:
    """The public half cut short, its field misnamed or of the wrong length, the key itself
    cut short: each command ended in a traceback (JSONDecodeError, KeyError, ValueError)."""
    state = tmp_path / "state"
    db = tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key_path_in(state, "private"))) as store:
        store.append_many([item(event(0))])
    damaged = key_path_in(state, which)
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_text(text, encoding="utf-8")
    run = renkei("audit", "verify" if which == "public" else "head", "--no-anchor"
                 if which == "public" else "--all", "--db", str(db), env={STATE_ENV: str(state)},
                 check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    said_in_one_line(run.stderr, f"the head key at {damaged} cannot be read: restore it from "
                                 "its backup")


def key_path_in(state: Path, which: str) -> Path:
    """The head key's file in the state folder `state`: its public half, or the key itself."""
    return state / ("audit" if which == "public" else "keys/audit") / "head-key.json"
