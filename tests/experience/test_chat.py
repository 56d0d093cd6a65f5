"""`flick chat` driven through its standard input, from /start to a saved MP4, fully offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from flick.testing import sample_faces
from flick.testing.services import postgres_dir


def test_chat_from_start_to_saved_video(tmp_path: Path) -> None:
    # The data directory (with its embedded PostgreSQL) lives outside /tmp/pytest-of-root
    # (postgres_dir says why): any pytest starting meanwhile would lock initdb out of it.
    with postgres_dir(tmp_path) as root:
        expect_chat_to_save_a_video(tmp_path, root / "var")


def expect_chat_to_save_a_video(tmp_path: Path, data_dir: Path) -> None:
    photo_a, photo_b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    # Real faces: `flick chat` runs with the face check on, as `flick run` does.
    photo_a.write_bytes(sample_faces.astronaut())
    photo_b.write_bytes(sample_faces.portrait())
    script = (
        "\n".join(
            [
                "/start",
                "/create",
                "1",
                "2",  # consent, then the second style (hug)
                f"/photo {photo_a}",
                f"/photo {photo_b}",
                "/balance",
                "/buy",
                "1",
                "pay",
                "/balance",
                "quit",
            ]
        )
        + "\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI", "REPLICATE", "DATABASE_URL", "S3_"))
    }
    env.update(DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
    out_dir = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "flick", "chat", "--out", str(out_dir)],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    # All of it: a failed start's first error is above the errors of the cleanup that follows.
    assert done.returncode == 0, done.stderr
    videos = list(out_dir.glob("*_hug.mp4"))
    assert len(videos) == 1
    assert videos[0].read_bytes()[4:8] == b"ftyp"
    assert list(out_dir.glob("*_hug.jpg"))
    assert f"video saved: {videos[0].resolve()}" in done.stdout
    assert "[TEST PAYMENT" in done.stdout
    assert "Balance: 1." in done.stdout  # 0 after the video, +1 from the test payment
    # The embedded servers stopped with it.
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
