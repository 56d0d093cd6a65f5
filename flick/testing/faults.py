"""The faults tests script into a fake provider: `fake.script(op, Fault.status(429), ...)`.

Each fault answers one future request of an operation. The generic kinds (`GENERIC_FAULTS`) are
answered by the fakes' HTTP machinery (`fake_http`); the others by the provider's fake itself.

A fault that is scripted and never triggered means the test did not test what it says it does:
the fixtures that make fakes call `assert_faults_used()` when the test ends, which fails it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

#: Faults every operation of every fake understands; fakes add their own per operation.
GENERIC_FAULTS = frozenset({"latency", "status", "malformed_json", "disconnect"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer to the next request of an operation: `fake.script(op, Fault...)`."""

    kind: str
    delay: float = 0.0  # seconds to wait before answering (every kind)
    http_status: int = 0
    retry_after: float | None = None
    code: str | None = None
    message: str | None = None
    n_bytes: int = 0
    chunked: bool = False
    hold: float = 0.0  # lost_reply: how long the connection stays open after the work is done

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer normally, `seconds` late."""
        return cls("latency", delay=seconds)

    @classmethod
    def status(
        cls,
        status: int,
        *,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """An error reply in the provider's error shape, with a Retry-After header if given."""
        return cls(
            "status", http_status=status, retry_after=retry_after, code=code, message=message
        )

    @classmethod
    def malformed(cls, what: str = "json") -> Fault:
        """ "json": a 200 whose body is not JSON; "no_image" (OpenAI): a valid reply, no image."""
        if what not in ("json", "no_image"):
            raise ValueError("malformed() takes 'json' or 'no_image'")
        return cls("malformed_json" if what == "json" else "no_image")

    @classmethod
    def disconnect(cls) -> Fault:
        """Drop the connection without answering."""
        return cls("disconnect")

    @classmethod
    def moderation_blocked(cls) -> Fault:
        """OpenAI images: 400 `moderation_blocked`, as its safety system answers."""
        return cls("moderation_blocked")

    @classmethod
    def prediction_fails(cls, error: str = "CUDA error: out of memory") -> Fault:
        """Replicate, on predictions.create: the prediction runs, then ends `failed`."""
        return cls("prediction_fails", message=error)

    @classmethod
    def never_finishes(cls) -> Fault:
        """Replicate, on predictions.create: the prediction stays `processing` until canceled."""
        return cls("never_finishes")

    @classmethod
    def prediction_aborted(cls) -> Fault:
        """Replicate, on predictions.create: the prediction is terminated before it starts
        (status `aborted`, e.g. its deadline passed in the queue); nothing ran or was billed."""
        return cls("prediction_aborted")

    @classmethod
    def lost_reply(cls, hold: float = 0.0) -> Fault:
        """Replicate, on predictions.create: the prediction is created (and billed), but its
        answer never arrives: the connection drops `hold` seconds later (a kill, a lost reply)."""
        return cls("lost_reply", hold=hold)

    @classmethod
    def output_404(cls) -> Fault:
        """Replicate, on output: the file is gone (outputs are deleted after about an hour)."""
        return cls("output_404")

    @classmethod
    def output_html(cls) -> Fault:
        """Replicate, on output: 200 with an HTML page instead of a video."""
        return cls("output_html")

    @classmethod
    def output_large(cls, n_bytes: int, *, chunked: bool = False) -> Fault:
        """Replicate, on output: a video of `n_bytes` (chunked: without Content-Length)."""
        return cls("output_large", n_bytes=n_bytes, chunked=chunked)

    def after(self, seconds: float) -> Fault:
        """The same fault, answered `seconds` late."""
        return replace(self, delay=seconds)


def assert_all_used(fake: str, unused: Mapping[str, Sequence[object]]) -> None:
    """Fail (AssertionError) if any scripted fault of `fake` was never triggered."""
    left = {where: list(faults) for where, faults in unused.items() if faults}
    if left:
        listed = "; ".join(f"{where}: {faults}" for where, faults in left.items())
        raise AssertionError(
            f"{fake}: faults scripted and never triggered (the test missed its point): {listed}"
        )
