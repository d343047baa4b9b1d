"""A minimal HTTP ``Caller`` for functions hosted elsewhere.

INTEGRATION POINT: the workflow branch brings ``fusion/remote.py`` (``RemoteCaller``,
same constructor and ``call``/``close``); ``fusion.local.remote_caller`` prefers it, and
this file can go once both branches are merged.

The call keeps the event's method, path, query (``fields``), headers and body; one
keep-alive session serves every call. A timeout answers 504, a callee that cannot be
reached 502, as the contract in ``fusion.calls`` asks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fusion.calls import DEFAULT_MAX_CALL_DEPTH, env_url, nuclio_default_url, timed_out
from fusion.local import hop_headers
from runtime.events import RawEvent
from runtime.responses import RawResponse, error_response

_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive",
                  "expect", "accept-encoding"})
# Written by the callee's server, not its handler: a local call has none of them.
_SERVER = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding",
                     "content-type", "date", "server", "content-encoding"})


class RemoteCaller:
    def __init__(self, addresses: dict[str, str], namespace: str,
                 max_depth: int = DEFAULT_MAX_CALL_DEPTH) -> None:
        self._addresses = addresses
        self._namespace = namespace
        self._max_depth = max_depth  # checked by fusion.local.FunctionCaller before us
        self._session: Any = None

    def url(self, name: str) -> str:
        base = self._addresses.get(name) or env_url(name) or \
            nuclio_default_url(name, self._namespace)
        return base.rstrip("/")

    async def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        import aiohttp  # the processor has it loaded already; workers never get here

        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: str(v) for k, v in hop_headers(name, event.headers).items()
                   if k.lower() not in _HOP}
        try:
            async with self._session.request(
                    event.method or "POST", self.url(name) + (event.path or "/"),
                    params={str(k): str(v) for k, v in event.fields.items()} or None,
                    data=event.body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                body = await response.read()
                headers = {k: v for k, v in response.headers.items()
                           if k.lower() not in _SERVER}
                return RawResponse(response.status, headers, body,
                                   response.headers.get("Content-Type", ""))
        except TimeoutError:
            return timed_out(name, timeout)
        except (aiohttp.ClientError, OSError) as exc:
            return error_response(502, f"function {name!r} could not be reached: "
                                       f"{type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
