"""Where the shared, licence-checked test data lives: `../shared/data` beside the repository, or
`ASSAY_SHARED_DATA` for a checkout kept elsewhere (a CI runner's work folder, a clone under /tmp)."""
from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("ASSAY_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SHARED_GLTF = SHARED_DATA / "gltf"
SCEAUX_CASTLE = SHARED_DATA / "photos" / "sceaux-castle"
