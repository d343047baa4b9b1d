"""Calls to functions in another processor, over HTTP: the ``Caller`` used apart.

A call goes to the callee's http trigger (the address map, else
``NUCLIO_FUNCTION_<NAME>_URL``, else Nuclio's ``nuclio-<ns>-<name>:8080``) with
the event's method, path, query, body and content type, so the callee sees the
same event it would see from a client. One ``aiohttp`` session is shared by all
calls: connections are kept alive and reused, which is most of what makes a
remote hop cheap. Failures come back as responses (502 unreachable, 504 timed
out, 508 too deep), never as exceptions, because a workflow step or
``call_function`` must be able to answer its own caller with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fusion.calls import (
    call_depth,
    env_url,
    hop_headers,
    loop_detected,
    nuclio_default_url,
    timed_out,
)
from runtime.events import RawEvent
from runtime.responses import RawResponse, error_response

if TYPE_CHECKING:  # aiohttp's client (~0.1 s to import) is loaded at the first remote call
    import aiohttp
    from yarl import URL

# Hop-by-hop headers (RFC 9110 7.6.1) and those the client library writes itself from
# the request it sends: forwarding them would describe the wrong connection or body.
_REQUEST_DROP = frozenset({
    "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "trailer", "upgrade", "proxy-connection", "proxy-authorization", "content-type",
    "accept-encoding", "expect",
})
# Response headers the callee's server wrote, not its handler: dropped so that a remote
# call's headers equal what the same handler gives in-process.
_RESPONSE_DROP = frozenset({
    "content-length", "connection", "keep-alive", "transfer-encoding", "content-type",
    "date", "server", "content-encoding",
})
# Connections kept per processor at most; calls beyond wait for one (a bounded pool).
CONNECTION_LIMIT = 256


def _query(fields: dict[str, Any]) -> dict[str, str]:
    """The query string of an HTTP event (the http trigger keeps it in ``fields``);
    non-scalar fields of other trigger kinds have no query form and are left out."""
    return {str(k): str(v) for k, v in fields.items()
            if isinstance(v, str | int | float) and not isinstance(v, bool)}


def _reason(exc: BaseException) -> str:
    """Why a connection failed, without the URL (it may carry credentials)."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return str(os_error.strerror)
    return type(exc).__name__


class RemoteCaller:
    """``fusion.calls.Caller`` over HTTP to functions hosted by other processors."""

    def __init__(self, addresses: dict[str, str], namespace: str,
                 max_depth: int | None = None) -> None:
        """``max_depth``: refuse (508) calls deeper than this; None leaves the check to the
        caller in front (the processor's, which knows the configured limit)."""
        self._addresses = dict(addresses)
        self._namespace = namespace
        self._max_depth = max_depth
        self._session: aiohttp.ClientSession | None = None

    def base_url(self, name: str) -> str:
        """Where ``name`` is served: the address map, the environment, or Nuclio's default."""
        return self._addresses.get(name) or env_url(name) or \
            nuclio_default_url(name, self._namespace)

    def knows(self, name: str) -> bool:
        """Whether an address was configured for ``name`` (map or environment): Nuclio's
        default service name is a guess, so a config check should not rely on it."""
        return bool(self._addresses.get(name) or env_url(name))

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: it belongs to the running loop, which __init__ may precede.
        if self._session is None or self._session.closed:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def request_headers(self, name: str, event: RawEvent) -> dict[str, str]:
        """The event's headers for the next hop: child traceparent, depth + 1, target."""
        headers = {k: str(v) for k, v in hop_headers(name, event.headers).items()
                   if k.lower() not in _REQUEST_DROP}
        if event.content_type:
            headers["Content-Type"] = event.content_type
        return headers

    def url(self, name: str, event: RawEvent) -> URL:
        from yarl import URL

        path = event.path if event.path.startswith("/") else f"/{event.path}"
        base = URL(self.base_url(name).rstrip("/") + path)
        query = _query(event.fields or {})
        return base.update_query(query) if query else base

    async def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        if self._max_depth is not None and call_depth(event.headers) + 1 > self._max_depth:
            return loop_detected(name, self._max_depth)
        try:
            url = self.url(name, event)
        except ValueError as exc:
            return error_response(502, f"function {name!r} has an invalid address: "
                                       f"{type(exc).__name__}")
        headers = self.request_headers(name, event)
        if url.user is not None:
            # Credentials in the address are for the callee; the client's are not (and
            # aiohttp refuses both at once).
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        session = self._open()
        import aiohttp

        try:
            async with session.request(
                    event.method or "POST", url, data=event.body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False) as reply:
                body = await reply.read()
                return RawResponse(reply.status, _response_headers(reply.headers), body,
                                   reply.headers.get("Content-Type", ""))
        except TimeoutError:
            return timed_out(name, timeout)
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: bad header
            host = f"{url.host}:{url.port}" if url.host else "?"
            return error_response(502, f"function {name!r} is unreachable at {host}: "
                                       f"{_reason(exc)}")

    async def close(self) -> None:
        """Closes the kept-alive connections (the processor calls it at shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _response_headers(headers: Any) -> dict[str, str]:
    """The callee handler's headers; repeated ones joined as HTTP allows (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower() in _RESPONSE_DROP:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out
