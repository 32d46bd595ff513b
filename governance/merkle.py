"""RFC 9162 (Certificate Transparency v2) Merkle tree: tree hashes, inclusion and consistency proofs.

Pure functions over 32-byte leaf hashes (`leaf = SHA-256(0x00 || data)`, already stored per audit event);
interior nodes are `SHA-256(0x01 || left || right)`. No Django here, so the offline bundle verifier and
the benchmark use the very same code.

`MerkleTree` hashes every *complete* subtree once (level j holds the hashes of the aligned runs of 2**j
leaves, packed into one bytes object), so a root, an inclusion proof or a consistency proof for any
tree size up to the number of leaves costs O(log² n) lookups after one O(n) build.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof request or a proof does not make sense (index out of range, wrong length, …)."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The complete-subtree hashes of a list of leaf hashes; answers for every prefix of the list."""

    def __init__(self, leaves: Iterable[bytes] | bytes = b""):
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaves)

    def extend(self, leaves: Iterable[bytes] | bytes) -> None:
        """Append leaf hashes; only the complete subtrees they finish are hashed (the log is append-only)."""
        packed = leaves if isinstance(leaves, (bytes, bytearray)) else b"".join(leaves)
        if len(packed) % HASH_SIZE:
            raise ProofError("leaf hashes must be 32 bytes each")
        self._levels[0] += packed
        sha256 = hashlib.sha256
        pair = 2 * HASH_SIZE
        j = 0
        while len(self._levels[j]) >= pair:
            if j + 1 == len(self._levels):
                self._levels.append(bytearray())
            lower, upper = self._levels[j], self._levels[j + 1]
            done, ready = len(upper) // HASH_SIZE, len(lower) // pair
            upper += b"".join(sha256(b"\x01" + lower[i * pair : (i + 1) * pair]).digest() for i in range(done, ready))
            j += 1

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def leaf(self, index: int) -> bytes:
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _check_size(self, tree_size: int) -> None:
        if not 0 <= tree_size <= self.size:
            raise ProofError(f"tree size {tree_size} is out of range: the log holds {self.size} leaves")

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); subtrees met by the RFC recursions start at a multiple of their left part."""
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            i = (start >> level) * HASH_SIZE
            return bytes(self._levels[level][i : i + HASH_SIZE])
        k = _largest_power_of_two_below(size)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self, tree_size: int | None = None) -> bytes:
        """MTH of the first `tree_size` leaves (all of them by default); the empty tree hashes to SHA-256('')."""
        n = self.size if tree_size is None else tree_size
        self._check_size(n)
        return EMPTY_ROOT if n == 0 else self._subtree(0, n)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """PATH(index, D[tree_size]) of RFC 9162 §2.1.3.1, leaf-side first."""
        self._check_size(tree_size)
        if not 0 <= index < tree_size:
            raise ProofError(f"leaf index {index} is not in a tree of size {tree_size}")
        proof: list[bytes] = []
        start, end, m = 0, tree_size, index
        # Walk down from the root, remembering siblings; the RFC lists them from the leaf up.
        while end - start > 1:
            k = _largest_power_of_two_below(end - start)
            if m < k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start, m = start + k, m - k
        proof.reverse()
        return proof

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[second]) of RFC 9162 §2.1.4.1; empty when first is 0 or equals second."""
        self._check_size(second)
        if not 0 <= first <= second:
            raise ProofError(f"first tree size {first} must be between 0 and the second, {second}")
        if first in (0, second):
            return []
        proof: list[bytes] = []
        start, end, m, whole = 0, second, first, True
        while m != end - start:
            k = _largest_power_of_two_below(end - start)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._subtree(start, end))
        proof.reverse()
        return proof


def root_of(leaves: Sequence[bytes]) -> bytes:
    return MerkleTree(leaves).root()


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError saying why the proof fails, returns None when it holds."""
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} is not in a tree of size {tree_size}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("every proof hash must be 32 bytes")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"the proof has {len(proof)} hashes, more than a tree of size {tree_size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the proof has {len(proof)} hashes, fewer than a tree of size {tree_size} needs")
    if r != root:
        raise ProofError(f"the inclusion proof leads to root {r.hex()}, not {root.hex()}")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError saying why the trees are not consistent."""
    if not 0 <= first <= second:
        raise ProofError(f"first tree size {first} must be between 0 and the second, {second}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("every proof hash must be 32 bytes")
    if first == 0:
        if proof:
            raise ProofError("the consistency proof from the empty tree must be empty")
        return
    if first == second:
        if proof:
            raise ProofError("the consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("two tree heads of the same size have different roots")
        return
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        raise ProofError("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"the consistency proof has too many hashes for sizes {first} and {second}")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the consistency proof has too few hashes for sizes {first} and {second}")
    if fr != first_root:
        raise ProofError(f"the consistency proof does not lead to the first root (got {fr.hex()})")
    if sr != second_root:
        raise ProofError(f"the consistency proof does not lead to the second root (got {sr.hex()})")
