"""Real faces for tests, from the sample photos that ship inside scikit-image's wheel (nothing is
downloaded: only `astronaut`, `coffee` and `lfw_subset`, which are files in the package)."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


@cache
def _astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())  # type: ignore[no-untyped-call]


def astronaut() -> bytes:
    """Eileen Collins' NASA portrait: one face, a fifth of the shorter side."""
    return _jpeg(_astronaut())


def portrait(index: int = 0) -> bytes:
    """Another person: a face of Labeled Faces in the Wild (scikit-image's `lfw_subset`, its first
    100 images are faces), enlarged from 25 px to a usable photo."""
    from skimage import data

    faces = data.lfw_subset()  # type: ignore[no-untyped-call]
    face = (np.asarray(faces[index]) * 255).astype(np.uint8)
    return _jpeg(np.kron(face, np.ones((12, 12), np.uint8)))


def no_face() -> bytes:
    """A cup of coffee."""
    from skimage import data

    return _jpeg(np.asarray(data.coffee()))  # type: ignore[no-untyped-call]


def two_faces() -> bytes:
    """The astronaut twice, side by side: two faces of the same size."""
    a = _astronaut()
    return _jpeg(np.concatenate([a, a], axis=1))


def small_face() -> bytes:
    """The astronaut small in a large grey frame: a face, but too small a share of the photo."""
    frame = np.full((2400, 3200, 3), 190, np.uint8)
    a = np.asarray(Image.fromarray(_astronaut()).resize((1000, 1000)))
    frame[100:1100, 100:1100] = a
    return _jpeg(frame)


def large(photo: bytes, megapixels: float = 12.0) -> bytes:
    """`photo` enlarged to about `megapixels` (what a phone camera sends)."""
    with Image.open(io.BytesIO(photo)) as img:
        scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
        big = img.convert("RGB").resize((round(img.width * scale), round(img.height * scale)))
    out = io.BytesIO()
    big.save(out, "JPEG", quality=90)
    return out.getvalue()
