"""ext_proc messages -> exchange state -> events, without Envoy."""

from __future__ import annotations

import gzip
import zlib

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from core.http_body import BadEncoding, BodyTooLarge, inflate
from triggers.extproc.events import BUFFERED, Exchange, header_dict


def test_header_dict_reads_raw_value_then_value():
    message = pb.HttpHeaders()
    message.headers.headers.add(key="a", raw_value=b"raw")
    message.headers.headers.add(key="b", value="plain")
    assert header_dict(message.headers) == {"a": "raw", "b": "plain"}


def request_exchange(decompress: bool = True, **headers: str) -> Exchange:
    ex = Exchange(BUFFERED, BUFFERED)
    base = {":method": "POST", ":path": "/p/q?x=1&y=", ":authority": "example.com",
            "x-request-id": "rid", "content-type": "Text/Plain"}
    ex.on_request_headers({**base, **headers}, decompress, "x-request-id")
    return ex


def test_request_event_fields_path_and_pseudo_headers():
    ex = request_exchange()
    event = ex.event("2", b"body", "ep", 100)
    assert (event.method, event.path, event.url) == ("POST", "/p/q", "/p/q?x=1&y=")
    assert event.fields == {"x": "1", "y": "", "request_id": "rid"}
    assert event.headers["host"] == "example.com"
    assert not any(k.startswith(":") for k in event.headers)
    assert event.headers["processing-phase"] == "2"
    assert (event.content_type, event.body, event.trigger_kind) == ("Text/Plain", b"body",
                                                                    "extproc")


def test_response_event_carries_request_and_upstream_status():
    ex = request_exchange()
    ex.on_response_headers({":status": "404", "content-type": "application/json"}, True)
    event = ex.event("4", b"", "ep", 100)
    assert (event.method, event.path) == ("POST", "/p/q")
    assert event.fields["upstream_status"] == 404
    assert event.fields["request_id"] == "rid"
    assert event.headers == {"content-type": "application/json", "processing-phase": "4"}
    assert "upstream_status" not in ex.fields  # the request's fields are not changed


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_are_decoded_with_headers_fixed(encoding, encode):
    ex = request_exchange(**{"content-encoding": encoding})
    event = ex.event("2", encode(b"hello " * 10), "ep", 1000)
    assert event.body == b"hello " * 10
    assert "content-encoding" not in event.headers
    assert event.headers["content-length"] == "60"
    untouched = request_exchange(decompress=False, **{"content-encoding": encoding})
    assert untouched.event("2", encode(b"x"), "ep", 1000).body == encode(b"x")


def test_inflate_bounds_and_errors():
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b"\0" * 10_000), "gzip", 1000)
    with pytest.raises(BadEncoding):
        inflate(b"not gzip", "gzip", 1000)
    with pytest.raises(BadEncoding):
        inflate(gzip.compress(b"hello")[:-8], "gzip", 1000)  # truncated
    assert inflate(gzip.compress(b"a" * 1000), "gzip", 1000) == b"a" * 1000  # exactly the limit


def test_direction_accumulates_up_to_the_limit():
    ex = request_exchange()
    ex.request.add_chunk(b"abc", 6)
    ex.request.add_chunk(b"def", 6)
    with pytest.raises(BodyTooLarge):
        ex.request.add_chunk(b"g", 6)
    ex.request.discard()
    assert (ex.request.chunks, ex.request.discarded) == ([], True)
    fresh = request_exchange()
    fresh.request.add_chunk(b"abc", 6)
    fresh.request.add_chunk(b"de", 6)
    assert fresh.request.take_body() == b"abcde"
    assert fresh.request.size == 0


def test_content_type_is_found_whatever_the_key_case():
    ex = Exchange(BUFFERED, BUFFERED)
    ex.on_request_headers({":method": "POST", ":path": "/", "Content-Type": "text/csv"}, True,
                          "x-request-id")
    assert ex.event("2", b"a,b", "ep", 100).content_type == "text/csv"
