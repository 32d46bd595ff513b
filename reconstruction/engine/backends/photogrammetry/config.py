"""Parameters of the photogrammetry backend: one dataclass that also yields its JSON schema."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PhotogrammetryParams:
    """Every knob of a run, with the defaults used by the benchmark."""

    # Structure from motion.
    max_image_size: int = field(default=1600, metadata={"minimum": 256, "maximum": 8192})
    exhaustive_matching_max_images: int = field(default=50, metadata={"minimum": 2, "maximum": 1000})
    # SIFT's contrast threshold (COLMAP's default is 0.0067); lower finds features on faint texture.
    sift_peak_threshold: float = field(default=0.004, metadata={"minimum": 0.0005, "maximum": 0.05})
    # Focal length in pixels / max(width, height), used when a photo has no EXIF focal length.
    focal_length_prior: float = field(default=1.2, metadata={"minimum": 0.3, "maximum": 5.0})
    # When COLMAP's defaults leave images out, run SfM again with fainter features (on a 4× upsampled image), a
    # looser ratio test and a less demanding mapper (sfm.WIDE_BASELINE_ATTEMPT). Its models can be wrong on
    # symmetric objects, so one is kept only when confirmed: by the silhouettes when every image has a mask (the
    # capture's own or cut from a plain background), else by a second mapping run that places the cameras alike.
    # "with-masks" (the default) retries only where the silhouettes can confirm: images only, it placed every view of
    # Avocado (0.5° median; F@1% 0.96) and the rocker arm, and refused SheenChair's wrong model (its hull covers 1%
    # of the masks). Run agreement alone let a wrong SheenChair model through as complete, hence "always" is opt-in.
    sfm_wide_baseline_retry: str = field(default="with-masks", metadata={"enum": ["with-masks", "always", "never"]})
    # After SfM, refine the cameras on dense affine Lucas-Kanade tracks seeded by a quick stereo pass (refine.py).
    # Images only (median centre error % of spread / rotation): Avocado 0.23% / 0.45° -> 0.05% / 0.11° (F@0.25%
    # 0.31 -> 0.76), the bunny 0.04% / 0.07° -> 0.008% / 0.013°, for 20-30 s. Known cameras are never refined.
    refine_cameras: bool = True
    # Multi-view stereo.
    mvs_max_image_size: int = field(default=512, metadata={"minimum": 64, "maximum": 4096})
    neighbours: int = field(default=4, metadata={"minimum": 1, "maximum": 12})
    depth_hypotheses: int = field(default=128, metadata={"minimum": 16, "maximum": 512})
    patch_size: int = field(default=7, metadata={"minimum": 3, "maximum": 15})
    # Iterations of slanted-plane (PatchMatch-style) refinement of each depth map after the fronto-parallel sweep
    # (planes.py); 0 turns it off. Known cameras, rocker arm F@0.25/0.5/1%: 0.777/0.845/0.907 without, 0.847/0.905/
    # 0.949 at 3, 0.876/0.934/0.965 at 6 (86 -> 134 -> 155 s; measured before marginal points yielded to the hull).
    plane_iterations: int = field(default=6, metadata={"minimum": 0, "maximum": 20})
    min_ncc: float = field(default=0.3, metadata={"minimum": -1.0, "maximum": 1.0})
    min_consistent_views: int = field(default=2, metadata={"minimum": 1, "maximum": 12})
    # A neighbour confirms a pixel when its depth there reprojects within this many pixels of it (0.5 rather than 1
    # keeps only points good to about a pixel: F@0.25% of spot 0.66 -> 0.70, Avocado 0.67 -> 0.69, same depth maps).
    consistency_pixels: float = field(default=0.5, metadata={"minimum": 0.1, "maximum": 10.0})
    consistency_depth: float = field(default=0.01, metadata={"minimum": 0.0001, "maximum": 0.2})
    # Meshing.
    poisson_depth: int = field(default=9, metadata={"minimum": 5, "maximum": 12})
    density_trim_quantile: float = field(default=0.03, metadata={"minimum": 0.0, "maximum": 0.5})
    min_component_share: float = field(default=0.02, metadata={"minimum": 0.0, "maximum": 1.0})
    # With a mask for every view, fill the gaps stereo leaves (plain, textureless patches) from the silhouettes.
    silhouette_fill: bool = True
    # A capture without masks whose every photo shows one object on a plain background (a studio sweep, a render)
    # gets its masks cut from that background, so the silhouettes trim and fill the surface as given masks do.
    background_masks: bool = True
    # Larger surfaces are simplified (quadric error) to this many triangles before texturing.
    max_triangles: int = field(default=100_000, metadata={"minimum": 1000, "maximum": 5_000_000})
    # Texturing.
    texture_size: int = field(default=2048, metadata={"minimum": 256, "maximum": 8192})
    uv_atlas: str = field(default="auto", metadata={"enum": ["auto", "xatlas", "grid"]})
    device: str = field(default="auto", metadata={"enum": ["auto", "cpu", "cuda"]})
