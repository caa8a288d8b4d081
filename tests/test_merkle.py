"""The Merkle math against the RFC 6962 vectors of transparency-dev/merkle, and its properties.

Expected values are transcribed from transparency-dev/merkle: `testonly/constants.go`
(leaf inputs, node hashes, roots), `proof/verify_test.go` (inclusion and consistency proofs),
`proof/proof_test.go` (which nodes make up each proof) and `rfc6962/rfc6962_test.go` (hashes).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from audit import merkle
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    Node,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAF_INPUTS = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]

# node hashes of the 8-leaf tree, by level then index
NODES = [[bytes.fromhex(h) for h in level] for level in (
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
)]

# roots of the trees of the first 1..8 leaves
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]

EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


# (leaf index 0-based, tree size, proof): verify_test.go's inclusionProofs (1-based there)
INCLUSION = [
    (0, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, _h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (1, 5, _h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (0, 1, []),
]

# (old size, new size, proof): verify_test.go's consistencyProofs
CONSISTENCY = [
    (1, 1, []),
    (1, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, _h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]

# proof_test.go's picture of the tree: leaves a b c d e f j (+ the 8th), level 1 g h i,
# level 2 k; in the 7-leaf tree l = hash(i, j), in the 8-leaf tree l is a complete node.
a, b, c, d, e, f, j, leaf7 = NODES[0]
g, h, i, i8 = NODES[1]
k, l8 = NODES[2]
l7 = node_hash(i, j)

# (index, size, proof) for the paths of proof_test.go's TestInclusion within 8 leaves
INCLUSION_PATHS = [
    (0, 2, [b]), (1, 2, [a]), (1, 3, [a, c]),
    (0, 7, [b, h, l7]), (1, 7, [a, h, l7]), (2, 7, [d, g, l7]), (3, 7, [c, g, l7]),
    (4, 7, [f, j, k]), (5, 7, [e, j, k]), (6, 7, [i, k]),
    (2, 4, [d, g]), (3, 5, [c, g, e]), (3, 6, [c, g, i]), (4, 6, [f, k]),
]

# (old, new, proof) for the proofs of proof_test.go's TestConsistency within 8 leaves
CONSISTENCY_PATHS = [
    (1, 2, [b]), (1, 4, [b, h]), (1, 6, [b, h, i]), (2, 3, [c]), (2, 8, [h, l8]),
    (3, 7, [c, d, g, l7]), (4, 7, [l7]), (5, 7, [e, f, j, k]), (6, 7, [i, j, k]),
    (7, 8, [j, leaf7, i, k]), (2, 4, [h]), (3, 5, [c, d, g, e]), (3, 6, [c, d, g, i]),
    (4, 6, [i]), (1, 7, [b, h, l7]),
]


class ListSource:
    """Subtree hashes computed from a list of leaf hashes (the store keeps them instead)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)

    def node_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        found = []
        for level, index in nodes:
            start, end = index << level, (index + 1) << level
            assert end <= len(self.leaves), f"node {(level, index)} is not complete"
            found.append(root(self.leaves[start:end]))
        return found


LEAVES = [leaf_hash(x) for x in LEAF_INPUTS]
SOURCE = ListSource(LEAVES)


def test_rfc6962_hashes() -> None:
    assert EMPTY_ROOT.hex() == EMPTY_ROOT_HEX
    assert root([]) == EMPTY_ROOT
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
    assert node_hash(LEAVES[0], LEAVES[1]) != node_hash(LEAVES[1], LEAVES[0])
    assert leaf_hash(LEAVES[0] + LEAVES[1]) != node_hash(LEAVES[0], LEAVES[1])


def test_leaf_and_node_hashes_of_the_reference_tree() -> None:
    assert NODES[0] == LEAVES
    for level in range(1, 4):
        for index, expected in enumerate(NODES[level]):
            assert SOURCE.node_hashes([(level, index)]) == [expected]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_every_prefix(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size - 1]
    assert merkle.tree_root(SOURCE, size) == ROOTS[size - 1]
    assert merkle.tree_root(SOURCE, 0) == EMPTY_ROOT


def test_frontier_grows_to_the_reference_roots() -> None:
    frontier, made = Frontier(), dict[Node, bytes]()
    for leaf in LEAVES:
        made.update(frontier.append(leaf))
        assert frontier.root() == ROOTS[frontier.size - 1]
    expected = {(lv, ix): hh for lv, level in enumerate(NODES) for ix, hh in enumerate(level)}
    assert made == expected
    assert Frontier().root() == EMPTY_ROOT
    with pytest.raises(ValueError):
        Frontier(3, [a])


def _corrupt_inclusion(index: int, size: int, proof: list[bytes], top: bytes, leaf: bytes
                       ) -> list[tuple[int, int, list[bytes], bytes, bytes]]:
    """Probes modelled on verify_test.go's corruptInclusionProof; none may verify."""
    probes = [
        (index - 1, size, proof, top, leaf), (index + 1, size, proof, top, leaf),
        (index ^ 2, size, proof, top, leaf), (index, size * 2, proof, top, leaf),
        (index, size // 2, proof, top, leaf), (index, size, proof, top, b"WrongLeaf"),
        (index, size, proof, EMPTY_ROOT, leaf), (index, size, proof, SOME_HASH, leaf),
        (index, size, [*proof, b""], top, leaf), (index, size, [*proof, top], top, leaf),
        (index, size, [b"", *proof], top, leaf), (index, size, [top, *proof], top, leaf),
    ]
    for n in range(len(proof)):
        flipped = list(proof)
        flipped[n] = bytes([flipped[n][0] ^ 8]) + flipped[n][1:]
        probes.append((index, size, flipped, top, leaf))
    if proof:
        probes.append((index, size, proof[:-1], top, leaf))
    if len(proof) > 1:
        probes.append((index, size, [proof[0], SOME_HASH, *proof[1:]], top, leaf))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION + INCLUSION_PATHS)
def test_known_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(SOURCE, index, size) == proof
    top = ROOTS[size - 1]
    assert verify_inclusion(LEAVES[index], index, size, proof, top)
    for probe in _corrupt_inclusion(index, size, proof, top, LEAVES[index]):
        assert not verify_inclusion(probe[4], probe[0], probe[1], probe[2], probe[3]), probe[:2]


def test_single_entry_and_degenerate_inclusion() -> None:
    only = leaf_hash(b"data")
    assert verify_inclusion(only, 0, 1, [], only)
    assert not verify_inclusion(only, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], only)
    for index, size in ((0, 0), (1, 0), (2, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(8, 7)


def _corrupt_consistency(old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes]
                         ) -> list[tuple[int, int, bytes, bytes, list[bytes]]]:
    """Probes modelled on verify_test.go's corruptConsistencyProof; none may verify."""
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof), (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof), (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof), (old, new, r2, r1, proof),
        (old, new, r1, r2, []), (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]), (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]), (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]), (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for n in range(len(proof)):
        flipped = list(proof)
        flipped[n] = bytes([flipped[n][0] ^ 16]) + flipped[n][1:]
        probes.append((old, new, r1, r2, flipped))
    return probes


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY + CONSISTENCY_PATHS)
def test_known_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(SOURCE, old, new) == proof
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert verify_consistency(old, new, proof, r1, r2)
    if not proof:
        return
    for p in _corrupt_consistency(old, new, r1, r2, proof):
        assert not verify_consistency(p[0], p[1], p[4], p[2], p[3]), p[:2]


def test_degenerate_consistency() -> None:
    r1, r2 = b"don't care 1", b"don't care 2"
    assert verify_consistency(0, 0, [], r1, r1)
    assert verify_consistency(0, 1, [], r1, r2)
    assert verify_consistency(1, 1, [], r2, r2)
    assert not verify_consistency(0, 0, [], r1, r2)
    assert not verify_consistency(1, 1, [], r1, r2)
    assert not verify_consistency(1, 0, [], r1, r2)
    assert not verify_consistency(2, 1, [], r1, r2)
    assert not verify_consistency(1, 2, [], r1, r2)
    for old, new in ((0, 0), (0, 1), (1, 1)):
        assert not verify_consistency(old, new, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(9, 8)


MAX = 64
BIG = [leaf_hash(n.to_bytes(2, "big")) for n in range(MAX)]
BIG_SOURCE = ListSource(BIG)
BIG_ROOTS = [root(BIG[:n]) for n in range(MAX + 1)]


def test_every_inclusion_proof_up_to_64() -> None:
    for size in range(1, MAX + 1):
        proofs = merkle.resolve(BIG_SOURCE, [merkle.inclusion_ranges(x, size)
                                             for x in range(size)])
        for index, proof in enumerate(proofs):
            top = BIG_ROOTS[size]
            assert len(proof) <= (size - 1).bit_length()
            assert verify_inclusion(BIG[index], index, size, proof, top)
            assert not verify_inclusion(BIG[(index + 1) % MAX], index, size, proof, top)
            assert not verify_inclusion(BIG[index], index, size, proof, BIG_ROOTS[size - 1])
            if size > 1:
                assert not verify_inclusion(BIG[index], (index + 1) % size, size, proof, top)


def test_every_consistency_proof_up_to_64() -> None:
    for new in range(1, MAX + 1):
        proofs = merkle.resolve(BIG_SOURCE, [merkle.consistency_ranges(o, new)
                                             for o in range(new + 1)])
        for old, proof in enumerate(proofs):
            r1, r2 = BIG_ROOTS[old], BIG_ROOTS[new]
            assert verify_consistency(old, new, proof, r1, r2), (old, new)
            if 0 < old < new:
                assert not verify_consistency(old, new, proof, SOME_HASH, r2)
                assert not verify_consistency(old, new, proof, r1, SOME_HASH)
                forked = root([*BIG[: old - 1], SOME_HASH])
                assert not verify_consistency(old, new, proof, forked, r2)


def test_frontier_matches_root_at_every_size() -> None:
    frontier = Frontier()
    for n, leaf in enumerate(BIG, start=1):
        frontier.append(leaf)
        assert frontier.root() == BIG_ROOTS[n]
        nodes = merkle.covering_nodes(0, n)
        assert frontier.hashes == BIG_SOURCE.node_hashes(nodes)
        assert Frontier(n, frontier.hashes).root() == BIG_ROOTS[n]
