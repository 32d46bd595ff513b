"""Exporters: GLB, USDZ, FBX, OBJ+MTL and PLY; each returns the file and an outside validator's verdict."""
from .archive import export_obj, export_ply
from .compress import compress_glb
from .fbx import export_fbx
from .gltf import export_glb, export_glb_lods
from .usdz import export_usdz
from .verdict import ExportResult, Verdict

__all__ = ["ExportResult", "Verdict", "compress_glb", "export_fbx", "export_glb", "export_glb_lods", "export_obj", "export_ply", "export_usdz"]
