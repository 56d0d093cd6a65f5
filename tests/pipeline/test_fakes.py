"""The fakes themselves: they reject what the specs reject, record traffic, count concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from replicate.client import Client as ReplicateClient

from flick.testing.fake_http import Call
from flick.testing.fake_openai import FakeOpenAI, Fault, sample_photo
from flick.testing.fake_replicate import FakeReplicate, sample_mp4
from flick.testing.specs import load_spec, specs_dir

AUTH = {"Authorization": "Bearer sk-test-not-a-real-key"}
R8_AUTH = {"Authorization": "Bearer r8_test-not-a-real-token"}


def edit_form(*, prompt: str | None = "two people", images: int = 2) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for index in range(images):
        form.add_field(
            "image[]", sample_photo(), filename=f"p{index}.jpg", content_type="image/jpeg"
        )
    if prompt is not None:
        form.add_field("prompt", prompt)
    form.add_field("model", "gpt-image-1")
    return form


async def post(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def test_a_valid_raw_request_passes(fake_openai: FakeOpenAI) -> None:
    status, body = await post(
        f"{fake_openai.base_url}/images/edits", data=edit_form(), headers=AUTH
    )

    assert status == 200
    assert isinstance(body, dict) and body["data"][0]["b64_json"]


async def test_missing_prompt_is_rejected_and_recorded(fake_openai: FakeOpenAI) -> None:
    status, body = await post(
        f"{fake_openai.base_url}/images/edits", data=edit_form(prompt=None), headers=AUTH
    )

    assert status == 400
    assert isinstance(body, dict) and "prompt" in body["error"]["message"]
    assert [v.problem for v in fake_openai.violations] == [
        "<body>: 'prompt' is a required property"
    ]
    fake_openai.violations.clear()


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("image", "not a file", "image/2: 'not a file' is not a 'binary'"),  # text, not a file
        ("quality", "ultra", "quality: 'ultra' is not one of"),
        ("n", "lots", "n: 'lots' is not of type"),
        ("colour", "red", "colour: unknown parameter"),
    ],
)
async def test_bad_multipart_fields_are_violations(
    fake_openai: FakeOpenAI, field: str, value: str, problem: str
) -> None:
    form = edit_form()
    form.add_field(field, value)

    status, _ = await post(f"{fake_openai.base_url}/images/edits", data=form, headers=AUTH)

    assert status == 400
    assert any(v.problem.startswith(problem) for v in fake_openai.violations), (
        fake_openai.violations
    )
    fake_openai.violations.clear()


async def test_json_body_where_the_sdk_sends_multipart_is_checked_too(
    fake_openai: FakeOpenAI,
) -> None:
    status, _ = await post(
        f"{fake_openai.base_url}/images/edits", json={"prompt": "x", "image": "y"}, headers=AUTH
    )

    assert status == 400  # the JSON form takes `images`, not `image`
    assert fake_openai.violations
    fake_openai.violations.clear()


@pytest.mark.parametrize(
    ("method", "path", "problem"),
    [
        ("POST", "/v1/images/editz", "no path in the openai spec matches /images/editz"),
        ("GET", "/v1/images/edits", "GET /images/edits is not in the spec"),
        ("GET", "/v2/models", "/v2/models is outside the API's base path /v1"),
        ("GET", "/v1/files", "GET /files is in the spec but not implemented by this fake"),
    ],
)
async def test_paths_outside_the_spec_or_the_fake_are_violations(
    fake_openai: FakeOpenAI, method: str, path: str, problem: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake_openai.origin + path, headers=AUTH) as response,
    ):
        assert response.status in (400, 501)

    assert [v.problem[: len(problem)] for v in fake_openai.violations] == [problem]
    fake_openai.violations.clear()


async def test_missing_credentials_are_a_violation(fake_openai: FakeOpenAI) -> None:
    status, _ = await post(f"{fake_openai.base_url}/images/edits", data=edit_form())

    assert status == 400
    (violation,) = fake_openai.violations
    assert violation.problem.startswith("missing credentials: ")
    fake_openai.violations.clear()


async def test_wrong_key_is_401_but_valid_per_spec(fake_openai: FakeOpenAI) -> None:
    headers = {"Authorization": "Bearer sk-other"}
    status, body = await post(
        f"{fake_openai.base_url}/images/edits", data=edit_form(), headers=headers
    )

    assert status == 401
    assert isinstance(body, dict) and body["error"]["code"] == "invalid_api_key"
    assert fake_openai.violations == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"inputs": {"prompt": "x"}}, "<body>: 'input' is a required property"),
        ({"input": "a string"}, "input: 'a string' is not of type 'object'"),
        ({"input": {}, "version": "abc"}, "<body>: Additional properties are not allowed"),
    ],
)
async def test_bad_prediction_bodies_are_violations(
    fake_replicate: FakeReplicate, body: dict[str, object], problem: str
) -> None:
    url = f"{fake_replicate.base_url}/v1/models/a/b/predictions"

    status, _ = await post(url, json=body, headers=R8_AUTH)

    assert status == 400
    assert any(v.problem.startswith(problem) for v in fake_replicate.violations)
    assert fake_replicate.predictions_created == 0
    fake_replicate.violations.clear()


async def test_invalid_json_and_bad_headers_are_violations(fake_replicate: FakeReplicate) -> None:
    url = f"{fake_replicate.base_url}/v1/models/a/b/predictions"
    headers = R8_AUTH | {"Content-Type": "application/json"}

    status, _ = await post(url, data=b'{"input": ', headers=headers)
    assert status == 400
    status, _ = await post(url, json={"input": {}}, headers=R8_AUTH | {"Prefer": "wait=999"})
    assert status == 400

    problems = [v.problem for v in fake_replicate.violations]
    assert problems[0].startswith("body is not valid JSON")
    assert problems[1].startswith("header parameter Prefer: 'wait=999' does not match")
    fake_replicate.violations.clear()


async def test_sdk_traffic_and_the_fakes_replies_match_the_specs(
    fake_openai: FakeOpenAI, fake_replicate: FakeReplicate
) -> None:
    client = openai.AsyncOpenAI(api_key="sk-test-not-a-real-key", base_url=fake_openai.base_url)
    async with client:
        await client.models.list()
        await client.models.retrieve("gpt-image-1")
    r8 = ReplicateClient(api_token="r8_test-not-a-real-token", base_url=fake_replicate.base_url)
    made = await r8.models.predictions.async_create(model="a/b", input={"prompt": "x"})
    await r8.predictions.async_get(made.id)
    await r8.predictions.async_cancel(made.id)
    await r8.accounts.async_current()
    await r8._async_client.aclose()  # the SDK offers no public close for its async client

    assert fake_openai.violations == [] and fake_replicate.violations == []
    assert [r.op for r in fake_replicate.requests] == [
        "predictions.create",
        "predictions.get",
        "predictions.cancel",
        "account.get",
    ]


async def test_scripted_faults_answer_requests_in_order(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("models.retrieve", Fault.status(500), Fault.latency(0.05))
    url = f"{fake_openai.base_url}/models/gpt-image-1"

    async with aiohttp.ClientSession(headers=AUTH) as session:
        statuses = []
        for _ in range(3):
            async with session.get(url) as response:
                statuses.append(response.status)

    assert statuses == [500, 200, 200]
    assert [r.fault.kind if r.fault else None for r in fake_openai.requests] == [
        "status",
        "latency",
        None,
    ]


def test_script_refuses_unknown_operations_and_faults_that_do_not_apply() -> None:
    fake = FakeReplicate()
    with pytest.raises(ValueError, match="unknown operation"):
        fake.script("images.edit", Fault.status(500))
    with pytest.raises(ValueError, match="does not apply"):
        fake.script("predictions.get", Fault.output_html())


async def test_in_flight_counts_concurrent_requests(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("models.retrieve", *[Fault.latency(0.3)] * 5)
    url = f"{fake_openai.base_url}/models/gpt-image-1"

    async def one(session: aiohttp.ClientSession) -> int:
        async with session.get(url) as response:
            return response.status

    async with aiohttp.ClientSession(headers=AUTH) as session:
        assert await asyncio.gather(*[one(session) for _ in range(5)]) == [200] * 5

    assert fake_openai.max_in_flight == 5
    assert fake_openai.max_in_flight_by_op == {"models.retrieve": 5}
    assert fake_openai.in_flight == 0


async def test_max_running_counts_overlapping_predictions(fake_replicate: FakeReplicate) -> None:
    fake_replicate.script("predictions.create", *[Fault.never_finishes()] * 3)
    url = f"{fake_replicate.base_url}/v1"
    ids = []
    for _ in range(3):
        status, body = await post(
            f"{url}/models/a/b/predictions", json={"input": {}}, headers=R8_AUTH
        )
        assert status == 201
        ids.append(body["id"])
    assert fake_replicate.running() == 3

    for prediction_id in ids:
        status, body = await post(f"{url}/predictions/{prediction_id}/cancel", headers=R8_AUTH)
        assert (status, body["status"]) == (200, "canceled")

    assert fake_replicate.running() == 0
    assert fake_replicate.max_running == 3


def test_sample_mp4_is_a_small_real_mp4() -> None:
    video = sample_mp4()
    assert video[4:8] == b"ftyp"
    assert b"moov" in video and b"mdat" in video
    assert 500 < len(video) < 20_000


def test_specs_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = specs_dir()
    assert (found / "openai-openapi.yaml").is_file()
    monkeypatch.setenv("FLICK_SPECS_DIR", str(found))
    assert specs_dir() == found
    monkeypatch.setenv("FLICK_SPECS_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FLICK_SPECS_DIR"):
        specs_dir()


def test_nullable_fields_accept_null() -> None:
    # The specs still use OpenAPI 3.0's `nullable`; a null the real API sends must not fail here.
    spec = load_spec("replicate")
    request = spec.request("GET", "/v1/predictions/abc", headers=R8_AUTH)
    prediction = {
        "id": "abc",
        "model": "a/b",
        "version": "hidden-by-the-test",
        "input": {},
        "output": None,
        "data_removed": False,
        "error": None,  # `nullable: true` in the spec
        "status": "starting",
        "created_at": "2026-01-01T00:00:00Z",
        "urls": {"get": "https://x/", "cancel": "https://x/c", "web": "https://x/w"},
    }

    assert spec.check_response(request, 200, prediction) == []
    assert spec.check_response(request, 200, prediction | {"error": 5}) == [
        "error: 5 is not of type 'string'"
    ]


class DriftingOpenAI(FakeOpenAI):
    """A fake whose model object lost a field and got a string where the spec has a number."""

    async def _model(self, call: Call) -> web.StreamResponse:
        return self.reply(call, {"id": "gpt-image-1", "object": "model", "created": "today"})


async def test_a_reply_that_breaks_the_spec_is_a_violation() -> None:
    async with (
        DriftingOpenAI() as fake,
        aiohttp.ClientSession(headers=AUTH) as session,
        session.get(f"{fake.base_url}/models/gpt-image-1") as response,
    ):
        assert response.status == 200  # sent anyway: the fault is the fake's, not the client's

    problems = sorted(v.problem for v in fake.violations)
    assert problems == [
        "fake's reply 200: <body>: 'owned_by' is a required property",
        "fake's reply 200: created: 'today' is not of type 'integer'",
    ]


def test_a_reply_with_an_undocumented_status_is_a_violation() -> None:
    spec = load_spec("openai")
    request = spec.request("GET", "/v1/models", headers=AUTH)

    assert spec.check_response(request, 299, {"object": "list", "data": []}) == [
        "Unknown response http status: 299"
    ]


async def test_a_scripted_fault_never_triggered_fails_the_test(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("models.retrieve", Fault.status(500))
    fake_openai.script_every("models.list", Fault.latency(0.01))
    with pytest.raises(AssertionError, match="never triggered") as unused:
        fake_openai.assert_faults_used()  # what the fixture does when the test ends
    assert "models.retrieve" in str(unused.value) and "models.list" in str(unused.value)

    async with aiohttp.ClientSession(headers=AUTH) as session:
        for path in ("/models/gpt-image-1", "/models", "/models"):
            async with session.get(fake_openai.base_url + path):
                pass

    assert fake_openai.unused_faults() == {}
    fake_openai.assert_faults_used()
    assert [r.fault for r in fake_openai.requests] == [
        Fault.status(500),
        Fault.latency(0.01),
        Fault.latency(0.01),  # script_every: every request, not once
    ]
