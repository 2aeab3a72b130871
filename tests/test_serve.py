"""Ray Serve endpoint over real HTTP on 127.0.0.1 with the tiny model: drafts, batching, 4xx errors.

.venv/bin/pytest tests/test_serve.py -q
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from radgpt.config import load_config
from radgpt.draft.flags import FLAGS
from radgpt.model import base as model

FINDINGS = "Mild cardiomegaly. Small left pleural effusion. No pneumothorax."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def url(tmp_path, tiny_model_dir, ray_local):
    from ray import serve

    from radgpt.draft.serve import start

    cfg = load_config(
        overrides={
            "paths.root": str(tmp_path),
            "model.base": str(tiny_model_dir),
            "model.adapter": None,  # the base model alone
            "draft.max_new_tokens": 6,
            "draft.cpus_per_actor": 1,
            "serve.max_batch_size": 4,
            "serve.batch_wait_timeout_s": 0.5,
            "serve.port": free_port(),
            "serve.max_body_bytes": 1 << 20,
        }
    )
    assert cfg.serve.host == "127.0.0.1"  # localhost by default
    yield start(cfg)
    serve.shutdown()


@pytest.mark.slow
def test_serve_http(url, tiny_model_dir):
    get = lambda p: requests.get(url + p, timeout=60)  # noqa: E731
    post = lambda body, **kw: requests.post(url + "/v1/impressions", timeout=60, **kw)  # noqa: E731
    assert url.startswith("http://127.0.0.1:")
    h = get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"

    r = post(None, json={"findings": FINDINGS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"impression", "flags", "flag_observations", "provenance"}
    assert isinstance(body["impression"], str) and set(body["flags"]) <= set(FLAGS)
    kinds = {x.split(":")[0] for x in body["flag_observations"]}
    assert kinds == set(body["flags"]) & {"omits_finding", "adds_finding"}
    prov = body["provenance"]
    assert prov["base_model_sha256"] == model.base_sha256(tiny_model_dir)
    assert prov["prompt_name"] == "chat-v1" and 0 < prov["output_tokens"] <= 6
    assert prov["generated_at"].endswith("Z") and len(prov["draft_id"]) == 32

    # concurrent requests are drafted together (request batching), each gets its own answer
    texts = [f"{FINDINGS} Case {i}." for i in range(4)]
    with ThreadPoolExecutor(4) as ex:
        rs = list(ex.map(lambda f: post(None, json={"findings": f}), texts))
    assert all(x.status_code == 200 for x in rs)
    assert max(x.json()["provenance"]["batch_size"] for x in rs) >= 2
    assert len({x.json()["provenance"]["findings_sha256"] for x in rs}) == 4

    # bad requests: 4xx with a JSON error
    for kw, code in [
        ({"data": b"{not json"}, 400),
        ({"json": {"text": FINDINGS}}, 400),
        ({"json": {"findings": "   "}}, 400),
        ({"json": {"findings": 42}}, 400),
        ({"json": ["x"]}, 400),
        ({"json": {"findings": "x" * 20_001}}, 413),
    ]:
        bad = post(None, **kw)
        assert bad.status_code == code and "error" in bad.json(), kw
    assert get("/v1/impressions").status_code == 405
    assert get("/nope").status_code == 404 and "error" in get("/nope").json()

    # deep nesting: 400, not a 500 with a traceback
    deep = post(None, data=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested" in deep.json()["error"]
    # an over-size body is refused from its headers: the 413 comes with 1 KiB of 200 MB sent
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/impressions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {200 * 2**20}\r\n\r\n").encode()  # fmt: skip
    assert raw_status(host, int(port), head + b"x" * 1024) == 413
    # chunked (no length): counted as it comes, refused past serve.max_body_bytes (1 MiB here)
    head = head.replace(f"Content-Length: {200 * 2**20}".encode(), b"Transfer-Encoding: chunked")
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    assert raw_status(host, int(port), head + chunk * 17) == 413  # never a last chunk
    assert get("/healthz").status_code == 200  # still serving


def raw_status(host: str, port: int, request: bytes) -> int:
    """The status code of a raw HTTP request whose body is never finished."""
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(request)
        return int(s.recv(4096).split(b" ", 2)[1])


def request(body: bytes | list[bytes], headers: dict[str, str]):
    """A starlette Request whose body arrives in the given chunks; `reads` counts them."""
    from starlette.requests import Request

    chunks = [body] if isinstance(body, bytes) else list(body)
    reads = []

    async def receive():
        reads.append(1)
        more = len(reads) < len(chunks)
        return {"type": "http.request", "body": chunks[len(reads) - 1], "more_body": more}

    scope = {"type": "http", "method": "POST", "path": "/v1/impressions",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    return Request(scope, receive), reads


def test_bodies_over_the_cap_are_refused_before_they_are_read():
    import asyncio
    import json

    from radgpt.draft.serve import read_body

    def run(body, headers, cap=1024):
        req, reads = request(body, headers)
        out = asyncio.run(read_body(req, cap))
        return out, len(reads)

    out, reads = run(b"x" * 10, {"content-length": str(200 * 2**20)})
    assert out.status_code == 413 and reads == 0  # from the header alone
    out, reads = run([b"x" * 600] * 100, {})  # chunked: stops at the chunk that crosses the cap
    assert out.status_code == 413 and reads == 2
    out, _ = run(b"{}", {"content-length": "two"})
    assert out.status_code == 400 and "Content-Length" in json.loads(out.body)["error"]
    body = b'{"findings": "x"}'
    assert run(body, {"content-length": str(len(body))}) == (body, 1)
    assert run([b'{"findings"', b': "x"}'], {})[0] == body


def test_malformed_and_deeply_nested_json_are_400():
    import json

    from radgpt.draft.serve import parse

    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"findings": ' * 5000, b"\xff\xfe", b"{"):
        r = parse(body)
        assert r.status_code == 400 and json.loads(r.body)["error"].startswith("body is not")
    assert parse(b'{"findings": "Normal heart."}') == "Normal heart."
