"""The face check at photo intake: is there one usable face in this photo, before money is spent?

The detector is OpenCV's Haar frontal-face cascade, whose model file ships inside the
`opencv-python-headless` wheel (`cv2.data.haarcascades`): nothing is downloaded at run time.
Chosen over scikit-image's LBP cascade after measuring both on this project's sample faces
(scikit-image's `astronaut`, `camera`, `lfw_subset`, and photos without faces): OpenCV had fewer
misses, no false face on the cat photo and one box per face where scikit-image gave duplicates,
and took a third of the CPU time (figures in BENCHMARKS.md).

Speed: the photo is decoded once, already small (JPEG draft mode: libjpeg scales by 1/2..1/8
while decoding; a 12-megapixel photo comes out at a shorter side of 350-430 px), then shrunk to
240 px, where the cascade's 24 px window finds every face of at least a tenth of that side.

That first pass is split in two octaves. OpenCV's `detectMultiScale` slides its window in steps
of 2 px while the scale factor is under 2, but of 1 px from 2 on: the faces over twice the window
(a fifth of the side and more, i.e. most selfies) cost as much as all the smaller ones, at a
twice finer step than they need. So the 240 px picture is scanned for faces up to twice the
window only, and the same picture halved (120 px) for all the larger ones, which are then
scanned at the step the smaller ones get: a third less CPU. (Halving again for faces of 40 %
and more lost large faces: a face filling a 60 px picture leaves too few window positions for
the 6 hits a face needs.) The windows that match (OpenCV's "hits", before grouping) of both
octaves are grouped together with OpenCV's own rule (`groupRectangles`, eps 0.2, more than 5
neighbours, as `detectMultiScale` does), so a face at the octaves' border is one face, not two.

Only when no face is found does a second, finer pass look for smaller faces, so that "too small"
can be told apart from "no face": on the same decoded picture (at most 400 px; decoded again only
when the draft came out below 320 px, i.e. for photos under ~2600 px), for faces from 28 px (the
window ×1.15: 7-8 % of the side) to under a tenth, in the first pass's ×1.15 steps: two or
three sizes. Its hits are grouped with the first pass's, whose smallest sizes (10 %, 11.5 %) are
neighbours a face near a tenth also matches at; so it needs no sizes of its own above a tenth,
where the finer pass used to scan 24, 31 and 40 px. Faces under ~7 % are not looked for: they
read as no face (a refusal either way), as they mostly did before at 12 megapixels
(BENCHMARKS.md, `bench.face_verdicts --extended`).
"""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import cv2
import numpy as np
from PIL import Image

from flick.pipeline.imaging import PhotoRejected
from flick.ports import FaceDetector

#: Shorter side of the fast pass; the cascade's window (24 px) is a tenth of it.
FAST_SIDE = 240
#: Shorter side of the second pass, only for photos where the fast pass found nothing: at most
#: this, and at least FINE_MIN_SIDE (below it, the photo is decoded again, larger).
FINE_SIDE = 400
FINE_MIN_SIDE = 320
#: The fast pass's pyramid step.
FAST_SCALE = 1.15
WINDOW = 24
#: The finer pass's smallest window: one step up (24 × 1.15). Measured against 24 and 31 px
#: (3 ms more for a photo without a face, and the 8 % and 10 % faces of `bench.face_verdicts
#: --extended` missed) and against 31 px alone (the small-face photo read as no face once it had
#: gone through imaging.normalize).
FINE_WINDOW = round(WINDOW * FAST_SCALE)
#: How `detectMultiScale` groups the windows that match into faces (its own GROUP_EPS, and our
#: minNeighbors): done here, over the hits of all the scans of one photo.
GROUP_EPS = 0.2
MIN_NEIGHBOURS = 5
#: A face smaller than this share of the photo's shorter side is too small to use: the image
#: model would have too few pixels of it to keep the person recognisable.
MIN_FACE_SHARE = 0.1
#: Faces smaller than this share of the largest one are background (passers-by), not people
#: the user meant: they do not make a photo "several faces".
BACKGROUND_SHARE = 0.5
CASCADE = "haarcascade_frontalface_default.xml"

# One thread per scan: a check runs in a worker thread beside the event loop, and OpenCV's own
# thread pool (one thread per core, for every scan) would compete with that loop for the cores.
# The check's own two octaves run side by side instead (HaarFaceDetector), which is the most
# the user waiting for their photo's answer gains from a second core.
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
    thread gets its own classifier (OpenCV does not promise one is safe to share).

    The fast pass's two octaves are independent scans: the larger one runs in the calling thread
    while the smaller (halved) one runs in a thread of the detector's own, so a check waits
    for the longer scan only (the CPU spent is the same). Use it `with` (or `close()` it): the
    thread is stopped at the end."""

    name = "opencv-haar"

    def __init__(self) -> None:
        self._local = threading.local()
        self._path = str(cv2.data.haarcascades) + CASCADE  # type: ignore[attr-defined]
        self._classifier()  # fail at start, not on the first photo, if the file is missing
        self._octaves = ThreadPoolExecutor(max_workers=2, thread_name_prefix="face-octave")

    def close(self) -> None:
        self._octaves.shutdown(wait=True)

    def __enter__(self) -> HaarFaceDetector:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _classifier(self) -> cv2.CascadeClassifier:
        classifier: cv2.CascadeClassifier | None = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = cv2.CascadeClassifier(self._path)
            if classifier.empty():
                raise RuntimeError(f"the face model could not be loaded from {self._path}")
            self._local.classifier = classifier
        return classifier

    def faces(self, jpeg: bytes) -> list[float]:
        decoded = _decode(jpeg, FAST_SIDE)
        fast = _shrunk(decoded, FAST_SIDE)
        # Faces of 1 to 2 windows on the picture, then every larger one on the picture halved:
        # see the module's docstring for why two octaves cost a third less than one scan.
        half = cv2.resize(fast, (fast.shape[1] // 2, fast.shape[0] // 2),
                          interpolation=cv2.INTER_AREA)  # fmt: skip
        larger = self._octaves.submit(self._hits, half, FAST_SCALE, smallest=WINDOW, largest=None)
        smaller = self._hits(fast, FAST_SCALE, smallest=WINDOW, largest=2 * WINDOW - 1)
        hits = np.vstack([smaller, larger.result() * 2])
        found = _grouped(hits, min(fast.shape))
        if not found:  # only faces the fast pass cannot see: below a tenth of the side
            if min(decoded.shape) < FINE_MIN_SIDE:
                decoded = _decode(jpeg, FINE_SIDE)
            fine = _shrunk(decoded, FINE_SIDE)
            short = min(fine.shape)
            # Under a tenth only: the first pass's hits, scaled to this picture, stand for the
            # larger sizes and count as a small face's neighbours.
            largest = int(short * MIN_FACE_SHARE)
            # Its smallest size (the most window positions) beside the larger ones: the same
            # scales as one scan, so the same hits, in the time of the longer half.
            least = self._octaves.submit(
                self._hits, fine, FAST_SCALE, smallest=FINE_WINDOW, largest=FINE_WINDOW
            )
            rest = self._hits(fine, FAST_SCALE, smallest=FINE_WINDOW + 1, largest=largest)
            small = np.vstack([least.result(), rest])
            found = _grouped(np.vstack([small, hits * (short / min(fast.shape))]), short)
        return sorted(found, reverse=True)

    def _hits(
        self, gray: np.ndarray, scale: float, smallest: int, largest: int | None
    ) -> np.ndarray:
        """Every window that matches (x, y, w, h), ungrouped (minNeighbors=0): the caller
        groups the hits of several scans together."""
        boxes = self._classifier().detectMultiScale(
            gray,
            scaleFactor=scale,
            minNeighbors=0,
            minSize=(smallest, smallest),
            maxSize=(largest, largest) if largest else (0, 0),
        )
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _grouped(hits: np.ndarray, short: int) -> list[float]:
    """The faces among `hits` (windows on a picture whose shorter side is `short`), grouped as
    `detectMultiScale` groups its own, as shares of that side."""
    if not len(hits):
        return []
    boxes, _weights = cv2.groupRectangles(np.rint(hits).astype(int).tolist(), MIN_NEIGHBOURS,
                                          GROUP_EPS)  # fmt: skip
    return [float(max(w, h)) / short for (_x, _y, w, h) in boxes]


def _decode(jpeg: bytes, short_side: int) -> np.ndarray:
    """The photo in grey, decoded as small as JPEG draft mode allows while keeping its shorter
    side at least `short_side` (draft picks the largest of 1/2, 1/4, 1/8 that does)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        scale = short_side / min(img.size)
        if scale < 1:
            img.draft("L", (round(img.width * scale), round(img.height * scale)))
        return np.asarray(img.convert("L"))


def _shrunk(gray: np.ndarray, short_side: int) -> np.ndarray:
    """`gray` with its shorter side at most `short_side`."""
    scale = short_side / min(gray.shape)
    if scale >= 1:
        return gray
    height, width = gray.shape
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(gray).resize(size))
