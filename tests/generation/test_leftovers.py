"""A process killed mid-download leaves its temporary video behind; the next start removes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flick.app import Flick
from flick.pipeline.local import LocalImageProvider, LocalVideoProvider
from flick.settings import Settings
from flick.testing.memory import RecordingOutbox


async def test_temporary_videos_of_a_killed_run_are_removed_at_start(
    database_url: str, storage: Any, tmp_path: Path
) -> None:
    tmp = tmp_path / "data" / "tmp"
    tmp.mkdir(parents=True)
    left = [tmp / "flick-video-abc.mp4", tmp / "flick-upload-def.mp4"]
    for path in left:
        path.write_bytes(b"\x00" * 1024)
    unrelated = tmp / "operator-notes.txt"
    unrelated.write_text("not ours to delete")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data", image_provider="local", video_provider="local"
    )
    async with Flick(
        settings,
        RecordingOutbox(),
        image=LocalImageProvider(),
        video=LocalVideoProvider(tmp_path / "videos"),
        database_url=database_url,
        storage=storage,
        lock=True,
        resume=False,
    ):
        assert not any(path.exists() for path in left)
        assert unrelated.read_text() == "not ours to delete"
