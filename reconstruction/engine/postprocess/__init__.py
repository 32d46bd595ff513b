"""Post-processing: research-grade meshes in, validated GLB/USDZ/FBX (and OBJ/PLY) LOD chains out.

Each step is a small module, `asset in → asset out + report` (load, units, cleanup, retopology, decimate, uv,
bake, textures); `presets.py` lists the steps of each target and `pipeline.py` runs them. No Django here.
"""
