"""The bench's recall cap: surface no capture view can see (an inner shell) is counted out, the rest in."""

from __future__ import annotations

import numpy as np
import trimesh

from reconstruction.engine.cameras import camera_looking_at, intrinsics

from .test_recon_merge import load_bench


def test_an_inner_shell_counts_as_unseen():
    outer = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    K = intrinsics(100.0, 100.0, 64.0, 64.0)
    cameras = [
        camera_looking_at(f"{i}.png", 128, 128, K, 4.0 * np.array([np.cos(a), 0.5, np.sin(a)]), (0.0, 0.0, 0.0))
        for i, a in enumerate(np.linspace(0, 2 * np.pi, 8, endpoint=False))
    ]
    bench = load_bench()
    assert bench.seen_share(outer, cameras, 20_000) > 0.8  # the top and bottom caps are out of view of the ring
    both = trimesh.util.concatenate([outer, inner])
    # The inner shell holds a fifth of the area and is always hidden.
    expected = bench.seen_share(outer, cameras, 20_000) * outer.area / both.area
    assert abs(bench.seen_share(both, cameras, 20_000) - expected) < 0.02
