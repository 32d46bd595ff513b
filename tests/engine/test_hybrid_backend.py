"""The hybrid backend: known voxels from what the views measured, the model's completion of the rest, provenance."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from reconstruction.engine.backends.hybrid import HybridBackend, HybridParams
from reconstruction.engine.backends.hybrid.completion import SamplerSettings, complete, output_frame
from reconstruction.engine.backends.hybrid.known import (
    EMPTY,
    OCCUPIED,
    UNKNOWN,
    classify,
    voxel_centres,
    world_to_index,
)
from reconstruction.engine.backends.hybrid.observe import Measured, Observation, StereoSettings, observe
from reconstruction.engine.backends.hybrid.surface import extract_surface, provenance
from reconstruction.engine.backends.hybrid.texture import fill_unseen
from reconstruction.engine.backends.photogrammetry.fusion import PointCloud, oriented_normals
from reconstruction.engine.cameras import Camera
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import Cancelled, InvalidCapture, UnknownModel
from reconstruction.engine.generative.frame import frame_for, mesh_occupancy
from reconstruction.engine.generative.model import DiffusionModel
from reconstruction.engine.metrics import load_mesh, surface_distances
from reconstruction.engine.params import json_schema
from reconstruction.engine.protocol import Backend
from reconstruction.engine.registry import get_backend

TINY_MODEL = {"resolution": 16, "depth_bins": 16, "base_channels": 8, "channel_mults": [1, 2], "timesteps": 100}
FAST = {
    "output_resolution": 40,
    "samples": 1,
    "steps": 4,
    "repaint_resamples": 1,
    "depth_hypotheses": 48,
    "measurement": "stereo",
}
# An open box (a cup) 0.2 × 0.12 × 0.2 m, walls 3 cm thick, standing on y = −0.06 with its 9 cm deep opening up.
OUTER = np.array([0.1, 0.06, 0.1])
INNER = 0.07
FLOOR = -0.03


def tiny_model() -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(TINY_MODEL).eval()


def cup_solid(points: np.ndarray) -> np.ndarray:
    """Inside the cup's walls and floor."""
    in_box = np.all(np.abs(points) <= OUTER, axis=1)
    in_opening = (np.abs(points[:, 0]) < INNER) & (np.abs(points[:, 2]) < INNER) & (points[:, 1] > FLOOR)
    return in_box & ~in_opening


def cup_mesh() -> trimesh.Trimesh:
    def box(low, high):
        part = trimesh.creation.box(extents=np.subtract(high, low))
        part.apply_translation(np.add(low, high) / 2)
        return part

    mesh = trimesh.util.concatenate(
        [
            box([-0.1, -0.06, -0.1], [0.1, FLOOR, 0.1]),
            box([-0.1, FLOOR, -0.1], [-INNER, 0.06, 0.1]),
            box([INNER, FLOOR, -0.1], [0.1, 0.06, 0.1]),
            box([-INNER, FLOOR, -0.1], [INNER, 0.06, -INNER]),
            box([-INNER, FLOOR, INNER], [INNER, 0.06, 0.1]),
        ]
    )
    rng = np.random.default_rng(3)
    colours = np.hstack([rng.integers(0, 256, (len(mesh.faces), 3)), np.full((len(mesh.faces), 1), 255)])
    mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=colours.astype(np.uint8))
    return mesh


@pytest.fixture(scope="module")
def cup_capture(tmp_path_factory) -> Path:
    """Four 96-pixel views of the cup from 15° below and above its rim: none sees the bottom of the opening."""
    from reconstruction.engine.render import render_capture

    folder = tmp_path_factory.mktemp("cup")
    cup_mesh().export(folder / "cup.glb")
    return render_capture(folder / "cup.glb", folder / "capture", views=4, size=96, rings=(-15.0, 15.0), depth=True)


def observation_from_rendered_depth(folder: Path) -> Observation:
    """An observation whose depth maps and surface points are the renderer's exact depths (no stereo noise)."""
    capture = Capture.load(folder)
    cameras = capture.cameras
    depths = [np.load(folder / "depth" / f"{Path(c.image_name).stem}.npy") for c in cameras]
    points, views = [], []
    for index, (camera, depth) in enumerate(zip(cameras, depths, strict=True)):
        rows, cols = np.nonzero(depth > 0)
        rays = np.stack([cols + 0.5, rows + 0.5, np.ones(len(rows))], axis=1) @ np.linalg.inv(camera.K).T
        points.append((rays * depth[rows, cols, None] - camera.t) @ camera.R)
        views.append(np.full(len(rows), index))
    xyz, view_index = np.concatenate(points), np.concatenate(views)
    return Observation(
        cameras=cameras,
        images=[capture.load_image(i) for i in range(capture.num_views)],
        masks=[capture.load_mask(i) for i in range(capture.num_views)],
        stereo_cameras=cameras,
        depths=depths,
        points=xyz,
        normals=oriented_normals(xyz, np.array([c.center for c in cameras])[view_index]),
        colours=np.full((len(xyz), 3), 0.5),
        point_views=view_index,
        object_box=np.stack([-OUTER, OUTER]),
        stereo_pairs=len(cameras),
    )


def cup_frame(observation: Observation, resolution: int = 32):
    reference = observation.reference_view()
    return frame_for(
        observation.cameras[reference],
        observation.masks[reference],
        resolution=resolution,
        depth_bins=resolution,
        centre_hint=(0.0, 0.0, 0.0),
    )


def test_is_registered_and_meets_the_protocol():
    backend = get_backend("hybrid")
    assert isinstance(backend, Backend)
    assert backend.parameter_schema == json_schema(HybridParams)
    capabilities = backend.capabilities
    assert capabilities.needs_known_cameras and capabilities.min_views == 2 and capabilities.max_views == 12


def test_voxel_geometry_matches_the_frame(cup_capture):
    frame = cup_frame(observation_from_rendered_depth(cup_capture))
    indices = np.random.default_rng(0).uniform(0, 31, size=(100, 3))
    assert np.allclose(world_to_index(frame, frame.index_to_world(indices)), indices, atol=1e-9)
    assert np.allclose(voxel_centres(frame).numpy(), frame.world_points(), atol=1e-6)


def test_known_voxels_of_a_cup_seen_from_four_views(cup_capture):
    observation = observation_from_rendered_depth(cup_capture)
    frame = cup_frame(observation)
    labels = classify(frame, observation).reshape(-1)
    centres = frame.world_points().reshape(-1, 3)
    solid = cup_solid(centres)
    lateral, depth = frame.voxel_size()
    voxel = max(lateral, depth)

    # Outside the visual hull (on clear background, a pixel away from the silhouette, in some view): empty, all of it.
    outside_hull = np.zeros(len(centres), dtype=bool)
    for camera, mask in zip(observation.cameras, observation.masks, strict=True):
        uv, _ = camera.project(centres)
        pixels = np.clip(np.floor(uv).astype(int), 0, 95)
        outside_hull |= ndimage.maximum_filter(mask, size=3)[pixels[:, 1], pixels[:, 0]] == 0
    assert outside_hull.sum() > 10_000 and np.all(labels[outside_hull] == EMPTY)
    beyond = np.any(np.abs(centres) > OUTER + voxel, axis=1)
    # Nothing solid is carved.
    assert not np.any(labels[solid] == EMPTY)
    # Occupied: a band just inside the seen walls, and never more than a voxel out of the solid.
    occupied = labels == OCCUPIED
    assert occupied.sum() > 300
    assert solid[occupied].mean() > 0.9
    assert not np.any(occupied & np.any(np.abs(centres) > OUTER + voxel, axis=1))
    wall_skin = (
        solid
        & (np.abs(centres[:, 0]) > 0.1 - lateral)
        & (np.abs(centres[:, 1]) < 0.03)
        & (np.abs(centres[:, 2]) < 0.06)
    )
    assert wall_skin.sum() > 10 and occupied[wall_skin].mean() > 0.5
    # The bottom of the opening, which no camera sees into: unknown, not carved and not filled.
    hidden = (
        (np.abs(centres[:, 0]) < 0.055)
        & (np.abs(centres[:, 2]) < 0.055)
        & (centres[:, 1] > FLOOR + 0.005)
        & (centres[:, 1] < 0.0)
    )
    assert hidden.sum() > 20 and np.all(labels[hidden] == UNKNOWN)
    # The part of the opening a camera does look into is carved free.
    assert np.any(labels[~solid & ~beyond & (centres[:, 1] > 0.03)] == EMPTY)


def observed_surface(folder: Path, surface: trimesh.Trimesh, confirmations: int, neighbours: int = 4) -> Observation:
    settings = StereoSettings(
        max_image_size=96,
        neighbours=neighbours,
        hypotheses=32,
        patch=5,
        min_ncc=0.3,
        plane_iterations=0,
        min_consistent_views=confirmations,
        consistency_pixels=1.0,
        consistency_depth=0.01,
    )
    return observe(Capture.load(folder), settings, torch.device("cpu"), lambda: None, lambda *_: None, surface)


def test_a_fitted_surface_stands_in_for_stereo(cup_capture):
    """The surface's depth in each view replaces the sweep: its points lie on it, inside the silhouettes, and none
    where no camera looks. The cup's four views are 90° apart, beyond the matching angle, so none confirms another
    and each keeps all it sees."""
    mesh = cup_mesh()
    observation = observed_surface(cup_capture, mesh, 1)
    assert observation.stereo_pairs == 0 and len(observation.points) > 1000
    distance, _ = surface_distances(observation.points, mesh)
    assert np.quantile(distance, 0.99) < 0.002
    x, y, z = observation.points.T
    assert not np.any((np.abs(x) < 0.055) & (np.abs(z) < 0.055) & (y > FLOOR - 0.002) & (y < 0.0))  # its floor
    for depth, mask in zip(observation.depths, observation.masks, strict=True):
        assert (depth > 0).sum() > 100 and np.all(mask[depth > 0] >= 0.5)


def test_stereo_measures_between_views_within_the_matching_angle_and_the_field_fills_the_rest(sphere_capture):
    """Eight views 45° apart, given a fitted surface 1 cm too far out (as a field swells on few views): stereo
    measures each view against its neighbours, its confirmed points replace the field's wherever it matched, and
    the field keeps only what stereo did not measure."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    sphere.apply_translation([0.02, 0.05, -0.01])
    swollen = sphere.copy()
    swollen.vertices = (sphere.vertices - sphere.centroid) * 1.1 + sphere.centroid
    field_only = observed_surface(sphere_capture, swollen, 1, neighbours=0)
    measured = observed_surface(sphere_capture, swollen, 1)
    assert field_only.stereo_pairs == 0 and measured.stereo_pairs == 8
    everything = observed_surface(sphere_capture, swollen, 0)
    assert len(everything.points) > len(measured.points) > 0.5 * len(everything.points)

    def on(surface: trimesh.Trimesh, observation: Observation) -> np.ndarray:
        return surface_distances(observation.points, surface)[0] < 0.004

    assert on(sphere, field_only).mean() < 0.02 and on(swollen, field_only).mean() > 0.98
    assert on(sphere, measured).mean() > 0.5  # stereo's points, on the true sphere
    assert 0.05 < on(swollen, measured).mean() < 0.5  # the field's, where stereo measured nothing


def test_completion_keeps_every_known_voxel_through_meshing(cup_capture):
    observation = observation_from_rendered_depth(cup_capture)
    model = tiny_model()
    reference = observation.reference_view()
    frame = output_frame(model, observation, reference, 24)
    completion = complete(
        model,
        observation,
        frame,
        reference,
        SamplerSettings(samples=2, steps=3, guidance=2.0, repaint_resamples=1, seed=1),
        tolerance_voxels=1.5,
        band_voxels=2.0,
    )
    labels = completion.labels
    assert completion.volume.shape == frame.shape == (48, 24, 24)
    assert np.all(completion.volume[labels == EMPTY] == 0.0)
    assert np.all(completion.volume[labels == OCCUPIED] == 1.0)
    unknown = labels == UNKNOWN
    generated = completion.volume[unknown]
    assert unknown.any() and np.all((generated >= 0.0) & (generated <= 1.0))
    assert len(np.unique(generated)) > 10  # the model's probabilities, not a fill value
    assert completion.sample.volume.shape == (16, 16, 16)  # sampled on the model's own grid

    mesh, _ = extract_surface(frame, completion.volume, 0.0)
    inside = mesh_occupancy(frame, mesh)
    assert not inside[labels == EMPTY].any()
    assert inside[labels == OCCUPIED].mean() > 0.99


def test_provenance_counts_the_area_far_from_fused_points():
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    for _ in range(4):
        mesh = mesh.subdivide()
    # Fused points on the top face only: one sixth of the area is observed (less the sides' top row of triangles).
    grid = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 40), np.linspace(-0.5, 0.5, 40)), axis=-1).reshape(-1, 2)
    points = np.column_stack([grid[:, 0], grid[:, 1], np.full(len(grid), 0.5)])
    origin = provenance(mesh, points, radius=0.02)
    assert origin.generated_fraction == pytest.approx(5 / 6, abs=0.03)
    height = mesh.triangles_center[:, 2]
    assert not origin.face_generated[height > 0.49].any() and origin.face_generated[height < 0.45].all()
    assert provenance(mesh, np.zeros((0, 3)), radius=0.05).generated_fraction == 1.0


def test_unseen_colours_are_spread_smoothly_from_the_seen_ones():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    z = mesh.vertices[:, 2]
    seen = np.abs(z) > 0.3
    colours = np.where((z > 0)[:, None], [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
    colours[~seen] = 0.5
    filled = fill_unseen(mesh, colours, seen)
    assert np.array_equal(filled[seen], colours[seen])
    band = filled[~seen]
    assert np.all(band[:, 1] < 1e-3)  # no colour that no view had
    # The unseen belt blends from red at its top to blue at its bottom.
    redness = band[:, 0] - band[:, 2]
    assert np.corrcoef(z[~seen], redness)[0, 1] > 0.9


def test_needs_masks_cameras_and_a_registered_model(sphere_capture, tmp_path, monkeypatch):
    def run(capture, backend=None):
        return (backend or HybridBackend(tiny_model())).run(
            capture, tmp_path / "out", params=FAST, progress=lambda *e: None, cancel=lambda: False
        )

    capture = Capture.load(sphere_capture)
    capture.masks = None
    with pytest.raises(InvalidCapture, match="hybrid needs a foreground mask per image"):
        run(capture)
    capture = Capture.load(sphere_capture)
    capture.cameras = None
    with pytest.raises(InvalidCapture, match="hybrid needs calibrated cameras"):
        run(capture)
    capture = Capture.load(sphere_capture)
    capture.images, capture.cameras, capture.masks = capture.images[:1], capture.cameras[:1], capture.masks[:1]
    with pytest.raises(InvalidCapture, match="hybrid needs at least 2 views, the capture has 1."):
        run(capture)
    monkeypatch.setenv("ASSAY_MODEL_DIR", str(tmp_path / "no-models"))
    with pytest.raises(UnknownModel, match="No model occupancy-diffusion in"):
        run(Capture.load(sphere_capture), HybridBackend())
    assert not (tmp_path / "out" / "mesh.glb").exists()


def test_cancel_stops_the_run(sphere_capture, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        HybridBackend(tiny_model()).run(
            Capture.load(sphere_capture), tmp_path / "out", params=FAST, progress=lambda *e: None, cancel=cancel
        )
    assert not (tmp_path / "out" / "mesh.glb").exists()


@pytest.mark.slow
def test_end_to_end_with_a_registered_checkpoint(sphere_capture, tmp_path, monkeypatch):
    from reconstruction.engine.model_registry import checkpoint_reference, register_checkpoint

    monkeypatch.setenv("ASSAY_MODEL_DIR", str(tmp_path / "models"))
    model = tiny_model()
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp_path / "tiny.pt")
    card = register_checkpoint(
        tmp_path / "tiny.pt",
        name="occupancy-diffusion",
        version="0.0.1",
        architecture="frustum-unet2d",
        training_config={},
        training_data={"description": "none: random weights", "digest": "0" * 64},
        metrics={},
    )
    events = []
    result = HybridBackend().run(
        Capture.load(sphere_capture),
        tmp_path / "out",
        params=FAST,
        progress=lambda *e: events.append(e),
        cancel=lambda: False,
    )
    metrics = result.metrics
    assert metrics["model_checkpoints"] == [checkpoint_reference(card)]
    assert metrics["fused_points"] > 500 and metrics["stereo_views"] == 8
    assert 0.0 <= metrics["generated_fraction"] <= 1.0 and 0.0 <= metrics["confidence"] <= 1.0
    assert metrics["known_voxels"]["occupied"] > 0 and metrics["known_voxels"]["empty"] > 0
    repair = metrics["silhouette_repair"]
    assert repair["coverage_after"] >= repair["coverage_before"] and repair["coverage_after"] > 0.99

    mesh = load_mesh(result.mesh_path)
    assert mesh.visual.kind == "vertex"
    generated = np.asarray(mesh.vertex_attributes["_GENERATED"]).reshape(-1) > 0.5
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert len(record["generated_faces"]) == metrics["provenance"]["generated_faces"]
    # Observed vertices were put back on the measured surface: the sphere of radius 0.1 at CENTRE.
    distance = np.abs(np.linalg.norm(mesh.vertices - [0.02, 0.05, -0.01], axis=1) - 0.1)
    observed = ~generated
    assert observed.sum() > 100
    assert np.median(distance[observed]) < 0.004 and np.mean(distance[observed] < 0.01) > 0.9
    fractions = [e[1] for e in events]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


@pytest.mark.slow
def test_a_field_fitted_to_the_views_measures_the_surface(sphere_capture, tmp_path):
    params = {**FAST, "measurement": "field", "field_iterations": 150, "field_seconds": 90, "field_resolution": 48}
    result = HybridBackend(tiny_model()).run(
        Capture.load(sphere_capture), tmp_path / "out", params=params, progress=lambda *e: None, cancel=lambda: False
    )
    metrics = result.metrics
    assert metrics["measurement"] == "field" and metrics["field"]["iterations"] == 150  # the count, not the clock
    assert any("150 iterations" in line and "stopped" not in line for line in result.log)
    assert (tmp_path / "out" / "field" / "mesh.glb").exists()
    assert metrics["fused_points"] > 2000
    # What two views saw of the field's surface is kept as measured: on the sphere (its voxel is 5 mm).
    mesh = load_mesh(result.mesh_path)
    observed = np.asarray(mesh.vertex_attributes["_GENERATED"]).reshape(-1) < 0.5
    distance = np.abs(np.linalg.norm(mesh.vertices[observed] - [0.02, 0.05, -0.01], axis=1) - 0.1)
    assert observed.sum() > 300 and np.median(distance) < 0.003 and np.mean(distance < 0.008) > 0.9


def test_known_cells_do_not_bleed_into_the_upsampled_completion():
    from reconstruction.engine.backends.hybrid.completion import _upsample_generated

    volume = np.zeros((4, 4, 4), dtype=np.float32)
    generated = np.zeros((4, 4, 4), dtype=bool)
    generated[:, :, :2] = True
    volume[generated] = 0.8  # the model's cells; the others are known empty
    fine = _upsample_generated(volume, generated, (8, 8, 8))
    assert np.allclose(fine[:, :, :4], 0.8)  # plain trilinear would fade to 0.6 and 0.2 at the edge


def test_silhouette_repair_restores_a_leg_the_model_carved_away(tmp_path):
    """A slab on one thin corner leg, seen by four views with no stereo: a completion that keeps the slab and drops
    the leg leaves the leg's mask pixels uncovered; the repair gives the leg back and leaves every known voxel as it
    was."""
    from reconstruction.engine.backends.hybrid.silhouette import restore_silhouettes
    from reconstruction.engine.render import render_capture

    slab = trimesh.creation.box(bounds=[[-0.1, 0.0, -0.1], [0.1, 0.05, 0.1]])
    leg = trimesh.creation.box(bounds=[[-0.1, -0.12, -0.1], [-0.075, 0.0, -0.075]])
    trimesh.util.concatenate([slab, leg]).export(tmp_path / "table.glb")
    capture = Capture.load(render_capture(tmp_path / "table.glb", tmp_path / "capture", views=4, size=96))
    cameras = capture.cameras
    observation = Observation(
        cameras=cameras,
        images=[capture.load_image(i) for i in range(capture.num_views)],
        masks=[capture.load_mask(i) for i in range(capture.num_views)],
        stereo_cameras=[],
        depths=[],
        points=np.zeros((0, 3)),
        normals=np.zeros((0, 3)),
        colours=np.zeros((0, 3)),
        point_views=np.zeros(0, dtype=int),
        object_box=np.array([[-0.1, -0.12, -0.1], [0.1, 0.05, 0.1]]),
        stereo_pairs=0,
    )
    reference = observation.reference_view()
    frame = frame_for(
        cameras[reference], observation.masks[reference], resolution=32, depth_bins=32, centre_hint=(0, -0.035, 0)
    )
    labels = classify(frame, observation)
    labels.reshape(-1)[np.flatnonzero(labels.reshape(-1) == UNKNOWN)[::7]] = OCCUPIED  # some known voxels
    in_slab = mesh_occupancy(frame, slab) > 0
    in_leg = mesh_occupancy(frame, leg) > 0
    hull = labels != EMPTY
    volume = np.where(labels == OCCUPIED, 1.0, 0.0).astype(np.float32)
    volume[hull & in_slab & (labels == UNKNOWN)] = 0.9
    volume[hull & in_leg & (labels == UNKNOWN)] = 0.25  # the model doubted the leg and carved it

    repaired, repair = restore_silhouettes(frame, observation, labels, volume)
    assert repair.coverage_before < 0.99 and repair.coverage_after == 1.0
    assert repair.restored_voxels == int(((repaired >= 0.5) & ~(volume >= 0.5)).sum()) > 0
    known = labels != UNKNOWN
    assert np.array_equal(repaired[known], volume[known])
    restored = (repaired >= 0.5) & (volume < 0.5)
    # Where the leg stands clear of the slab in every view, all of it is given back.
    low = frame.world_points()[..., 1] < -0.05
    assert restored[in_leg & low & (labels == UNKNOWN)].mean() > 0.8
    # By default a ray gets its whole hull segment back; with a threshold tried first, the voxels the model believed
    # in (the leg at 0.25) come back rather than the hull's phantom matter at 0 on the same rays.
    preferred, _ = restore_silhouettes(frame, observation, labels, volume, levels=(0.2, 0.0))
    assert in_leg[(preferred >= 0.5) & (volume < 0.5)].mean() > max(0.5, 1.3 * in_leg[restored].mean())
    # A consistent completion is left alone.
    again, second = restore_silhouettes(frame, observation, labels, repaired)
    assert second.restored_voxels == 0 and np.array_equal(again, repaired)


def test_the_object_box_is_the_hulls_not_the_silhouettes(cup_capture):
    """With few views the silhouettes' box holds much that no other view confirms; the frame is centred on the
    object box, so it must be the common volume's box or the frame can miss most of the object."""
    from reconstruction.engine.backends.hybrid.observe import _coarse_hull
    from reconstruction.engine.carving import silhouette_box

    capture = Capture.load(cup_capture)
    masks = [capture.load_mask(i) for i in range(capture.num_views)]
    box, points = _coarse_hull(capture.cameras, masks, lambda: None)
    voxel = np.diff(np.unique(points[:, 0])).min()
    assert np.all(box[0] <= points.min(axis=0)) and np.all(box[1] >= points.max(axis=0))
    assert np.allclose(box[1] - box[0], np.ptp(points, axis=0) + 2 * voxel)
    low, high = silhouette_box(capture.cameras, masks)
    assert np.all(high - low >= box[1] - box[0] - 1e-9)


def test_stereo_depth_stands_where_it_measured_and_the_field_keeps_the_rest():
    """A field point on a pixel stereo measured is dropped when it lies on or in front of stereo's surface (the
    same surface, placed less sharply, or space stereo saw through) and kept when it lies behind it (hidden from
    that view) or on a pixel stereo did not measure; the joined depths take stereo's where it has one."""
    camera = Camera("a.png", 100, 100, np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]))
    stereo_depth = np.zeros((100, 100), dtype=np.float32)
    stereo_depth[:, :50] = 1.0  # stereo measured a wall 1 m away across the left half
    stereo = Measured(_cloud(np.array([[-0.2, 0.0, 1.0]]), [45 * 100 + 30]), [stereo_depth])
    field_points = np.array(
        [
            [-0.2, 0.0, 0.95],  # in front of the wall: stereo saw through it
            [-0.2, 0.1, 1.01],  # on the wall, 1% behind stereo's depth: the same surface
            [-0.2, 0.0, 1.5],  # well behind the wall: hidden from this view
            [0.2, 0.0, 0.95],  # where stereo measured nothing
        ]
    )
    pixels = [50 * 100 + 28, 59 * 100 + 30, 50 * 100 + 36, 50 * 100 + 71]  # where each projects
    field_depth = np.zeros((100, 100), dtype=np.float32)
    field_depth.reshape(-1)[pixels] = field_points[:, 2]
    field = Measured(_cloud(field_points, pixels), [field_depth])

    overridden = stereo.on_or_in_front([camera], field_points, 0.02)
    assert overridden.tolist() == [True, True, False, False]
    joined = stereo.joined(field.without(overridden))
    assert len(joined.cloud.points) == 3
    np.testing.assert_allclose(joined.cloud.points[1:], field_points[2:])
    depth = joined.depths[0].reshape(-1)
    assert depth[pixels[0]] == 1.0 and depth[pixels[1]] == 1.0  # stereo's depth, not the field's
    assert depth[pixels[2]] == 1.0  # stereo's too: the field point behind is kept as a point, not as this depth
    assert depth[pixels[3]] == pytest.approx(0.95)  # the field's, where stereo measured nothing
    assert field.without(overridden).depths[0].reshape(-1)[pixels[0]] == 0.0


def _cloud(points: np.ndarray, pixels: list[int]) -> PointCloud:
    count = len(points)
    return PointCloud(
        points,
        np.zeros((count, 3)),
        np.zeros((count, 3)),
        np.zeros(count, dtype=int),
        np.array(pixels),
        np.ones(count, dtype=int),
    )
