"""RGB copies of images TensorFlow cannot decode to the right pixels by itself.

TensorFlow's decoders read JPEG, PNG, BMP and GIF, but a PNG with an alpha channel, a
palette image, a CMYK JPEG, a 16-bit PNG, WebP or TIFF comes out wrong or not at all.
The scan (:mod:`tlhelpers.scan`) converts each such file once, with Pillow, to an RGB
PNG copy in ``~/.tlhelpers/cache/converted`` (transparent pixels on white), which the
pipelines then read instead of the original.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from . import core

#: Formats and modes TensorFlow decodes to the right RGB pixels without help.
DIRECT = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L"), ("BMP", "RGB"), ("BMP", "L")}


def converted_path(path: Path, stat: os.stat_result) -> Path:
    """Where the RGB PNG copy of ``path`` (in the state ``stat`` describes) is kept."""
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    return core.home() / "cache" / "converted" / f"{key}.png"


def rgb_image(path: Path) -> Image.Image:
    """The first frame of an image file as RGB: alpha composited on white, CMYK and grayscale converted."""
    with Image.open(path) as img:
        img.seek(0)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (255, 255, 255))
            rgb.paste(rgba, mask=rgba.getchannel("A"))
            return rgb
        return img.convert("RGB")


def convert_to_rgb(path: Path, dest: Path) -> bool:
    """Write an RGB PNG copy of ``path`` to ``dest`` (atomically); returns False when Pillow cannot decode it all.

    Raises:
        OSError: if ``dest`` cannot be written, naming the folder to fix.
    """
    try:
        rgb = rgb_image(path)
    except Exception:  # noqa: BLE001 (truncated data, broken headers: Pillow raises many types)
        return False
    try:
        with core.atomic_path(dest, suffix=".png") as tmp:
            rgb.save(tmp, format="PNG")
    except OSError as exc:
        raise OSError(
            f"Cannot write the RGB copy of {path} into {dest.parent} ({exc}): "
            "make that folder writable, or set TLHELPERS_HOME to a writable folder."
        ) from exc
    return True


__all__ = ["DIRECT", "convert_to_rgb", "converted_path", "rgb_image"]
