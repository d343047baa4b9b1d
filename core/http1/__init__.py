"""A lean HTTP/1.1 server (httptools on asyncio) for function calls: whole requests in,
whole replies out. See server.py for why and what a client sees."""

from core.http1.message import (
    Reply,
    Request,
    StreamReply,
    check_headers,
    error_reply,
    json_reply,
    text_reply,
)
from core.http1.server import HTTP1Server

__all__ = ["HTTP1Server", "Reply", "Request", "StreamReply", "check_headers", "error_reply",
           "json_reply", "text_reply"]
