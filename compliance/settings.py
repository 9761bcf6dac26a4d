"""Settings shared by the echo scripts.

$WS13_COMPLIANCE_COMPRESSION: "deflate" (default: ws13's default
permessage-deflate, which Autobahn's 12.* and 13.* cases need) or "none".
"""

import os


def compression_kwargs():
    value = os.environ.get("WS13_COMPLIANCE_COMPRESSION", "deflate")
    return {"compression": None if value == "none" else value}
