"""The on-disk format of occupancy training data: numbered `shard-0000.npz`, `shard-0001.npz`, … files and a `dataset.json` written last.

Each shard holds `images` uint8 (N, R, R, 3), `masks` uint8 (N, R, R) coverage, `occupancy` uint8
(N, D, R, R/8) = np.packbits(volume, axis=-1), `frames` a JSON string (list of ViewFrame dicts) and `kinds` (N,)
unicode category names. Shards are written byte-for-byte reproducibly (fixed zip timestamps), so the same seed
gives the same sha256 digests. dataset.json carries every shard's sha256 and a digest over all of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reconstruction.engine.digests import sha256_file
from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.frame import ViewFrame

MANIFEST = "dataset.json"
FORMAT = "assay-occupancy-shards"
FORMAT_VERSION = 1


def dataset_digest(shard_digests: Sequence[str]) -> str:
    """sha256 over the sorted shard digests (hex, newline-joined)."""
    return hashlib.sha256("\n".join(sorted(shard_digests)).encode()).hexdigest()


def write_shard(
    path: Path,
    images: np.ndarray,
    masks: np.ndarray,
    occupancy: np.ndarray,
    frames: Sequence[ViewFrame],
    kinds: Sequence[str],
) -> str:
    """Writes one shard atomically (occupancy given as bool volumes (N, D, R, R)) and returns its sha256."""
    arrays = {
        "images": np.ascontiguousarray(images, dtype=np.uint8),
        "masks": np.ascontiguousarray(masks, dtype=np.uint8),
        "occupancy": np.packbits(np.asarray(occupancy, dtype=bool), axis=-1),
        "frames": np.array(json.dumps([frame.to_dict() for frame in frames])),
        "kinds": np.array(list(kinds), dtype=str),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    os.replace(temporary, path)
    return sha256_file(path)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Writes dataset.json atomically; readers poll for it, so it must appear complete or not at all."""
    path = folder / MANIFEST
    temporary = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(temporary, path)
    return path


class PackedVolumes:
    """Occupancy volumes kept bit-packed in memory; indexing unpacks only the requested items to bool."""

    def __init__(self, packed: np.ndarray, resolution: int) -> None:
        self.packed = packed
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, depth, rows, _ = self.packed.shape
        return (n, depth, rows, self.resolution)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.unpackbits(self.packed[index], axis=-1, count=self.resolution).astype(bool)


@dataclass
class Dataset:
    """A loaded data set: crops, coverage masks, lazily unpacked occupancy, frames and kinds, plus the manifest."""

    images: np.ndarray  # uint8 (N, R, R, 3)
    masks: np.ndarray  # uint8 (N, R, R)
    occupancy: PackedVolumes  # (N, D, R, R) bool on indexing
    frames: list[ViewFrame]
    kinds: np.ndarray  # (N,) str
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    def occupancy_batch(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Bool volumes (len(indices), D, R, R)."""
        return self.occupancy[np.asarray(indices)]


def load_dataset(folder: Path | str, *, verify: bool = True) -> Dataset:
    """Loads every shard listed in `folder`/dataset.json, checking each shard's sha256 unless `verify` is False."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"No readable {MANIFEST} in {folder}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{folder / MANIFEST} is not an {FORMAT} manifest.")
    parts: dict[str, list[Any]] = {"images": [], "masks": [], "occupancy": [], "frames": [], "kinds": []}
    for shard in manifest["shards"]:
        path = folder / shard["name"]
        if verify and (not path.is_file() or sha256_file(path) != shard["sha256"]):
            raise InvalidInput(f"Shard {shard['name']} is missing or does not match its sha256 in {MANIFEST}.")
        with np.load(path, allow_pickle=False) as data:
            for key in ("images", "masks", "occupancy", "kinds"):
                parts[key].append(data[key])
            parts["frames"].extend(ViewFrame.from_dict(item) for item in json.loads(str(data["frames"])))
    resolution = int(manifest["resolution"])
    if not parts["images"]:
        raise InvalidInput(f"{folder / MANIFEST} lists no shards.")
    return Dataset(
        images=np.concatenate(parts["images"]),
        masks=np.concatenate(parts["masks"]),
        occupancy=PackedVolumes(np.concatenate(parts["occupancy"]), resolution),
        frames=parts["frames"],
        kinds=np.concatenate(parts["kinds"]),
        manifest=manifest,
    )
