"""A face detector for tests that are not about faces: every photo has one usable face.

The tests of the face check itself use the real detector (`flick.pipeline.faces`) on sample
photos that ship inside scikit-image.
"""

from __future__ import annotations


class OneFace:
    """Says every photo holds one face, a third of its shorter side: the check lets it through."""

    name = "one-face"

    def __init__(self) -> None:
        self.calls = 0

    def faces(self, jpeg: bytes) -> list[float]:
        self.calls += 1
        return [0.33]
