"""meshoptimizer's simplifier, called through its C API with declared signatures.

The `meshoptimizer` wheel (0.2.30a0, C library 0.22) ships the compiled library but its Python wrapper
declares no ctypes signature for `meshopt_simplifyWithAttributes`, so every call fails converting the float
`target_error`. We load the same library and declare the three functions we use, exactly as `meshoptimizer.h`
of that release has them.
"""
from __future__ import annotations

import ctypes
import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

LOCK_BORDER = 1 << 0
PRUNE = 1 << 3

_uint_p = ctypes.POINTER(ctypes.c_uint)
_float_p = ctypes.POINTER(ctypes.c_float)
_ubyte_p = ctypes.POINTER(ctypes.c_ubyte)
_size = ctypes.c_size_t


@cache
def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("meshoptimizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the meshoptimizer package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(folder.glob("_meshoptimizer*.so")) + sorted(folder.glob("_meshoptimizer*.pyd"))
    if not candidates:
        raise ImportError(f"no compiled meshoptimizer library in {folder}")
    lib = ctypes.CDLL(str(candidates[0]))
    lib.meshopt_simplify.argtypes = [_uint_p, _uint_p, _size, _float_p, _size, _size, _size, ctypes.c_float, ctypes.c_uint, _float_p]
    lib.meshopt_simplify.restype = _size
    lib.meshopt_simplifyWithAttributes.argtypes = [
        _uint_p, _uint_p, _size, _float_p, _size, _size, _float_p, _size, _float_p, _size, _ubyte_p,
        _size, ctypes.c_float, ctypes.c_uint, _float_p,
    ]
    lib.meshopt_simplifyWithAttributes.restype = _size
    lib.meshopt_simplifyScale.argtypes = [_float_p, _size, _size]
    lib.meshopt_simplifyScale.restype = ctypes.c_float
    for name in ("meshopt_decodeVertexBuffer", "meshopt_decodeIndexBuffer", "meshopt_decodeIndexSequence"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, _size, _size, _ubyte_p, _size]
        getattr(lib, name).restype = ctypes.c_int
    return lib


_DECODERS = {"ATTRIBUTES": "meshopt_decodeVertexBuffer", "TRIANGLES": "meshopt_decodeIndexBuffer",
             "INDICES": "meshopt_decodeIndexSequence"}


def decode(mode: str, count: int, stride: int, data: bytes) -> bytes:
    """One EXT_meshopt_compression buffer view decoded (filters not applied); ValueError when it does not decode."""
    if mode not in _DECODERS:
        raise ValueError(f"unknown meshopt mode '{mode}'")
    source = np.frombuffer(data, dtype=np.uint8)
    destination = np.zeros(count * stride, dtype=np.uint8)
    result = getattr(_library(), _DECODERS[mode])(
        destination.ctypes.data, count, stride, source.ctypes.data_as(_ubyte_p), len(source))
    if result != 0:
        raise ValueError(f"meshopt decoder returned {result}")
    return destination.tobytes()


def simplify_scale(positions: np.ndarray) -> float:
    """The length meshoptimizer's relative errors are measured in (the mesh's largest extent)."""
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    return float(_library().meshopt_simplifyScale(positions.ctypes.data_as(_float_p), len(positions), 12))


def simplify(
    positions: np.ndarray,
    faces: np.ndarray,
    target_triangles: int,
    target_error: float,
    options: int = 0,
    attributes: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """(kept faces, relative error reached); attributes (per vertex, float) steer collapses when given."""
    lib = _library()
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    indices = np.ascontiguousarray(faces.reshape(-1), dtype=np.uint32)
    destination = np.zeros(len(indices), dtype=np.uint32)
    error = ctypes.c_float(0.0)
    common_head = (destination.ctypes.data_as(_uint_p), indices.ctypes.data_as(_uint_p), len(indices),
                   positions.ctypes.data_as(_float_p), len(positions), 12)
    if attributes is None:
        count = lib.meshopt_simplify(*common_head, int(target_triangles) * 3, target_error, options, ctypes.byref(error))
    else:
        attributes = np.ascontiguousarray(attributes, dtype=np.float32)
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        count = lib.meshopt_simplifyWithAttributes(
            *common_head,
            attributes.ctypes.data_as(_float_p), attributes.shape[1] * 4,
            weights.ctypes.data_as(_float_p), len(weights), None,
            int(target_triangles) * 3, target_error, options, ctypes.byref(error),
        )
    return destination[:count].reshape(-1, 3).astype(np.int64), float(error.value)
