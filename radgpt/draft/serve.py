"""Online drafting: a Ray Serve deployment with request batching (@serve.batch).

    radgpt serve --config conf/local.yaml [--port 8000] [--host 127.0.0.1]
    curl -s localhost:8000/healthz
    curl -s -X POST localhost:8000/v1/impressions -d '{"findings": "The heart is normal ..."}'
      -> {"impression": "...", "flags": [...], "flag_observations": [...], "provenance": {...}}

Binds 127.0.0.1 by default (serve.host). Concurrent requests are drafted together in one batch of
up to serve.max_batch_size, waiting at most serve.batch_wait_timeout_s for a batch to fill.
Bad requests get a 4xx JSON {"error": ...}: a body over serve.max_body_bytes 413 before it is
read (its Content-Length, else counted as it streams in), a body that is not JSON, nests too
deeply or lacks a "findings" string 400. Findings text is never logged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from typing import TYPE_CHECKING

from radgpt.config import Config

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

    from radgpt.model.spec import ModelSpec

log = logging.getLogger("radgpt.draft.serve")
MAX_CHARS = 20_000  # longer Findings are a client error, not a silent truncation
ROUTE = "/v1/impressions"


def error(status: int, msg: str) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": msg}, status_code=status)


def parse(body: bytes) -> str | JSONResponse:
    """The Findings string of a request body, or the 400 response that says what is wrong."""
    try:
        obj = json.loads(body or b"null")
    except RecursionError:  # json's parser recurses per nesting level: not a server error
        return error(400, "body is not valid JSON: nested too deeply")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return error(400, "body is not valid JSON")
    if not isinstance(obj, dict) or "findings" not in obj:
        return error(400, 'body must be a JSON object with a "findings" string')
    f = obj["findings"]
    if not isinstance(f, str) or not f.strip():
        return error(400, '"findings" must be a non-empty string')
    if len(f) > MAX_CHARS:
        return error(413, f'"findings" is longer than {MAX_CHARS} characters')
    return f


async def read_body(request, cap: int) -> bytes | JSONResponse:
    """The body of a starlette Request, or the 413 (or 400) response: over `cap` bytes is refused
    from its Content-Length before a byte is read, and, without one (chunked), as soon as more
    than `cap` bytes have come; the rest is never read."""
    size = request.headers.get("content-length")
    if size is not None:
        if not size.strip().isdigit():
            return error(400, "Content-Length is not a number")
        if int(size) > cap:
            return error(413, f"body is larger than {cap} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            return error(413, f"body is larger than {cap} bytes")
    return bytes(body)


def request_report(spec: ModelSpec, findings: str) -> dict:
    """A request as the report a draft row is built from: identified by its Findings' hash."""
    from radgpt.model.ids import text_sha256

    rid = f"findings:{text_sha256(findings)}"
    ids = {"draft_id": spec.draft_id(rid), "report_id": rid, "findings": findings}
    return ids | {"source": None, "patient_id": None, "study_id": None, "source_sha256": None}


@functools.cache
def deployment():
    """The Serve deployment class, built on first use (ray.serve and starlette load only then)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(name="impressions")
    class Impressions:
        def __init__(self, cfg_json: str, spec_json: str):
            from radgpt.draft.drafter import Drafter
            from radgpt.runtime import new_run_id, utcnow

            cfg = Config.from_json(cfg_json)
            run = {"run_id": new_run_id("serve"), "run_date": utcnow().strftime("%Y-%m-%d")}
            self.drafter = Drafter(cfg_json, spec_json, run)
            self.max_body = cfg.serve.max_body_bytes
            self.spec = self.drafter.spec
            self.draft_batch.set_max_batch_size(cfg.serve.max_batch_size)
            self.draft_batch.set_batch_wait_timeout_s(cfg.serve.batch_wait_timeout_s)

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
        async def draft_batch(self, findings: list[str]) -> list[dict]:
            from radgpt.writeback.provenance import provenance_fields

            outs = await asyncio.to_thread(self.drafter.generate, findings)  # keeps /healthz live
            rows = self.drafter.postprocess.rows(
                [request_report(self.spec, f) for f in findings], outs
            )
            n = len(findings)
            return [
                {
                    "impression": r["draft"],
                    "flags": r["flags"],
                    "flag_observations": r["flag_observations"],
                    "provenance": provenance_fields(r) | {"batch_size": n},
                }
                for r in rows
            ]

        async def __call__(self, request: Request) -> JSONResponse:
            path = request.url.path.rstrip("/") or "/"
            if path == "/healthz":
                return JSONResponse({"status": "ok", "adapter_id": self.spec.adapter_id})
            if path != ROUTE:
                return error(404, f"no route {path}; use POST {ROUTE} or GET /healthz")
            if request.method != "POST":
                return error(405, f"{ROUTE} takes POST with a JSON body")
            body = await read_body(request, self.max_body)
            if isinstance(body, JSONResponse):
                return body
            f = parse(body)
            if isinstance(f, JSONResponse):
                return f
            t0 = time.perf_counter()
            out = await self.draft_batch(f)
            log.info("drafted 1 request in %.0f ms", (time.perf_counter() - t0) * 1000)
            return JSONResponse(out)

    return Impressions


def _app(cfg: Config):
    """The bound Serve application (model.adapter): one deployment sized like a drafting actor."""
    from radgpt.draft.drafter import adapter_dir
    from radgpt.model.spec import ModelSpec

    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))
    opts = {"num_cpus": cfg.draft.cpus_per_actor, "num_gpus": cfg.draft.gpus_per_actor}
    app = deployment().options(ray_actor_options=opts).bind(cfg.to_json(), spec.to_json())
    return app, spec


def build_app(args: dict):
    """Ray Serve application builder for KubeRay RayService / `serve run radgpt.draft.serve:build_app config=PATH`."""
    from radgpt.config import load_config

    return _app(load_config(args.get("config")))[0]


def start(cfg: Config) -> str:
    """Deploy on the configured Ray (local by default) at serve.host:serve.port; the base URL."""
    from radgpt.cluster import init_ray

    init_ray(cfg)
    app, spec = _app(cfg)
    from ray import serve

    host, port = cfg.serve.host, cfg.serve.port
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name="radgpt", route_prefix="/")
    url = f"http://{host}:{port}"
    log.info("serving %s (adapter %s)", url, spec.adapter_id)
    return url
