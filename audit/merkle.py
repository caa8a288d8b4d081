"""RFC 9162 §2.1 Merkle tree math (the RFC 6962 tree): hashes, roots, inclusion and consistency.

Pure functions. Proofs are planned as lists of leaf ranges whose tree hashes (MTH) form the
proof; a range is resolved from the hashes of the complete subtrees that cover it, which a
`NodeSource` serves, so a store answers any proof in O(log n) node reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
"""A complete subtree as (level, index): the 2**level leaves from index * 2**level on."""

Range = tuple[int, int]
"""Leaves [start, end) of a subtree as the RFC's recursion splits the tree."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes, by the RFC's recursion (largest power of two on the left)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return node_hash(root(leaf_hashes[:k]), root(leaf_hashes[k:]))


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def covering_nodes(start: int, end: int) -> list[Node]:
    """The fewest complete subtrees covering leaves [start, end), left to right."""
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from the hashes of its covering complete subtrees (largest first)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), bottom up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append((mid, end))
            end = mid
        else:
            path.append((start, mid))
            start = mid
    path.reverse()
    return path


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The subtrees whose hashes form PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1), bottom up.

    Empty when old is 0 or equal to new: those trees are consistent without a proof.
    """
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return []
    proof: list[Range] = []
    start, end, whole = 0, new, True
    while old != end:
        mid = start + _split(end - start)
        if old <= mid:
            proof.append((mid, end))
            end = mid
        else:
            proof.append((start, mid))
            start, whole = mid, False
    if not whole:
        proof.append((start, end))
    proof.reverse()
    return proof


class NodeSource(Protocol):
    """Where the hashes of complete subtrees come from (a store, or a list in tests)."""

    def node_hashes(self, nodes: Sequence[Node]) -> Sequence[bytes]:
        """The hashes of `nodes`, in the same order; raise if one is not there."""
        ...


def resolve(source: NodeSource, proofs: Sequence[Sequence[Range]]) -> list[list[bytes]]:
    """The hashes of the ranges of several planned proofs, with one batched read of nodes."""
    covers = {r: covering_nodes(*r) for proof in proofs for r in proof}
    wanted = sorted({n for nodes in covers.values() for n in nodes})
    known = dict(zip(wanted, source.node_hashes(wanted), strict=True))
    return [[fold([known[n] for n in covers[r]]) for r in proof] for proof in proofs]


def tree_root(source: NodeSource, size: int) -> bytes:
    return fold(source.node_hashes(covering_nodes(0, size)))


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    return resolve(source, [inclusion_ranges(index, size)])[0]


def consistency_proof(source: NodeSource, old: int, new: int) -> list[bytes]:
    return resolve(source, [consistency_ranges(old, new)])[0]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` put the leaf hash `leaf` at `index` of the tree?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of size `new` an append-only extension of size `old`?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class Frontier:
    """The right edge of a growing tree: the hashes of its covering subtrees, largest first.

    Appending a leaf returns the complete subtrees it completes, for the store to keep.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} frontier hashes")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; the nodes it completes, itself (level 0) first."""
        index, level, h = self.size, 0, leaf
        made = [((0, index), h)]
        while index & 1:
            h = node_hash(self.hashes.pop(), h)
            index, level = index >> 1, level + 1
            made.append(((level, index), h))
        self.hashes.append(h)
        self.size += 1
        return made

    def root(self) -> bytes:
        return fold(self.hashes)
