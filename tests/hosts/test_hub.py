"""The shared offline Telegram (flick.testing.telegram.hub) with `flick run` on another host: a
whole generation through it, as a user would (buttons under the bot's messages, photos the
gateway downloads, the progress message it edits, the video it sends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flick.testing.lab import Lab, ask_for_a_video
from flick.testing.netns import namespaces_unavailable
from flick.testing.waits import until

pytestmark = pytest.mark.slow


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    if reason := namespaces_unavailable():
        pytest.skip(reason)
    async with Lab(tmp_path, gateways=["gw1"]) as running:
        try:
            yield running
        finally:
            for child in running.hosts.children:
                print("\n".join(child.lines))  # shown when a test fails


async def test_a_user_of_the_hub_gets_a_video_from_a_gateway_on_another_host(lab: Lab) -> None:
    hub = lab.hub
    gateway = await lab.start_gateway("gw1")
    await gateway.said("telegram: caught up on ")
    ann = hub.user(5001, "Ann")
    await ask_for_a_video(hub, ann)
    await gateway.said(f"telegram: sent media to {ann.id};")

    def videos() -> list[object]:
        return [m for m in hub.messages_to(ann.id) if m.media is not None]

    await until(lambda: bool(videos()), "the video is with Telegram")
    assert len(videos()) == 1
    # The photos reached the gateway's Telegram: it asked for no photo it did not have.
    assert gateway.find("LOCATION_INVALID", "FILE_REFERENCE_EXPIRED") is None


async def test_a_gateway_on_another_host_generates_with_the_fake_providers_of_the_test(
    lab: Lab,
) -> None:
    async with lab.providers() as (openai, replicate):
        gateway = await lab.start_gateway("gw1")
        await gateway.said("telegram: caught up on ")
        bob = lab.hub.user(5002, "Bob")
        await ask_for_a_video(lab.hub, bob)
        await gateway.said(f"telegram: sent media to {bob.id};")
        # The providers were the fakes in the test's process, reached across the test network.
        assert len(openai.calls("images.edit")) == 1
        assert len(replicate.calls("predictions.create")) == 1
