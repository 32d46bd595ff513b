"""USDZ writer (UsdPreviewSurface, metres, +Y up) packaged for ARKit, checked by pxr's ComplianceChecker
(ARKit rules; usd-core 26.5, the last release that ships it) and the UsdValidation validators."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

from ..asset import Asset, Material
from .gltf import encode_image, with_shading_frames
from .verdict import ExportResult, Verdict

_ROLE_INPUTS = {
    "base_color": ("diffuseColor", "rgb", Sdf.ValueTypeNames.Color3f),
    "normal": ("normal", "rgb", Sdf.ValueTypeNames.Normal3f),
    "emissive": ("emissiveColor", "rgb", Sdf.ValueTypeNames.Color3f),
}


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "item"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


def _material(stage: Usd.Stage, root: str, index: int, material: Material, folder: Path, image_format: str) -> UsdShade.Material:
    path = f"{root}/Materials/{_safe(material.name)}_{index}"
    usd_material = UsdShade.Material.Define(stage, path)
    shader = UsdShade.Shader.Define(stage, f"{path}/PreviewSurface")
    shader.CreateIdAttr("UsdPreviewSurface")
    surface_output = shader.CreateOutput("surface", Sdf.ValueTypeNames.Token)
    usd_material.CreateSurfaceOutput().ConnectToSource(surface_output)
    r, g, b, alpha = material.base_color_factor
    shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(r, g, b))
    shader.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(material.metallic_factor))
    shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(material.roughness_factor))
    if alpha < 1.0:
        shader.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(float(alpha))
    if max(material.emissive_factor) > 0:
        shader.CreateInput("emissiveColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*material.emissive_factor))
    if not material.textures:
        return usd_material
    reader = UsdShade.Shader.Define(stage, f"{path}/PrimvarReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    st_output = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    written: dict[int, str] = {}

    def texture_shader(role: str, colour_space: str) -> UsdShade.Shader | None:
        texture = material.texture(role)
        if texture is None:
            return None
        key = id(texture.image)
        if key not in written:
            data, mime = encode_image(texture, "png" if role == "normal" else image_format)
            name = f"{_safe(material.name)}_{index}_{role}.{'jpg' if mime == 'image/jpeg' else 'png'}"
            (folder / name).write_bytes(data)
            written[key] = name
        node = UsdShade.Shader.Define(stage, f"{path}/{role}_texture")
        node.CreateIdAttr("UsdUVTexture")
        node.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{written[key]}")
        node.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(colour_space)
        wrap = "repeat" if texture.repeat else "clamp"
        node.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set(wrap)
        node.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set(wrap)
        matrix = np.asarray(texture.uv_transform, dtype=np.float64)
        if np.allclose(matrix, np.eye(3)):
            node.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_output)
        else:
            transform = UsdShade.Shader.Define(stage, f"{path}/{role}_transform")
            transform.CreateIdAttr("UsdTransform2d")
            transform.CreateInput("in", Sdf.ValueTypeNames.Float2).ConnectToSource(st_output)
            # glTF's transform acts on V-down coordinates; USD's st has V up (st_v = 1 - v).
            flip = np.array([[1, 0, 0], [0, -1, 1], [0, 0, 1]], dtype=np.float64)
            usd_matrix = flip @ matrix @ flip
            column0, column1 = usd_matrix[:2, 0], usd_matrix[:2, 1]
            transform.CreateInput("translation", Sdf.ValueTypeNames.Float2).Set(Gf.Vec2f(*usd_matrix[:2, 2]))
            transform.CreateInput("rotation", Sdf.ValueTypeNames.Float).Set(float(np.degrees(np.arctan2(column0[1], column0[0]))))
            transform.CreateInput("scale", Sdf.ValueTypeNames.Float2).Set(
                Gf.Vec2f(float(np.linalg.norm(column0)), float(np.linalg.norm(column1)))
            )
            node.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(transform.CreateOutput("result", Sdf.ValueTypeNames.Float2))
        return node

    base = texture_shader("base_color", "sRGB")
    base_texture = material.texture("base_color")
    if base is not None:
        shader.GetInput("diffuseColor").ConnectToSource(base.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
        if material.base_color_factor[:3] != (1.0, 1.0, 1.0):
            base.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(r, g, b, 1.0))
        if base_texture is not None and base_texture.image.mode in ("RGBA", "LA"):
            shader.CreateInput("opacity", Sdf.ValueTypeNames.Float).ConnectToSource(base.CreateOutput("a", Sdf.ValueTypeNames.Float))
    normal = texture_shader("normal", "raw")
    if normal is not None:
        normal.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2.0, 2.0, 2.0, 1.0))
        normal.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1.0, -1.0, -1.0, 0.0))
        shader.CreateInput("normal", Sdf.ValueTypeNames.Normal3f).ConnectToSource(normal.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
    orm = texture_shader("metallic_roughness", "raw")
    if orm is not None:
        shader.GetInput("roughness").ConnectToSource(orm.CreateOutput("g", Sdf.ValueTypeNames.Float))
        shader.GetInput("metallic").ConnectToSource(orm.CreateOutput("b", Sdf.ValueTypeNames.Float))
        orm.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(
            Gf.Vec4f(1.0, float(material.roughness_factor), float(material.metallic_factor), 1.0)
        )
    occlusion = texture_shader("occlusion", "raw")
    if occlusion is not None:
        shader.CreateInput("occlusion", Sdf.ValueTypeNames.Float).ConnectToSource(occlusion.CreateOutput("r", Sdf.ValueTypeNames.Float))
    emissive = texture_shader("emissive", "sRGB")
    if emissive is not None:
        shader.CreateInput("emissiveColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
            emissive.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        )
    return usd_material


def write_usdz(asset: Asset, path: Path | str, image_format: str = "png") -> Path:
    """One Mesh prim under a default prim, a GeomSubset and material per glTF material, ARKit-packaged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    asset = with_shading_frames(asset)
    root = "/" + _safe(asset.name)
    with tempfile.TemporaryDirectory(prefix="usdz-") as scratch:
        folder = Path(scratch)
        layer = folder / f"{_safe(asset.name)}.usdc"
        stage = Usd.Stage.CreateNew(str(layer))
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        model = UsdGeom.Xform.Define(stage, root)
        stage.SetDefaultPrim(model.GetPrim())
        Usd.ModelAPI(model.GetPrim()).SetKind("component")
        mesh = UsdGeom.Mesh.Define(stage, f"{root}/Geometry")
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(asset.positions.astype(np.float32)))
        mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(asset.triangle_count, 3, dtype=np.int32)))
        mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(asset.faces.reshape(-1).astype(np.int32)))
        mesh.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(asset.bounds.astype(np.float32)))
        assert asset.normals is not None  # with_shading_frames() computed them
        mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(asset.normals.astype(np.float32)))
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        mesh.CreateDoubleSidedAttr(any(m.double_sided for m in asset.materials))
        primvars = UsdGeom.PrimvarsAPI(mesh)
        if asset.uvs is not None:
            st = np.column_stack([asset.uvs[:, 0], 1.0 - asset.uvs[:, 1]]).astype(np.float32)
            primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex).Set(
                Vt.Vec2fArray.FromNumpy(st)
            )
        if asset.colors is not None:
            colours = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex)
            colours.Set(Vt.Vec3fArray.FromNumpy(np.clip(asset.colors[:, :3], 0, 1).astype(np.float32)))
        used = [i for i in range(len(asset.materials)) if (asset.face_materials == i).any()]
        materials = {i: _material(stage, root, i, asset.materials[i], folder, image_format) for i in used}
        binding = UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim())
        if len(used) == 1:
            binding.Bind(materials[used[0]])
        else:
            for i in used:
                subset = UsdGeom.Subset.CreateGeomSubset(
                    mesh, f"material_{i}", UsdGeom.Tokens.face,
                    Vt.IntArray.FromNumpy(np.flatnonzero(asset.face_materials == i).astype(np.int32)),
                    familyName=UsdShade.Tokens.materialBind, familyType=UsdGeom.Tokens.partition,
                )
                UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(materials[i])
        stage.GetRootLayer().Save()
        del stage
        if path.exists():
            path.unlink()
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(path)):
            raise RuntimeError(f"usd-core could not package {path.name}")
    return path


def validate_usdz(path: Path | str) -> Verdict:
    """ComplianceChecker with the ARKit rules, then every registered UsdValidation validator."""
    path = Path(path)
    checker = UsdUtils.ComplianceChecker(arkit=True, skipARKitRootLayerCheck=False, rootPackageOnly=False)
    checker.CheckCompliance(str(path))
    errors = [f"ComplianceChecker: {e}" for e in checker.GetErrors()]
    errors += [f"ComplianceChecker rule failed: {f}" for f in checker.GetFailedChecks()]
    warnings = [f"ComplianceChecker: {w}" for w in checker.GetWarnings()]
    validator_names: list[str] = []
    try:
        from pxr import UsdValidation

        validators = UsdValidation.ValidationRegistry().GetOrLoadAllValidators()
        validator_names = sorted(v.GetMetadata().name for v in validators)
        stage = Usd.Stage.Open(str(path))
        context = UsdValidation.ValidationContext(validators)
        for issue in context.Validate(stage):
            text = f"{issue.GetName()}: {issue.GetMessage()}"
            if issue.GetType() == UsdValidation.ValidationErrorType.Error:
                errors.append(text)
            else:
                warnings.append(text)
    except ImportError:  # usd-core builds without the UsdValidation module
        pass
    version = ".".join(str(part) for part in Usd.GetVersion())
    return Verdict(
        tool="usd-core UsdUtils.ComplianceChecker(arkit=True) + UsdValidation",
        version=version,
        errors=errors,
        warnings=warnings,
        details={"validators": len(validator_names), "arkit": True},
    )


def export_usdz(asset: Asset, path: Path | str, image_format: str = "png") -> ExportResult:
    written = write_usdz(asset, path, image_format)
    return ExportResult(str(written), "usdz", written.stat().st_size, validate_usdz(written))
