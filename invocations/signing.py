"""The callback's optional HMAC signature.

``X-Signature: sha256=<hex>`` where ``<hex>`` is the lower-case hex digest of
HMAC-SHA256 with the configured secret over exactly::

    <X-Call-Id value, UTF-8> "\\n" <callback body bytes>

(the call id binds the signature to one call, so a body cannot be replayed as the
result of another call). Receivers compare with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac


def signed_input(call_id: str, body: bytes) -> bytes:
    return call_id.encode() + b"\n" + body


def signature(secret: bytes, call_id: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, signed_input(call_id, body), hashlib.sha256).hexdigest()


def verify(secret: bytes, call_id: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, call_id, body), header)
