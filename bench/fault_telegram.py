"""The fault campaign's Telegram, as the parent keeps it: every update users sent, with the ids
Telegram gave it, and everything the bot sent back.

Telegram outlives the bot. An update has one identity for good (message id, pts, date, callback
and pre-checkout query ids, photo id), so a redelivered update is the *same* update, as it is
when Telegram redelivers after a reconnect or a restart. The parent assigns those ids (the child
builds the raw update with them), logs each update, and after every restart hands the new child
every update Telegram would redeliver: the ones sent since the previous start (nothing confirms
them earlier than that here), a few seconds more, and any that arrived while Flick was down.

What the bot sent comes back from the child as events: texts (apologies and welcomes are counted
per user), videos (each names the prediction whose file it carries), pre-checkout answers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The catalog's "crash_sorry" and "welcome" (flick/locales/en.po), by how they begin.
APOLOGY = "Sorry, something went wrong on my side."
WELCOME = "Hi "
WELCOME_MARK = "I'm Flick"
PRECHECKOUT_WINDOW = 10.0  # Telegram waits this long for a pre-checkout answer, then gives up
# Ranges that cannot meet the child's own: the bot's message ids start at 1 + 50,000 per
# incarnation, its FileStore's media ids at 5,000,000,001.
FIRST_MESSAGE_ID = 1_000_000_000
FIRST_PHOTO_ID = 9_000_000_000_000
# The fake Replicate ends each video with an MP4 `free` box holding this and the prediction id;
# the child reads it back from what Flick sent, so each video names its generation.
VIDEO_MARK = b"flick-bench-prediction:"


@dataclass
class Update:
    n: int
    uid: int
    kind: str  # cmd:<name>, tap, photo, precheckout, pay
    op: dict[str, Any]  # what the child builds the raw update from
    first_sent: float  # time.monotonic()
    sent_to: list[tuple[int, float]] = field(default_factory=list)  # (incarnation, when)

    @property
    def deliveries(self) -> int:
        """Times it was written to a running Flick."""
        return len(self.sent_to)


@dataclass
class Heard:
    """What the offline Telegram received from the bot."""

    texts: list[tuple[float, int, str]] = field(default_factory=list)  # (t, chat, text)
    apologies: list[tuple[float, int]] = field(default_factory=list)  # (t, chat)
    welcomes: Counter[int] = field(default_factory=Counter)
    videos: Counter[int] = field(default_factory=Counter)  # by chat
    video_predictions: Counter[str] = field(default_factory=Counter)  # by prediction id
    unmarked_videos: int = 0  # a video whose file names no prediction


class FaultTelegram:
    def __init__(self) -> None:
        self.log: list[Update] = []
        self.heard = Heard()
        self.starts_sent: Counter[int] = Counter()  # distinct /start updates, by user
        self.stars: dict[str, dict[str, Any]] = {}  # the bot's Stars history, by charge id
        self._message_ids = itertools.count(FIRST_MESSAGE_ID)
        self._pts = itertools.count(1_000_000)
        self._query_ids = itertools.count(1)
        self._photos = itertools.count(1)
        self.prechecks: dict[int, asyncio.Future[bool]] = {}  # query id → the user's wait

    # ---- updates users send ----------------------------------------------------------------
    def _message(self, uid: int, kind: str, op: dict[str, Any]) -> Update:
        op |= {"uid": uid, "id": next(self._message_ids), "pts": next(self._pts),
               "date": int(time.time())}  # fmt: skip
        return self._logged(uid, kind, op)

    def _logged(self, uid: int, kind: str, op: dict[str, Any]) -> Update:
        update = Update(len(self.log), uid, kind, op, time.monotonic())
        self.log.append(update)
        return update

    def command(self, uid: int, name: str) -> Update:
        if name == "start":
            self.starts_sent[uid] += 1
        return self._message(uid, f"cmd:{name}", {"op": "cmd", "name": name})

    def photo(self, uid: int) -> Update:
        k = next(self._photos)
        return self._message(uid, "photo", {"op": "photo", "photo": k,
                                            "media_id": FIRST_PHOTO_ID + k})  # fmt: skip

    def tap(self, uid: int, data: str, mid: int | None) -> Update:
        op = {"op": "tap", "uid": uid, "data": data, "mid": mid, "qid": next(self._query_ids)}
        return self._logged(uid, "tap", op)

    def precheckout(
        self, uid: int, payload: str, amount: int
    ) -> tuple[Update, asyncio.Future[bool]]:
        qid = next(self._query_ids)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.prechecks[qid] = answer
        op = {"op": "precheckout", "uid": uid, "payload": payload, "amount": amount, "qid": qid}
        return self._logged(uid, "precheckout", op), answer

    def payment(self, uid: int, payload: str, amount: int, charge: str) -> Update:
        """The user paid: the charge is in the bot's Stars history from now on, whether or not
        Flick hears of it, and the service message is an update like any other."""
        self.stars.setdefault(charge, {"charge": charge, "uid": uid, "stars": amount,
                                       "payload": payload, "date": int(time.time())})  # fmt: skip
        return self._message(uid, "pay", {"op": "pay", "payload": payload, "amount": amount,
                                          "charge": charge})  # fmt: skip

    def redeliveries(self, previous_start: float, window: float) -> list[Update]:
        """What Telegram hands a bot that comes back: every update since the previous start
        (and `window` seconds before it), and every one that arrived while it was down."""
        now = time.monotonic()
        due = []
        for update in self.log:
            recent = update.first_sent >= previous_start - window
            if not (recent or update.deliveries == 0):
                continue
            if update.kind == "precheckout" and now - update.first_sent > PRECHECKOUT_WINDOW:
                continue  # Telegram cancelled that payment already: nothing to redeliver
            due.append(update)
        return due

    # ---- what the bot sent -----------------------------------------------------------------
    def hear(self, event: dict[str, Any]) -> str:
        """Record one event of the child; returns its kind."""
        kind = str(event["ev"])
        now = time.monotonic()
        if kind == "text":
            chat, text = int(event["chat"]), str(event["text"])
            self.heard.texts.append((now, chat, text))
            if text.startswith(APOLOGY):
                self.heard.apologies.append((now, chat))
            elif text.startswith(WELCOME) and WELCOME_MARK in text.split("\n", 1)[0]:
                self.heard.welcomes[chat] += 1
        elif kind == "video":
            self.heard.videos[int(event["chat"])] += 1
            prediction = event.get("prediction")
            if prediction:
                self.heard.video_predictions[str(prediction)] += 1
            else:
                self.heard.unmarked_videos += 1
        elif kind == "precheckout":
            answer = self.prechecks.pop(int(event.get("qid") or 0), None)
            if answer is not None and not answer.done():
                answer.set_result(bool(event["ok"]))
        return kind

    def last_texts(self, chat: int, n: int) -> list[str]:
        return [text for _, c, text in self.heard.texts[-200:] if c == chat][-n:]
