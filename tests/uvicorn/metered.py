"""The Starlette app of ``apps.py`` with ws13's metrics: ``with_metrics()`` and ``/metrics``.

uvicorn serves ``tests.uvicorn.metered:app`` with ``--ws
tests.uvicorn.metered:Protocol``: the protocol class reports to ``METRICS``,
which the app serves on ``/metrics`` for Prometheus.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute

from ws13.metrics import Metrics
from ws13.uvicorn import with_metrics

from .apps import WEBSOCKET_ROUTES

METRICS = Metrics()
Protocol = with_metrics(METRICS)

app = Starlette(
    routes=[
        Mount("/metrics", METRICS.asgi_app()),
        *(WebSocketRoute(path, handler) for path, handler in WEBSOCKET_ROUTES.items()),
    ]
)
