"""Request bodies as HTTP sends them: size limits and content-encodings.

Shared by every server that takes bodies (the aiohttp-based ones, the lean HTTP/1.1
server of the http trigger and front door, ext_proc's buffered bodies), so a body is
refused or decoded the same way whichever protocol brought it. No aiohttp here: the
lean server must not pay for importing it.
"""

from __future__ import annotations

import zlib


class BodyError(Exception):
    """A request body that cannot be taken: the HTTP status to answer with and the
    ``rejected_events`` reason to count it under."""

    status = 400
    reason = "bad_body"


class BodyTooLarge(BodyError):
    """A body (or its decompressed form) is over the configured limit."""

    status = 413
    reason = "body_too_large"

    @classmethod
    def over(cls, limit: int) -> BodyTooLarge:
        """The refusal of a request body (declared, chunked or received) over ``limit``."""
        return cls(f"request body is larger than {limit} bytes")

    @classmethod
    def decompressed(cls, limit: int) -> BodyTooLarge:
        """The refusal of a body whose decompressed form would be over ``limit``."""
        return cls(f"the decompressed body is over {limit} bytes")


class BadEncoding(BodyError):
    """A body does not decompress as its ``content-encoding`` says."""

    status = 400
    reason = "bad_encoding"


# Content-Encoding -> zlib window bits.
DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompresses a whole gzip/deflate body, refusing output over ``limit`` bytes (so a
    small compressed body cannot expand without bound)."""
    decoder = zlib.decompressobj(DECODERS[encoding])
    try:
        out = decoder.decompress(body, limit + 1)
        if len(out) > limit or decoder.unconsumed_tail:
            raise BodyTooLarge.decompressed(limit)
        out += decoder.flush()
    except zlib.error as exc:
        raise BadEncoding(f"the body is not valid {encoding} (content-encoding): {exc}"
                          ) from None
    if not decoder.eof:
        raise BadEncoding(f"the body is truncated {encoding} (content-encoding)")
    return out


def _unbrotli(body: bytes, limit: int) -> bytes:
    """As ``inflate``: output past ``limit`` is never produced, so a small body cannot
    expand without bound (brotli >= 1.1's ``output_buffer_limit``)."""
    try:
        import brotli  # optional, as for aiohttp: only bodies that use it need it
    except ImportError:
        raise BadEncoding("cannot decode content-encoding br: the brotli package is not "
                          "installed") from None
    decoder = brotli.Decompressor()
    try:
        out: bytes = decoder.process(body, output_buffer_limit=limit + 1)
    except brotli.error as exc:
        raise BadEncoding(f"the body is not valid br (content-encoding): {exc}") from None
    if len(out) > limit or not decoder.can_accept_more_data():
        raise BodyTooLarge.decompressed(limit)
    if not decoder.is_finished():
        raise BadEncoding("the body is truncated br (content-encoding)")
    return out


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as its ``Content-Encoding`` (lower-cased) says to read it. Encodings
    nobody here decodes pass through unchanged, as aiohttp passes them."""
    if encoding in DECODERS:
        return inflate(body, encoding, limit)
    if encoding == "br":
        return _unbrotli(body, limit)
    return body
