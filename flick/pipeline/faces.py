"""The face check at photo intake: is there one usable face in this photo, before money is spent?

The detector is OpenCV's Haar frontal-face cascade, whose model file ships inside the
`opencv-python-headless` wheel (`cv2.data.haarcascades`): nothing is downloaded at run time.
Chosen over scikit-image's LBP cascade after measuring both on this project's sample faces
(scikit-image's `astronaut`, `camera`, `lfw_subset`, and photos without faces): OpenCV had fewer
misses, no false face on the cat photo and one box per face where scikit-image gave duplicates,
and took a third of the CPU time (figures in BENCHMARKS.md).

Speed: the photo is decoded already small (JPEG draft mode: libjpeg scales by 1/2..1/8 while
decoding) to a shorter side of 240 px, where the cascade's 24 px window finds every face of at
least a tenth of that side; only when none is found does a second, finer pass at 400 px look
for smaller faces (only those: its largest size is bounded), so that
"too small" can be told apart from "no face".
"""

from __future__ import annotations

import asyncio
import io
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from flick.pipeline.imaging import PhotoRejected
from flick.ports import FaceDetector

#: Shorter side of the fast pass; the cascade's window (24 px) is a tenth of it.
FAST_SIDE = 240
#: Shorter side of the second pass, only for photos where the fast pass found nothing.
FINE_SIDE = 400
WINDOW = 24
#: A face smaller than this share of the photo's shorter side is too small to use: the image
#: model would have too few pixels of it to keep the person recognisable.
MIN_FACE_SHARE = 0.1
#: Faces smaller than this share of the largest one are background (passers-by), not people
#: the user meant: they do not make a photo "several faces".
BACKGROUND_SHARE = 0.5
CASCADE = "haarcascade_frontalface_default.xml"

# One thread per detection: a check runs in a worker thread beside the event loop, and OpenCV's
# own thread pool would compete with that loop for the machine's cores.
cv2.setNumThreads(1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The check's answer: None for a usable photo, else the catalog key to answer with."""

    reason: str | None
    faces: int


def judge(sizes: list[float]) -> Verdict:
    """What the face sizes (shares of the shorter side, any order) mean for this photo.

    Several faces are refused: each photo stands for one of the two people in the video, and
    with two people in one photo the image model has to guess whom to use (or puts everyone in),
    which the user would pay for. A couple photo is still fine as long as one face clearly
    dominates; smaller faces in the background are ignored.
    """
    if not sizes:
        return Verdict("face_none", 0)
    largest = max(sizes)
    if largest < MIN_FACE_SHARE:
        return Verdict("face_too_small", len(sizes))
    main = [s for s in sizes if s >= largest * BACKGROUND_SHARE]
    if len(main) > 1:
        return Verdict("face_several", len(main))
    return Verdict(None, 1)


async def check(detector: FaceDetector, jpeg: bytes) -> None:
    """Raise PhotoRejected with the answer for a photo without one usable face. The detector
    runs in a thread: tens of milliseconds of CPU must not hold up every other user's loop."""
    verdict = judge(await asyncio.to_thread(detector.faces, jpeg))
    if verdict.reason is not None:
        raise PhotoRejected(verdict.reason)


class HaarFaceDetector:
    """OpenCV's bundled frontal-face cascade. Safe to call from several threads at once: each
    thread gets its own classifier (OpenCV does not promise one is safe to share)."""

    name = "opencv-haar"

    def __init__(self) -> None:
        self._local = threading.local()
        self._path = str(cv2.data.haarcascades) + CASCADE  # type: ignore[attr-defined]
        self._classifier()  # fail at start, not on the first photo, if the file is missing

    def _classifier(self) -> cv2.CascadeClassifier:
        classifier: cv2.CascadeClassifier | None = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = cv2.CascadeClassifier(self._path)
            if classifier.empty():
                raise RuntimeError(f"the face model could not be loaded from {self._path}")
            self._local.classifier = classifier
        return classifier

    def faces(self, jpeg: bytes) -> list[float]:
        found = self._detect(jpeg, FAST_SIDE, largest=None)
        if not found:  # only faces the fast pass cannot see: below a tenth of the side
            found = self._detect(jpeg, FINE_SIDE, largest=round(FINE_SIDE * MIN_FACE_SHARE * 1.2))
        return sorted(found, reverse=True)

    def _detect(self, jpeg: bytes, side: int, largest: int | None) -> list[float]:
        gray = _gray(jpeg, side)
        short = min(gray.shape)
        boxes = self._classifier().detectMultiScale(
            gray,
            scaleFactor=1.15,
            minNeighbors=5,
            minSize=(WINDOW, WINDOW),
            maxSize=(largest, largest) if largest else (0, 0),
        )
        return [float(max(w, h)) / short for (_x, _y, w, h) in boxes]


def _gray(jpeg: bytes, short_side: int) -> np.ndarray:
    """The photo in grey with its shorter side at most `short_side`, decoded small."""
    with Image.open(io.BytesIO(jpeg)) as img:
        scale = short_side / min(img.size)
        if scale < 1:
            target = (round(img.width * scale), round(img.height * scale))
            img.draft("L", target)  # JPEG: decode at 1/2, 1/4 or 1/8 of the size directly
        gray = img.convert("L")
    scale = short_side / min(gray.size)
    if scale < 1:
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)))
    return np.asarray(gray)
