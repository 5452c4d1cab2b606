"""The scoring API as an ASGI application (Starlette), run by uvicorn (`cardscore.serving.server`).

    POST /v1/score      one transaction (object) or a batch (array) -> score message(s) + why
    GET  /healthz       the process is up
    GET  /readyz        a model (or, frozen, the fallback rules) and the online features are
                        loaded (200), else 503
    GET  /metrics       Prometheus
    GET  /openapi.json  the OpenAPI document (docs/openapi/scoring-api.json)

Status codes of /v1/score: 200 scored; 413 body over `serving.max_body_bytes`; 422 invalid input
(every reason, nothing scored); 503 not ready, or the online store cannot be read (fail closed:
no score is made up from default features; the caller applies its own fallback rule). With the
snapshot reader (default) an online store outage does not reach requests: the day's rows are in
memory and only change when a day is materialized.

Handlers run on the event loop without a thread hop: a request is ~1 ms of CPU (validation,
an in-memory read, one predict) and handing it to a thread pool would cost more than it saves.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardscore.core.logs import get_logger
from cardscore.features.online_tables import OnlineStoreUnavailable
from cardscore.serving.metrics import ServeMetrics
from cardscore.serving.openapi import openapi_document
from cardscore.serving.scoring import BadRequest, parse_request, score_records
from cardscore.serving.state import ServingState

if TYPE_CHECKING:
    from cardscore.core.config import Settings

log = get_logger("serving.app")
_WARN_EVERY_SECONDS = 5.0


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, error: str, detail: str, **extra: Any) -> Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return _json_response({"error": error, "detail": detail, **extra}, status, headers)


class ScoringApi:
    """The handlers, over one `ServingState`."""

    def __init__(self, settings: Settings, state: ServingState, metrics: ServeMetrics) -> None:
        self.settings = settings
        self.cfg = settings.serving
        self.state = state
        self.metrics = metrics
        self.document = openapi_document(self.cfg.max_batch, self.cfg.top_contributions)
        self._warned_at: dict[str, float] = {}

    def _done(self, endpoint: str, started: float, response: Response) -> Response:
        self.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    def _warn(self, event: str, **fields: Any) -> None:
        """A warning at most every few seconds per event (an outage must not flood the logs)."""
        now = time.monotonic()
        if now - self._warned_at.get(event, -1e9) >= _WARN_EVERY_SECONDS:
            self._warned_at[event] = now
            log.warning(event, **fields)

    async def score(self, request: Request) -> Response:
        started = time.perf_counter()
        return self._done("/v1/score", started, await self._score(request))

    async def _score(self, request: Request) -> Response:
        limit = self.cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(413, "payload_too_large", f"the body is {declared} bytes; the limit is {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, "payload_too_large", f"the body is over the limit of {limit} bytes")
        reader, model = self.state.reader, self.state.watcher.current
        if reader is None or model is None:
            missing = [name for name, loaded in (("online features", reader), ("model", model)) if loaded is None]
            return _error(503, "not_ready", f"not ready: no {' and no '.join(missing)} loaded yet")
        t0 = time.perf_counter()
        try:
            parsed = parse_request(bytes(body), self.cfg.max_batch)
        except BadRequest as exc:
            for problem in exc.problems:
                self.metrics.rejected.labels(problem.reason).inc()
            return _json_response(exc.to_dict(), 422)
        self.metrics.stage_latency.labels("validate").observe(time.perf_counter() - t0)
        try:
            batch = score_records(parsed.records, reader, model, self.cfg.top_contributions, fresh=self.state.fresh)
        except OnlineStoreUnavailable as exc:
            self.metrics.dependency_up.labels("online_store").set(0)
            self._warn("serve.online_store_unavailable", error=str(exc)[:300], reader=reader.kind)
            return _error(503, "online_store_unavailable", "the online feature store cannot be read; "
                          "nothing was scored")
        self.metrics.dependency_up.labels("online_store").set(1)
        for stage, seconds in batch.seconds.items():
            self.metrics.stage_latency.labels(stage).observe(seconds)
        self.metrics.batch_size.observe(len(parsed.records))
        self.metrics.scored.inc(len(parsed.records))
        self.metrics.unknown_entities.labels("customer").inc(batch.unknown_customers)
        self.metrics.unknown_entities.labels("terminal").inc(batch.unknown_terminals)
        return _json_response(batch.results[0] if parsed.single else batch.results)

    async def healthz(self, request: Request) -> Response:
        return self._done("/healthz", time.perf_counter(), _json_response({"status": "ok"}))

    async def readyz(self, request: Request) -> Response:
        started = time.perf_counter()
        readiness = self.state.readiness()
        return self._done("/readyz", started, _json_response(readiness, 200 if readiness["ready"] else 503))

    async def metrics_page(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        started = time.perf_counter()
        self.state.gc_pauses.observe(self.metrics.gc_pause)
        response = Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
        return self._done("/metrics", started, response)

    async def openapi(self, request: Request) -> Response:
        return self._done("/openapi.json", time.perf_counter(), _json_response(self.document))


def create_app(
    settings: Settings,
    state: ServingState | None = None,
    metrics: ServeMetrics | None = None,
) -> Starlette:
    """The ASGI app. Its lifespan starts the dependency loader and stops it (and the reader)."""
    metrics = metrics or (state.metrics if state is not None else ServeMetrics())
    state = state or ServingState(settings, metrics)
    api = ScoringApi(settings, state, metrics)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.start()
        log.info("serve.starting", reader=settings.features.online_reader, alias=settings.serving.model_alias)
        try:
            yield
        finally:
            state.close()
            log.info("serve.stopped")

    app = Starlette(
        routes=[
            Route("/v1/score", api.score, methods=["POST"]),
            Route("/healthz", api.healthz, methods=["GET"]),
            Route("/readyz", api.readyz, methods=["GET"]),
            Route("/metrics", api.metrics_page, methods=["GET"]),
            Route("/openapi.json", api.openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.serving = state
    app.state.metrics = metrics
    return app
