"""The face detector against another version of itself: the same verdicts, and its CPU per photo.

    .venv/bin/python -m bench.face_verdicts                    # against main's detector (~1 min)
    .venv/bin/python -m bench.face_verdicts --against HEAD~1 --rounds 30 --extended

Verdicts: the 48 sample photos of BENCHMARKS.md's detector comparison (scikit-image's
`astronaut`, `camera`, the astronaut twice, `coffee`, `chelsea`, `rocket`, the small-face photo,
a `lfw_subset` portrait, 20 faces and 20 non-faces of `lfw_subset` enlarged), each with the
verdict a person gives it; every photo whose verdict differs between the two detectors is
printed; then the same 48 as the engine hands them to the detector, after `imaging.normalize`
(decoded and saved again as JPEG: a borderline face can go either way). `--extended` adds the 48
enlarged to 12 megapixels and the astronaut's face at 5-14 % of a 12-megapixel photo's shorter
side, on grey and on the coffee photo (below a tenth: "too small").

Time: the other version's module (`git show REF:flick/pipeline/faces.py`) and this one,
interleaved photo by photo in this one process, so that the shared machine's load falls on both
alike; CPU of the calling thread (OpenCV is held to one thread, so it is all of it) and wall.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from flick.pipeline import faces, imaging
from flick.testing import sample_faces

MODULE = "flick/pipeline/faces.py"
Samples = dict[str, tuple[bytes, str | None]]


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


def _lfw(index: int) -> bytes:
    from skimage import data

    face = (np.asarray(data.lfw_subset()[index]) * 255).astype(np.uint8)  # type: ignore[no-untyped-call]
    return _jpeg(np.kron(face, np.ones((12, 12), np.uint8)))


def comparison() -> Samples:
    """The 48 photos and their true verdicts (None: one usable face)."""
    from skimage import data

    photos: Samples = {
        "astronaut": (sample_faces.astronaut(), None),
        "camera": (_jpeg(data.camera()), None),  # type: ignore[no-untyped-call]
        "two": (sample_faces.two_faces(), "face_several"),
        "coffee": (sample_faces.no_face(), "face_none"),
        "chelsea": (_jpeg(data.chelsea()), "face_none"),  # type: ignore[no-untyped-call]
        "rocket": (_jpeg(data.rocket()), "face_none"),  # type: ignore[no-untyped-call]
        "small": (sample_faces.small_face(), "face_too_small"),
        "portrait": (sample_faces.portrait(), None),
    }
    photos |= {f"lfw{i}": (_lfw(i), None) for i in range(20)}
    photos |= {f"lfw{i}": (_lfw(i), "face_none") for i in range(100, 120)}  # not faces
    return photos


def _framed(share: float, background: bytes | None) -> bytes:
    """The astronaut with her face at `share` of a 4000×3000 photo's shorter side."""
    if background is None:
        frame = Image.new("RGB", (4000, 3000), (190, 190, 190))
    else:
        frame = Image.open(io.BytesIO(background)).convert("RGB").resize((4000, 3000))
    side = round(3000 * share / 0.192)  # her face is 19.2 % of the portrait's side
    frame.paste(Image.open(io.BytesIO(sample_faces.astronaut())).resize((side, side)), (300, 200))
    out = io.BytesIO()
    frame.save(out, "JPEG", quality=90)
    return out.getvalue()


def extended(base: Samples) -> Samples:
    photos = {f"{k}@12MP": (sample_faces.large(p), want) for k, (p, want) in base.items()}
    for name, background in (("grey", None), ("coffee", sample_faces.no_face())):
        for share in (0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.11, 0.12, 0.14):
            want = None if share >= faces.MIN_FACE_SHARE else "face_too_small"
            photos[f"face {share:.0%} on {name}"] = (_framed(share, background), want)
    return photos


def normalised(base: Samples) -> Samples:
    """The photos as the engine checks them: after `imaging.normalize` (with the default limits)."""
    limits = imaging.PhotoLimits(max_bytes=10 * 1024 * 1024, max_side=6000, min_side=64)

    async def each() -> Samples:
        return {k: (await imaging.normalize(p, limits), want) for k, (p, want) in base.items()}

    return asyncio.run(each())


def load(ref: str, into: Path) -> ModuleType:
    """The detector's module as it is at git revision `ref`."""
    source = subprocess.run(["git", "show", f"{ref}:{MODULE}"], capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    path = into / "faces_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("faces_at_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def verdicts(label: str, photos: Samples, old: Callable[[bytes], list[float]],
             new: Callable[[bytes], list[float]]) -> None:  # fmt: skip
    right = {"old": 0, "new": 0}
    for name, (photo, want) in photos.items():
        before, after = faces.judge(old(photo)), faces.judge(new(photo))
        right["old"] += before.reason == want
        right["new"] += after.reason == want
        if before.reason != after.reason:
            print(f"  {name}: {before.reason or 'usable'} -> {after.reason or 'usable'} "
                  f"(truth: {want or 'usable'})")  # fmt: skip
    print(f"{label}: {len(photos)} photos, right: before {right['old']}, after {right['new']}")


def timing(rounds: int, old: Callable[[bytes], list[float]],
           new: Callable[[bytes], list[float]]) -> None:  # fmt: skip
    photos = {
        "one face": sample_faces.large(sample_faces.astronaut()),
        "no face": sample_faces.large(sample_faces.no_face()),
    }
    runs = {"before": old, "after": new}
    cpu: dict[tuple[str, str], list[float]] = {(w, p): [] for w in runs for p in photos}
    wall: dict[tuple[str, str], list[float]] = {(w, p): [] for w in runs for p in photos}
    for detect in runs.values():  # warm: each classifier is loaded once per thread
        for photo in photos.values():
            detect(photo)
    for _ in range(rounds):
        for which, detect in runs.items():
            for what, photo in photos.items():
                started, clock = time.process_time(), time.perf_counter()
                detect(photo)
                cpu[which, what].append((time.process_time() - started) * 1000)
                wall[which, what].append((time.perf_counter() - clock) * 1000)
    print(f"CPU per 12-megapixel photo, ms, median of {rounds} interleaved rounds (wall):")
    for what in photos:
        print(f"  {what}: " + ", ".join(
            f"{which} {statistics.median(cpu[which, what]):.1f} "
            f"({statistics.median(wall[which, what]):.1f})" for which in runs))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.face_verdicts", description=__doc__.split("\n")[0])
    p.add_argument("--against", default="main", help="git revision of the other detector (main)")
    p.add_argument("--rounds", type=int, default=20, help="timing rounds (20)")
    p.add_argument("--extended", action="store_true", help="also the 12 MP and small-face set")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        other = load(args.against, Path(tmp))
        old, new = other.HaarFaceDetector().faces, faces.HaarFaceDetector().faces
        print(f"before: {args.against}; after: this work tree's {MODULE}")
        base = comparison()
        verdicts("the 48-photo comparison", base, old, new)
        verdicts("the same, after imaging.normalize", normalised(base), old, new)
        if args.extended:
            verdicts("extended (12 MP, small faces)", extended(base), old, new)
        timing(args.rounds, old, new)


if __name__ == "__main__":
    main()
