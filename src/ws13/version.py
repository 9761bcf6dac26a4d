"""ws13's version and the product token it sends in User-Agent and Server."""

from __future__ import annotations

__all__ = ["USER_AGENT", "__version__"]

__version__ = "0.1.0"

USER_AGENT = f"ws13/{__version__}"
