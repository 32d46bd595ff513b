"""Run inside Blender (`blender -b --factory-startup --python blender_fbx.py -- MODE IN [OUT]`), not in Assay.

export: import a GLB with Blender's glTF importer and write a binary FBX (textures embedded);
inspect: import an FBX; roundtrip: export, then start from an empty scene and inspect what was written (one
Blender start instead of two). Each prints `ASSAY_RESULT {json}` with the triangles and materials Blender sees.
"""
import json
import sys

import bpy  # provided by Blender's bundled Python
import numpy

if "bool" not in numpy.__dict__:
    # Blender 3.4's glTF importer still uses `numpy.bool`, which NumPy 1.24 (Debian 12's) removed.
    numpy.bool = bool  # type: ignore[misc,assignment]

arguments = sys.argv[sys.argv.index("--") + 1:]
mode, source = arguments[0], arguments[1]


def counts() -> dict:
    triangles = 0
    materials = set()
    for item in bpy.context.scene.objects:
        if item.type != "MESH":
            continue
        mesh = item.data
        mesh.calc_loop_triangles()
        triangles += len(mesh.loop_triangles)
        materials |= {material.name for material in mesh.materials if material is not None}
    return {"triangles": triangles, "materials": len(materials), "blender": bpy.app.version_string}


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.images, bpy.data.objects):
        for block in list(collection):
            collection.remove(block)


reset()
if mode in ("export", "roundtrip"):
    bpy.ops.import_scene.gltf(filepath=source)
    bpy.ops.export_scene.fbx(
        filepath=arguments[2], path_mode="COPY", embed_textures=True, axis_forward="-Z", axis_up="Y",
        apply_unit_scale=True, apply_scale_options="FBX_SCALE_UNITS", use_mesh_modifiers=False,
        mesh_smooth_type="OFF", add_leaf_bones=False, bake_anim=False,
    )
    written = counts()
    if mode == "roundtrip":
        reset()
        bpy.ops.import_scene.fbx(filepath=arguments[2])
        result = {**counts(), "exported": written}
    else:
        result = written
elif mode == "inspect":
    bpy.ops.import_scene.fbx(filepath=source)
    result = counts()
else:
    raise SystemExit(f"unknown mode {mode}")
print("ASSAY_RESULT " + json.dumps(result), flush=True)
