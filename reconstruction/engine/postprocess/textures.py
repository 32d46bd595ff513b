"""Texture budgets: every texture resized to a power of two no larger than the budget (mip-friendly)."""
from __future__ import annotations

from PIL import Image

from .asset import Asset, Texture


def power_of_two_at_most(value: int, budget: int) -> int:
    size = 1
    while size * 2 <= min(value, budget):
        size *= 2
    return max(size, 1)


def fit_textures(asset: Asset, max_size: int) -> tuple[Asset, dict[str, object]]:
    """Resize (Lanczos) each texture to power-of-two sides ≤ `max_size`; shared images stay shared."""
    resized: dict[int, Texture] = {}
    changes = []
    materials = []
    for material in asset.materials:
        textures = {}
        for role, texture in material.textures.items():
            key = id(texture.image)
            if key not in resized:
                width, height = texture.size
                size = (power_of_two_at_most(width, max_size), power_of_two_at_most(height, max_size))
                if size != (width, height):
                    image = texture.image.resize(size, Image.Resampling.LANCZOS)
                    resized[key] = Texture(image=image, uv_transform=texture.uv_transform, repeat=texture.repeat)
                    changes.append({"material": material.name, "role": role, "from": [width, height], "to": list(size)})
                else:
                    resized[key] = texture
            textures[role] = resized[key]
        materials.append(material.replace(textures=textures))
    sizes = sorted({tuple(t.size) for t in resized.values()})
    return asset.replace(materials=tuple(materials)), {"max_size": max_size, "resized": changes, "sizes": [list(s) for s in sizes]}
