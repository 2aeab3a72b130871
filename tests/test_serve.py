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
            "draft.max_new_tokens": 6,
            "draft.cpus_per_actor": 1,
            "serve.max_batch_size": 4,
            "serve.batch_wait_timeout_s": 0.5,
            "serve.port": free_port(),
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
