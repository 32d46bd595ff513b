"""Exporters: GLB, USDZ, FBX, OBJ+MTL and PLY; each returns the file and an outside validator's verdict."""
from .archive import export_obj, export_ply
from .fbx import export_fbx
from .gltf import export_glb
from .usdz import export_usdz
from .verdict import ExportResult, Verdict

__all__ = ["ExportResult", "Verdict", "export_fbx", "export_glb", "export_obj", "export_ply", "export_usdz"]
