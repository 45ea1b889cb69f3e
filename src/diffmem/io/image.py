"""Still images (png, jpg, bmp, webp, tiff) as uint8 RGB arrays, via Pillow.

An image is a one-frame video everywhere else in diffmem; `diffmem.io.video.read_frames`
calls `read_image` for these extensions. EXIF orientation is applied (the counterpart of a
video's display rotation), alpha is dropped (colour values kept), and an animated
webp/png gives its first frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diffmem.errors import BadInputError
from diffmem.io.atomic import atomic_output

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

# Pillow format names for writing, by extension.
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP",
                  ".tif": "TIFF", ".tiff": "TIFF"}

# EXIF orientation -> counter-clockwise degrees of its rotation part (mirrors not counted).
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 270, 7: 90, 8: 90}


def check_file(path: str | Path) -> Path:
    """The checks every reader does first, with plain-word reasons."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(p, "file not found")
    if p.is_dir():
        raise BadInputError(p, "is a directory, not a media file")
    if not p.is_file():
        raise BadInputError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise BadInputError(p, "file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise BadInputError(p, "file is not readable (permission denied)")
    return p


def _open(path: Path):
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise BadInputError(path, "not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as e:
        raise BadInputError(path, f"image too large to decode safely ({e})") from None
    except OSError as e:
        raise BadInputError(path, f"not a readable image ({e})") from None


def image_info(path: str | Path) -> tuple[int, int, int]:
    """(width, height, rotation) as displayed, from the header only (no pixel decoding)."""
    p = check_file(path)
    with _open(p) as im:
        orientation = im.getexif().get(0x0112, 1)
        w, h = im.size
    rotation = _EXIF_ROTATION.get(orientation, 0)
    if orientation in (5, 6, 7, 8):  # these orientations swap width and height
        w, h = h, w
    return w, h, rotation


def read_image(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB, upright (EXIF orientation applied)."""
    p = check_file(path)
    with _open(p) as im:
        try:
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            # 'RGB' drops alpha but keeps the stored colour values; palette and grey are expanded.
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Image.DecompressionBombError as e:
            raise BadInputError(p, f"image too large to decode safely ({e})") from None
        except (OSError, ValueError, SyntaxError) as e:  # truncated / damaged pixel data
            raise BadInputError(p, f"image data is damaged or truncated ({e})") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BadInputError(p, "image has no pixels")
    return np.ascontiguousarray(arr)


def write_image(path: str | Path, image: np.ndarray, *, quality: int = 95) -> Path:
    """Write uint8 (H, W, 3) (or (1, H, W, 3)) by extension, atomically. jpg/webp use `quality`."""
    p = Path(path)
    fmt = _WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: cannot write images with extension {p.suffix!r}; "
                         f"use one of {sorted(_WRITE_FORMATS)}")
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{p}: expected a uint8 (H, W, 3) array, got {arr.dtype} {arr.shape}")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_output(p) as tmp:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format=fmt, **kwargs)
    return p
