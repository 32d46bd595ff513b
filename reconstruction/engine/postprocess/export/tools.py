"""Where the outside programs the exporters call are found: node with the repository's node_modules, assimp."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ToolMissing

# reconstruction/engine/postprocess/export -> repository root (where package.json and node_modules live)
REPO_ROOT = Path(__file__).resolve().parents[4]
NODE_ROOT = Path(os.environ.get("ASSAY_NODE_ROOT", REPO_ROOT))


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise ToolMissing("node is not installed; install Node.js 18 or later, then run `npm install` at the repository root")
    return found


def node_package(name: str) -> Path:
    folder = NODE_ROOT / "node_modules" / name
    if not folder.is_dir():
        raise ToolMissing(f"npm package '{name}' is not installed; run `npm install` in {NODE_ROOT}")
    return folder


def assimp() -> str:
    found = shutil.which("assimp")
    if found is None:
        raise ToolMissing("assimp is not installed; install the Debian package assimp-utils (deploy/install-system-packages.sh)")
    return found
