"""Re-computing the audit log and checking every signed tree head, reporting exactly what is wrong.

Each finding is one line starting with its kind, so an operator (and a test) can read it as is:
`edited:`, `deleted:`, `reordered:`, `inserted:`, `root mismatch:`, `bad signature:`, `revoked key:`,
`inconsistent:`. An empty report means every row matches its leaf hash, the sequence is dense and in
write order, and every tree head is validly signed and matches the log.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from governance.audit import canonical_json, event_document
from governance.merkle import EMPTY_ROOT, MerkleTree, ProofError, verify_consistency
from governance.models import AuditEvent, SignedTreeHead
from governance.tree_heads import head_problem

# Looking for where a tampered row came from is quadratic in the number of tampered rows; past this, report only.
_MAX_MOVE_SEARCH = 2_000


@dataclass
class AuditReport:
    events: int = 0
    tree_heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _Row:
    pk: int
    seq: int
    stored: str
    document: dict | None  # kept only for rows whose leaf does not match (memory stays small for big logs)


def _hash_document(document: dict) -> str:
    return hashlib.sha256(b"\x00" + canonical_json(document)).hexdigest()


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _row_problems(rows: list[_Row], expected_size: int) -> tuple[list[str], int]:
    """Problems of the rows themselves; returns them and the length of the dense, untouched-order prefix."""
    problems: list[tuple[int, str]] = []
    tampered = [r for r in rows if r.document is not None]
    tampered_seqs = {r.seq for r in tampered}

    moved: dict[int, int] = {}  # current seq -> seq it was written as
    if len(tampered) <= _MAX_MOVE_SEARCH:
        candidates = sorted(tampered_seqs | {r.seq + d for r in tampered for d in (-1, 1)})
        for row in tampered:
            for seq in candidates:
                if seq != row.seq and _hash_document({**row.document, "seq": seq}) == row.stored:
                    moved[row.seq] = seq
                    break
    for row in tampered:
        if row.seq in moved:
            problems.append((row.seq, f"reordered: the event written as seq {moved[row.seq]} now sits at seq {row.seq}"))
        else:
            problems.append((row.seq, f"edited: event seq {row.seq} does not match its leaf hash"))

    # Rows are written in seq order, so ids rise with the seq each row was written as; a self-consistent row
    # whose id is larger than that of an event written after it was slipped in afterwards.
    in_write_order = sorted(rows, key=lambda r: (moved.get(r.seq, r.seq), r.seq))
    later_min_pk = float("inf")
    for row in reversed(in_write_order):
        if row.seq not in tampered_seqs and row.pk > later_min_pk:
            problems.append((row.seq, f"inserted: event seq {row.seq} (row id {row.pk}) was written after later events"))
        later_min_pk = min(later_min_pk, row.pk)

    present = {r.seq for r in rows}
    missing = [s for s in range(expected_size) if s not in present]
    for start, end in _ranges(missing):
        text = f"event seq {start} is missing" if start == end else f"events seq {start} to {end} are missing"
        problems.append((start, f"deleted: {text}"))
    extra = [r.seq for r in rows if r.seq < 0]
    for seq in extra:
        problems.append((seq, f"inserted: event seq {seq} is not a valid position in the log"))

    problems.sort(key=lambda p: p[0])
    dense = next((i for i in range(expected_size) if i not in present), expected_size)
    return [text for _, text in problems], dense


def verify_log() -> AuditReport:
    """Recompute every leaf, check the sequence, recompute every signed root and check consistency between heads."""
    rows = []
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=5_000):
        document = event_document(event)
        matches = _hash_document(document) == event.leaf_hash
        rows.append(_Row(pk=event.pk, seq=event.seq, stored=event.leaf_hash, document=None if matches else document))
    heads = list(SignedTreeHead.objects.select_related("key").order_by("id"))
    report = AuditReport(events=len(rows), tree_heads=len(heads))

    last_seq = rows[-1].seq + 1 if rows else 0
    expected_size = max([last_seq, *(h.tree_size for h in heads)])
    row_problems, dense = _row_problems(rows, expected_size)
    report.problems.extend(row_problems)

    by_seq = {r.seq: r for r in rows}
    tree = MerkleTree(b"".join(bytes.fromhex(by_seq[s].stored) for s in range(dense)))

    mismatched: set[int] = set()
    for head in heads:
        label = f"STH {head.pk} (tree size {head.tree_size})"
        problem = head_problem(head)
        if problem is not None:
            kind = "revoked key" if problem.startswith("signed with revoked key") else "bad signature"
            report.problems.append(f"{kind}: {label}: {problem}")
        if head.tree_size > dense:
            mismatched.add(head.pk)
            report.problems.append(f"root mismatch: {label} covers events the log no longer holds in order")
        elif (tree.root(head.tree_size) if head.tree_size else EMPTY_ROOT).hex() != head.root_hash:
            mismatched.add(head.pk)
            report.problems.append(f"root mismatch: the first {head.tree_size} events do not hash to the root of {label}")

    for older, newer in zip(heads, heads[1:], strict=False):
        if newer.tree_size < older.tree_size:
            report.problems.append(
                f"inconsistent: STH {newer.pk} (tree size {newer.tree_size}) is smaller than the earlier STH {older.pk} "
                f"(tree size {older.tree_size})"
            )
            continue
        if older.pk in mismatched or newer.pk in mismatched:
            continue  # already reported against the log
        try:
            verify_consistency(
                older.tree_size, newer.tree_size, bytes.fromhex(older.root_hash), bytes.fromhex(newer.root_hash),
                tree.consistency_proof(older.tree_size, newer.tree_size),
            )
        except (ProofError, ValueError) as exc:
            report.problems.append(f"inconsistent: STH {older.pk} and STH {newer.pk}: {exc}")
    return report
