"""ws13 as uvicorn's WebSocket protocol (extra ``ws13[uvicorn]``).

``uvicorn app:app --ws ws13.uvicorn:WebSocketProtocol`` serves the ASGI app's
WebSocket routes (FastAPI, Starlette...) with ws13's core and its C
speedups; see ``WebSocketProtocol`` and docs/uvicorn.md. Importing this
package imports uvicorn.
"""

from __future__ import annotations

from .protocol import WebSocketProtocol, with_metrics

__all__ = ["WebSocketProtocol", "with_metrics"]
