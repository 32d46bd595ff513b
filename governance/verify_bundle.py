#!/usr/bin/env python3
"""Verify an Assay audit export bundle offline, with only the log's public key.

Needs Python 3.11+ and the `cryptography` package; no Django, no database, no network. Copy this file
and `governance/merkle.py` (RFC 9162 proof checks, standard library only) side by side, fetch the public
key once (`GET /api/v1/keys`, the `public_key_pem` of the tree-head key), then:

    python verify_bundle.py --public-key tree-head-key.pem audit-bundle.jsonl

It checks, and names every failure:
  1. the closing line signs the SHA-256 of every line before it (so nothing was added, dropped or edited);
  2. the signed tree head in the header is signed by the given key;
  3. each event's leaf hash is SHA-256(0x00 || canonical JSON of the event) and its inclusion proof leads
     to the signed root.
Exit status 0 when the bundle verifies, 1 otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

try:
    from governance.merkle import ProofError, verify_inclusion
except ImportError:  # run from a folder holding merkle.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from merkle import ProofError, verify_inclusion  # type: ignore[no-redef]

BUNDLE_FORMAT = "assay.audit-bundle/v1"
BUNDLE_SIGNATURE_CONTEXT = b"assay-audit-bundle/v1\n"
LOG_ID = "assay-audit/v1"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _valid(public_key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def verify(bundle: bytes, public_key: Ed25519PublicKey) -> tuple[list[str], int]:
    """(problems, number of events verified); no problems means the whole bundle verifies."""
    key_id = hashlib.sha256(public_key.public_bytes_raw()).hexdigest()
    lines = bundle.splitlines(keepends=True)
    if len(lines) < 2:
        return ["the bundle needs a header and a signature line"], 0
    problems: list[str] = []
    try:
        header, *events, closing = (json.loads(line) for line in lines)
    except ValueError as exc:
        return [f"a line is not JSON: {exc}"], 0
    if not isinstance(header, dict) or not isinstance(closing, dict):
        return ["the header and the closing line must be JSON objects"], 0

    body = b"".join(lines[:-1])
    if closing.get("type") != "signature":
        problems.append("the last line is not the bundle signature")
    elif closing.get("sha256") != hashlib.sha256(body).hexdigest():
        problems.append("the bundle's lines do not match the signed digest (lines added, dropped or edited)")
    elif closing.get("key_id") != key_id:
        problems.append(f"the bundle is signed by key {closing.get('key_id')}, not by the given key {key_id}")
    elif not _valid(public_key, closing.get("signature", ""), BUNDLE_SIGNATURE_CONTEXT + hashlib.sha256(body).digest()):
        problems.append("the bundle signature does not verify with the given key")

    if header.get("type") != BUNDLE_FORMAT:
        return [*problems, f"the first line is not an {BUNDLE_FORMAT} header"], 0
    head = header.get("tree_head")
    if not isinstance(head, dict):
        return [*problems, "the header has no tree head"], 0
    message = canonical_json({
        "log": LOG_ID, "tree_size": head.get("tree_size"), "root_hash": head.get("root_hash"),
        "timestamp_ms": head.get("timestamp_ms"), "key_id": head.get("key_id"),
    })
    if head.get("key_id") != key_id:
        problems.append(f"the tree head is signed by key {head.get('key_id')}, not by the given key {key_id}")
    elif not _valid(public_key, head.get("signature", ""), message):
        problems.append(f"the tree head (size {head.get('tree_size')}) signature does not verify with the given key")
    tree_size = head.get("tree_size")
    try:
        root = bytes.fromhex(head.get("root_hash", ""))
    except (TypeError, ValueError):
        return [*problems, "the tree head's root hash is not hex"], 0
    if not isinstance(tree_size, int) or len(root) != 32:
        return [*problems, "the tree head has no valid tree size and 32-byte root"], 0

    verified = 0
    if len(events) != header.get("event_count"):
        problems.append(f"the header announces {header.get('event_count')} events, the bundle holds {len(events)}")
    for line in events:
        if not isinstance(line, dict) or not isinstance(line.get("event"), dict):
            problems.append("an event line is not an object with an 'event'")
            continue
        event = line["event"]
        seq = event.get("seq")
        leaf = hashlib.sha256(b"\x00" + canonical_json(event)).digest()
        if leaf.hex() != line.get("leaf_hash"):
            problems.append(f"event seq {seq}: its content does not match its leaf hash")
            continue
        try:
            verify_inclusion(leaf, seq, tree_size, [bytes.fromhex(p) for p in line.get("inclusion_proof", [])], root)
        except (ProofError, ValueError, TypeError) as exc:
            problems.append(f"event seq {seq}: {exc}")
            continue
        verified += 1
    return problems, verified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public-key", required=True, type=Path, help="PEM file of the tree-head key")
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args(argv)
    public_key = load_pem_public_key(args.public_key.read_bytes())
    if not isinstance(public_key, Ed25519PublicKey):
        print("the public key is not an Ed25519 key", file=sys.stderr)
        return 1
    problems, verified = verify(args.bundle.read_bytes(), public_key)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"OK: {verified} events verified against the signed tree head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
