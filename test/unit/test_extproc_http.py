"""Envoy's JSON ext_proc messages and our JSON replies (the HTTP transport), without Envoy."""

from __future__ import annotations

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import json_format

from runtime.responses import RawResponse
from triggers.extproc.http_transport import parse_message, to_json
from triggers.extproc.mutations import CONTINUE, reply


def test_headers_from_raw_values_or_plain_values_and_the_end_flag():
    phase, headers, end = parse_message(
        b'{"response_headers": {"headers": {"headers": [{"key": ":status", "raw_value": "MjA0"},'
        b' {"key": "x-plain", "value": "v"}]}, "end_of_stream": true}}')
    assert (phase, headers, end) == ("response_headers", {":status": "204", "x-plain": "v"},
                                     True)
    assert parse_message(b'{"request_headers": {}}') == ("request_headers", {}, False)


@pytest.mark.parametrize(("body", "words"), [
    (b"nope", "not JSON"),
    (b'"a string"', "not a JSON ProcessingRequest"),
    (b'{"request_trailers": {}}', "request_headers or response_headers"),
    (b'{"request_headers": []}', "request_headers is not an object"),
    (b'{"request_headers": {"headers": {"headers": "x"}}}', "not a list"),
    (b'{"request_headers": {"headers": {"headers": [{"key": "a", "raw_value": "!"}]}}}',
     "key, raw_value|value"),
])
def test_malformed_messages_say_what_is_wrong(body, words):
    with pytest.raises(ValueError, match=words):
        parse_message(body)


def test_plain_continue_comes_from_the_table():
    assert to_json(CONTINUE["1"]) == b'{"request_headers":{}}'
    assert to_json(CONTINUE["4"]) is to_json(CONTINUE["4"])


def test_a_mutation_reads_back_as_the_same_processing_response():
    data = reply("1", RawResponse(200, {"X-A": "1", "x-nuclio-remove-headers": "x-b"}, b"",
                                  "text/plain"))
    parsed = json_format.Parse(to_json(data), pb.ProcessingResponse())
    assert parsed == pb.ProcessingResponse.FromString(data)
    immediate = reply("1", RawResponse(403, {}, b"\x00binary", "application/octet-stream"))
    parsed = json_format.Parse(to_json(immediate), pb.ProcessingResponse())
    assert parsed.immediate_response.body == b"\x00binary"
