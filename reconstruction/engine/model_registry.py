"""Trained checkpoints the engine ships, each described by a model card and pinned by its sha256.

The checkpoints live in `reconstruction/engine/weights/` (or the folder named by `ASSAY_MODEL_DIR`) beside a
manifest, `registry.json`: a list of model cards. Nothing is loaded before its digest is checked, and loading
never unpickles code (`torch.load(..., weights_only=True)`). A backend that used a checkpoint lists
`checkpoint_reference(card)` in `ReconstructionResult.metrics["model_checkpoints"]`, which is how provenance
names the exact model that made an asset.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconstruction.engine.digests import sha256_file
from reconstruction.engine.errors import CheckpointRejected, EngineError, UnknownModel

MODEL_DIR_ENV = "ASSAY_MODEL_DIR"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "registry.json"
CHECKPOINTS_METRIC = "model_checkpoints"  # key in ReconstructionResult.metrics: a list of checkpoint_reference()
# The repository declares no licence of its own (package.json says UNLICENSED), so the brief's default stands.
DEFAULT_LICENCE = "Apache-2.0"

_CHUNK = 1 << 20
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is, how it was trained and on what, how well it does, and under which licence."""

    name: str
    version: str
    architecture: str
    sha256: str
    file: str  # relative to the model directory
    size_bytes: int
    training_config: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)  # at least "description" and "digest" (sha256)
    metrics: dict[str, Any] = field(default_factory=dict)
    licence: str = DEFAULT_LICENCE
    created: str = ""  # ISO 8601, UTC
    description: str = ""

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "sha256": self.sha256,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "training_config": json.loads(json.dumps(self.training_config)),
            "training_data": json.loads(json.dumps(self.training_data)),
            "metrics": json.loads(json.dumps(self.metrics)),
            "licence": self.licence,
            "created": self.created,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """A card from its JSON form; raises EngineError (invalid_model_card) when a field is missing or wrong."""
        try:
            card = cls(
                name=str(data["name"]),
                version=str(data["version"]),
                architecture=str(data["architecture"]),
                sha256=str(data["sha256"]).lower(),
                file=str(data["file"]),
                size_bytes=int(data["size_bytes"]),
                training_config=dict(data.get("training_config") or {}),
                training_data=dict(data.get("training_data") or {}),
                metrics=dict(data.get("metrics") or {}),
                licence=str(data.get("licence") or DEFAULT_LICENCE),
                created=str(data.get("created") or ""),
                description=str(data.get("description") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"Model card {data!r:.120} is invalid: {exc!r}", code="invalid_model_card") from None
        _check_card(card)
        return card


def model_dir() -> Path:
    """The folder that holds registry.json and the checkpoints: $ASSAY_MODEL_DIR, else the shipped weights/."""
    override = os.environ.get(MODEL_DIR_ENV)
    return Path(override) if override else DEFAULT_MODEL_DIR


def list_models() -> list[ModelCard]:
    """Every card in the registry, sorted by name, then by semantic version (oldest first)."""
    manifest = model_dir() / MANIFEST
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{manifest} is not readable JSON: {exc}", code="invalid_model_card") from None
    if not isinstance(data, list):
        raise EngineError(f"{manifest} must hold a JSON list of model cards.", code="invalid_model_card")
    return _sorted([ModelCard.from_dict(item) for item in data])


def find_model(name: str, version: str | None = None, sha256: str | None = None) -> ModelCard:
    """The card named `name` (at `version`, and/or with digest `sha256`); the newest version when none is given."""
    cards = [c for c in list_models() if c.name == name]
    if version is not None:
        cards = [c for c in cards if c.version == version]
    if sha256 is not None:
        cards = [c for c in cards if c.sha256 == sha256.lower()]
    if not cards:
        wanted = name + (f"@{version}" if version else "") + (f" with sha256 {sha256}" if sha256 else "")
        known = ", ".join(sorted({c.reference for c in list_models()})) or "none"
        raise UnknownModel(f"No model {wanted} in {model_dir() / MANIFEST} (registered: {known}).")
    return max(cards, key=lambda c: semver_key(c.version))


def verify(card: ModelCard) -> Path:
    """The checkpoint's path once its sha256 matches the card; CheckpointRejected when missing or different."""
    path = _checkpoint_path(card)
    if not path.is_file():
        raise CheckpointRejected(f"Checkpoint {card.reference} is missing: {path} does not exist.")
    actual = sha256_file(path)
    if actual != card.sha256:
        raise CheckpointRejected(
            f"Checkpoint {card.reference} at {path} does not match its model card: "
            f"expected sha256 {card.sha256}, found {actual}."
        )
    return path


def load_checkpoint(card: ModelCard) -> dict[str, Any]:
    """The checkpoint's contents (tensors on the CPU), after verify(); never runs pickled code."""
    path = verify(card)
    return _load(path, card.reference)


def register_checkpoint(
    path: Path,
    *,
    name: str,
    version: str,
    architecture: str,
    training_config: dict[str, Any],
    training_data: dict[str, Any],
    metrics: dict[str, Any],
    licence: str = DEFAULT_LICENCE,
    description: str = "",
) -> ModelCard:
    """Copies a checkpoint to `<model dir>/<name>-<version>.pt` and records its card (replacing one of the same
    name and version). The file must load with weights_only=True; registry.json is rewritten atomically."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointRejected(f"Cannot register {path}: it does not exist.")
    _load(path, f"{name}@{version}")  # refuse to register what could never be loaded
    directory = model_dir()
    directory.mkdir(parents=True, exist_ok=True)
    file_name = f"{name}-{version}.pt"
    with _registry_lock(directory):
        digest, size = _copy_hashed(path, directory / file_name)
        card = ModelCard(
            name=name,
            version=version,
            architecture=architecture,
            sha256=digest,
            file=file_name,
            size_bytes=size,
            training_config=dict(training_config),
            training_data=dict(training_data),
            metrics=dict(metrics),
            licence=licence,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            description=description,
        )
        _check_card(card)
        cards = [c for c in list_models() if (c.name, c.version) != (name, version)]
        _write_manifest(directory, _sorted([*cards, card]))
    return card


def checkpoint_reference(card: ModelCard) -> dict[str, str]:
    """How a result names the checkpoint it used (an entry of metrics["model_checkpoints"])."""
    return {"name": card.reference, "sha256": card.sha256, "uri": f"assay:model/{card.reference}"}


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version: 1.10.0 > 1.9.0 and 1.0.0 > 1.0.0-rc.1 (build metadata ignored)."""
    match = _SEMVER.match(version)
    if match is None:
        raise EngineError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH).", code="invalid_model_card")
    major, minor, patch, pre, _build = match.groups()
    # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
    pre_key: tuple[Any, ...] = (
        (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    )
    return int(major), int(minor), int(patch), pre_key


def _check_card(card: ModelCard) -> None:
    problems = []
    if not _NAME.match(card.name):
        problems.append(f"name {card.name!r} must be lowercase letters, digits, '.', '_' or '-'")
    if not _SEMVER.match(card.version):
        problems.append(f"version {card.version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    if not _SHA256.match(card.sha256):
        problems.append(f"sha256 {card.sha256!r} is not 64 hex digits")
    if Path(card.file).is_absolute() or ".." in Path(card.file).parts:
        problems.append(f"file {card.file!r} must be a path inside the model directory")
    data_digest = str(card.training_data.get("digest", ""))
    if not card.training_data.get("description") or not _SHA256.match(data_digest):
        problems.append("training_data needs a 'description' and a 'digest' (sha256 of the data set, 64 hex digits)")
    if not card.licence.strip():
        problems.append("licence must be an SPDX identifier")
    if problems:
        raise EngineError(f"Model card {card.reference}: " + "; ".join(problems) + ".", code="invalid_model_card")


def _checkpoint_path(card: ModelCard) -> Path:
    directory = model_dir().resolve()
    path = (directory / card.file).resolve()
    if directory not in path.parents:
        raise CheckpointRejected(f"Checkpoint {card.reference}: {card.file!r} points outside {directory}.")
    return path


def _load(path: Path, reference: str) -> dict[str, Any]:
    import torch

    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError… for files that are not checkpoints
        raise CheckpointRejected(
            f"Checkpoint {reference} at {path} is not a loadable weights-only checkpoint: {exc}"
        ) from None
    if not isinstance(contents, dict):
        raise CheckpointRejected(
            f"Checkpoint {reference} at {path} holds a {type(contents).__name__}, not a dict (state dict)."
        )
    return contents

# mkstemp creates files readable by their owner only; shipped weights are read by every user (workers, CI).
_SHIPPED_MODE = 0o644


def _copy_hashed(source: Path, target: Path) -> tuple[str, int]:
    """Copies source to target through a temporary file in the same folder; returns (sha256, size)."""
    if source.resolve() == target.resolve():
        return sha256_file(target), target.stat().st_size
    digest = hashlib.sha256()
    size = 0
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, _SHIPPED_MODE)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return digest.hexdigest(), size


def _write_manifest(directory: Path, cards: list[ModelCard]) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=directory)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump([c.to_dict() for c in cards], out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, _SHIPPED_MODE)
        os.replace(temp_name, directory / MANIFEST)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


@contextlib.contextmanager
def _registry_lock(directory: Path) -> Iterator[None]:
    """Serialises writers (two trainings registering at once must not drop each other's card)."""
    descriptor = os.open(directory, os.O_RDONLY)  # lock the folder itself: no lock file left in the weights
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _sorted(cards: list[ModelCard]) -> list[ModelCard]:
    return sorted(cards, key=lambda c: (c.name, semver_key(c.version)))
