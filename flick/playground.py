"""`flick chat`: the same engine as Telegram, driven from a terminal.

Type what a user would type; `/photo PATH` sends a photo; buttons are shown as numbered choices
(type the number); `pay` completes the last invoice through a clearly labelled TEST payment path.
Videos and combined images are saved to the output folder and their paths printed.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from flick import events as ev
from flick.app import Flick
from flick.media import VideoMeta
from flick.ports import AlbumItem, Button, Keyboard, Storage
from flick.settings import Settings

CHAT_USER = ev.UserInfo(user_id=1, chat_id=1, username="you", first_name="You", language_code="en")


class TerminalOutbox:
    """An Outbox that prints to the terminal and saves videos to a folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.storage: Storage | None = None
        self.buttons: list[Button] = []
        self.buttons_from = 0  # the message the numbered buttons belong to
        self.invoice: tuple[str, int] | None = None
        self.files: dict[str, Path] = {}
        self._ids = itertools.count(1)

    def _show(self, text: str, keyboard: Keyboard | None) -> int:
        message_id = next(self._ids)
        print(f"\nflick> {text}")
        if keyboard:
            self.buttons_from = message_id
            self.buttons = [b for row in keyboard for b in row]
            for number, button in enumerate(self.buttons, start=1):
                target = f" -> {button.url}" if button.url else ""
                print(f"   [{number}] {button.text}{target}")
        sys.stdout.flush()
        return message_id

    async def send_text(self, chat_id: int, text: str, keyboard: Keyboard | None = None) -> int:
        return self._show(text, keyboard)

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None = None
    ) -> None:
        self._show(f"(update) {text}", keyboard)

    async def answer_button(
        self, callback_id: str, text: str | None = None, alert: bool = False
    ) -> None:
        if text:
            print(f"   ({text})")

    async def send_video(
        self,
        chat_id: int,
        storage_key: str,
        caption: str,
        keyboard: Keyboard | None = None,
        file_id: str | None = None,
        *,
        local_path: Path | None = None,
        meta: VideoMeta | None = None,
    ) -> str:
        assert self.storage is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        video = self.out_dir / Path(storage_key).name
        if local_path is not None:  # the engine's own copy; it deletes that one afterwards
            await asyncio.to_thread(shutil.copyfile, local_path, video)
        else:
            with video.open("wb") as fh:
                async for chunk in self.storage.stream(storage_key):
                    fh.write(chunk)
        combined_key = storage_key.replace("videos/", "combined/").replace(".mp4", ".jpg")
        lines = [caption, f"video saved: {video.resolve()}"]
        try:
            image = self.out_dir / Path(combined_key).name
            image.write_bytes(await self.storage.get(combined_key))
            lines.append(f"combined image saved: {image.resolve()}")
        except Exception:  # noqa: BLE001 - the picture is a bonus; the video is what matters
            pass
        self._show("\n".join(lines), keyboard)
        return f"local-{storage_key}"

    async def send_album(self, chat_id: int, items: Sequence[AlbumItem]) -> None:
        self._show("\n".join(f"{i.caption}: {i.path.resolve()}" for i in items), None)

    async def send_invoice(
        self,
        chat_id: int,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
    ) -> int:
        self.invoice = (payload, amount)
        return self._show(
            f"[TEST PAYMENT — no real Stars] invoice: {title}, {amount} {currency}.\n"
            "Type `pay` to simulate a successful payment.",
            None,
        )

    async def answer_pre_checkout(self, query_id: str, ok: bool, error: str | None = None) -> None:
        if not ok:
            print(f"   (payment refused: {error})")

    async def download(self, photo: ev.PhotoRef) -> AsyncIterator[bytes]:
        with self.files[photo.file_id].open("rb") as fh:
            while chunk := fh.read(64 * 1024):
                yield chunk

    async def refund_star_payment(self, user_id: int, charge_id: str) -> bool:
        return True

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        currency: str,
        amount: int,
        label: str,
        subscription_period: int | None = None,
    ) -> str:
        self.invoice = (payload, amount)
        print(f"   [TEST PAYMENT — no real Stars] subscription: {title}, {amount} {currency}")
        print("   Type `pay` to simulate its first payment.")
        return "https://t.me/$offline-invoice"

    async def edit_subscription(self, user_id: int, charge_id: str, *, canceled: bool) -> None:
        print(f"   (subscription renewal {'off' if canceled else 'on'})")


def parse(line: str, outbox: TerminalOutbox, n: int) -> list[ev.Event] | str:
    """Turn one typed line into engine events (or an error for the terminal)."""
    line = line.strip()
    eid = f"t{n}"
    if not line:
        return []
    if line.isdigit():
        index = int(line) - 1
        if not 0 <= index < len(outbox.buttons) or outbox.buttons[index].data is None:
            return "no such button"
        return [
            ev.ButtonPress(
                CHAT_USER, eid, f"cb{n}", outbox.buttons[index].data or "", outbox.buttons_from
            )
        ]
    if line.startswith("/photo"):
        path = Path(line[len("/photo") :].strip()).expanduser()
        if not path.is_file():
            return f"no file at {path}"
        file_id = f"file{n}"
        outbox.files[file_id] = path
        ref = ev.PhotoRef(file_id, f"u{n}", path.stat().st_size, as_document=True)
        return [ev.Photo(CHAT_USER, eid, ref)]
    if line == "pay":
        if outbox.invoice is None:
            return "no invoice to pay"
        payload, amount = outbox.invoice
        outbox.invoice = None
        charge = f"test-{uuid.uuid4().hex[:12]}"
        return [
            ev.PreCheckout(CHAT_USER, f"q{n}", f"q{n}", "XTR", amount, payload),
            ev.PaymentSucceeded(CHAT_USER, f"p{n}", charge, "", "XTR", amount, payload),
        ]
    if line.startswith("/"):
        name, _, args = line[1:].partition(" ")
        return [ev.Command(CHAT_USER, eid, name.lower(), args.strip())]
    return [ev.Text(CHAT_USER, eid, line)]


async def chat(settings: Settings, out_dir: Path) -> None:
    outbox = TerminalOutbox(out_dir)
    async with Flick(settings, outbox) as app:
        outbox.storage = app.storage
        print(
            "Flick playground. Type /start. `/photo PATH` sends a photo, a number presses a "
            "button, `pay` pays the last invoice (test path), `quit` leaves."
        )
        loop = asyncio.get_running_loop()
        for n in itertools.count(1):
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() in ("quit", "exit"):
                break
            parsed = parse(line, outbox, n)
            if isinstance(parsed, str):
                print(f"   ({parsed})")
                continue
            for event in parsed:
                await app.dispatch(event)
            await _settle(app)
        await _settle(app, until_idle=True)


async def _settle(app: Flick, until_idle: bool = False) -> None:
    """Let the engine answer before reading the next line (and finish videos at the end)."""
    sup = app.supervisor
    for _ in range(6000):  # at most five minutes
        waiting = sup.mailbox_depth() or any(
            a.busy or a.pending_photos for a in sup.actors.values()
        )
        if until_idle:
            waiting = waiting or sup.generations_running
        if not waiting:
            return
        await asyncio.sleep(0.05)
