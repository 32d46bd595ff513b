"""The RFC 9162 Merkle tree against the Certificate Transparency reference vectors, a naive transcription of
the RFC's recursive definitions, and hypothesis-generated tree shapes."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governance.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The leaf inputs and roots of the Certificate Transparency reference tests (RFC 6962 reference code).
CT_INPUTS = [bytes.fromhex(h) for h in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


CT_TREE = MerkleTree(leaf_hash(d) for d in CT_INPUTS)


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size):
    assert CT_TREE.root(size).hex() == CT_ROOTS[size - 1]


def test_the_empty_tree_hashes_to_sha256_of_nothing():
    assert MerkleTree([]).root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_hand_computed_three_leaf_tree():
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    tree = MerkleTree([a, b, c])
    assert tree.root() == node_hash(node_hash(a, b), c)
    assert tree.inclusion_proof(2, 3) == [node_hash(a, b)]
    assert tree.inclusion_proof(0, 3) == [b, c]
    assert tree.consistency_proof(2, 3) == [c]
    assert tree.consistency_proof(1, 3) == [b, c]


def test_inclusion_proof_of_the_first_leaf_in_the_ct_tree_of_eight():
    proof = CT_TREE.inclusion_proof(0, 8)
    assert [p.hex() for p in proof] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    verify_inclusion(CT_TREE.leaf(0), 0, 8, proof, CT_TREE.root(8))


@pytest.mark.parametrize("n", range(1, 20))
def test_every_proof_matches_the_rfc_recursion_and_verifies(n):
    leaves = leaves_of(n)
    tree = MerkleTree(leaves)
    for size in range(1, n + 1):
        assert tree.root(size) == mth(leaves[:size])
        for m in range(size):
            proof = tree.inclusion_proof(m, size)
            assert proof == path(m, leaves[:size])
            verify_inclusion(leaves[m], m, size, proof, tree.root(size))
        for first in range(1, size):
            proof = tree.consistency_proof(first, size)
            assert proof == subproof(first, leaves[:size], True)
            verify_consistency(first, size, tree.root(first), tree.root(size), proof)


@given(st.integers(min_value=1, max_value=300), st.data())
def test_random_shapes_prove_and_verify(n, data):
    leaves = leaves_of(n)
    tree = MerkleTree(leaves)
    size = data.draw(st.integers(min_value=1, max_value=n))
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    first = data.draw(st.integers(min_value=1, max_value=size))
    assert tree.root(size) == mth(leaves[:size])
    verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), tree.root(size))
    verify_consistency(first, size, tree.root(first), tree.root(size), tree.consistency_proof(first, size))


@given(st.integers(min_value=2, max_value=200), st.data())
def test_any_flipped_bit_in_an_inclusion_proof_is_caught(n, data):
    tree = MerkleTree(leaves_of(n))
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = tree.inclusion_proof(index, n)
    which = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=255))
    bad = bytearray(proof[which])
    bad[bit // 8] ^= 1 << (bit % 8)
    proof[which] = bytes(bad)
    with pytest.raises(ProofError, match="leads to root"):
        verify_inclusion(tree.leaf(index), index, n, proof, tree.root())


@given(st.integers(min_value=3, max_value=200), st.data())
def test_a_changed_old_leaf_breaks_consistency(n, data):
    leaves = leaves_of(n)
    first = data.draw(st.integers(min_value=1, max_value=n - 1))
    victim = data.draw(st.integers(min_value=0, max_value=first - 1))
    forged = list(leaves)
    forged[victim] = leaf_hash(b"forged")
    honest_first_root = MerkleTree(leaves).root(first)
    forged_tree = MerkleTree(forged)
    with pytest.raises(ProofError, match="does not lead to the (first|second) root"):
        verify_consistency(first, n, honest_first_root, forged_tree.root(), forged_tree.consistency_proof(first, n))


def test_bad_requests_are_reported_precisely():
    tree = MerkleTree(leaves_of(5))
    with pytest.raises(ProofError, match="^tree size 6 is out of range: the log holds 5 leaves$"):
        tree.root(6)
    with pytest.raises(ProofError, match="^leaf index 5 is not in a tree of size 5$"):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ProofError, match="^first tree size 4 must be between 0 and the second, 3$"):
        tree.consistency_proof(4, 3)
    proof = tree.inclusion_proof(1, 5)
    with pytest.raises(ProofError, match="^the proof has 4 hashes, more than a tree of size 5 needs$"):
        verify_inclusion(tree.leaf(1), 1, 5, [*proof, proof[0]], tree.root())
    with pytest.raises(ProofError, match="^the proof has 2 hashes, fewer than a tree of size 5 needs$"):
        verify_inclusion(tree.leaf(1), 1, 5, proof[:2], tree.root())
    with pytest.raises(ProofError, match="^every proof hash must be 32 bytes$"):
        verify_inclusion(tree.leaf(1), 1, 5, [b"short"], tree.root())
    with pytest.raises(ProofError, match="^leaf hashes must be 32 bytes each$"):
        MerkleTree([b"x" * 31])
    with pytest.raises(ProofError, match="^two tree heads of the same size have different roots$"):
        verify_consistency(3, 3, tree.root(3), tree.root(4), [])


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8))
def test_extending_in_chunks_equals_building_at_once(chunks):
    leaves = leaves_of(sum(chunks))
    grown, at = MerkleTree(), 0
    for chunk in chunks:
        grown.extend(leaves[at : at + chunk])
        at += chunk
        whole = MerkleTree(leaves[:at])
        assert grown.size == at and grown._levels == whole._levels
        if at:
            assert grown.root() == mth(leaves[:at])
