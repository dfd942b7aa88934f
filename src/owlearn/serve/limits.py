"""A limit on request bodies, so that no endpoint reads an unbounded body into memory.

FastAPI reads a JSON body whole before validating it; without this a single request could make the
server hold gigabytes. A declared Content-Length over the limit is refused before anything is read; a
body sent without one (chunked) is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import HTTPException


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``limit_for(path)`` bytes with 413."""

    def __init__(self, app, limit_for: Callable[[str], int]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            body = json.dumps({"detail": f"the request is {int(declared):,} bytes; the limit here is {limit:,}"})
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body.encode()})
            return None
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request is larger than the {limit:,}-byte limit here")
            return message

        return await self.app(scope, limited_receive, send)
