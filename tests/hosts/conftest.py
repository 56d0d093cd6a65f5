"""`lab`: two gateway hosts and a data host (flick.testing.lab), for the takeover tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.testing.lab import Lab
from flick.testing.netns import namespaces_unavailable


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    async with Lab(tmp_path, gateways=["gw1", "gw2"]) as running:
        try:
            yield running
        finally:
            for child in running.hosts.children:
                print("\n".join(child.lines))  # shown when a test fails
