"""Handler output conversion (the table in DESIGN.md section 3)."""

import json

import nuclio_sdk
import pytest

from runtime.events import RawEvent, decode_body, is_json_content_type, to_nuclio_event
from runtime.responses import convert_batch_output, convert_output


@pytest.mark.parametrize(("output", "status", "body", "ctype"), [
    ("hi", 200, b"hi", "text/plain"),
    (b"\x00", 200, b"\x00", "application/octet-stream"),
    ({"a": 1}, 200, b'{"a":1}', "application/json"),
    ([1, 2], 200, b"[1,2]", "application/json"),
    (None, 200, b"", "text/plain"),
    ((201, "made"), 201, b"made", "text/plain"),
    ((400, {"e": 1}), 400, b'{"e":1}', "application/json"),
    (7, 200, b"7", "text/plain"),
    (nuclio_sdk.Response(body={"x": 1}), 200, b'{"x":1}', "application/json"),
    (nuclio_sdk.Response(body="t", content_type="text/html", status_code=404), 404, b"t",
     "text/html"),
])
def test_conversion_table(output, status, body, ctype):
    response = convert_output(output, "id-1")
    assert (response.status, response.body, response.content_type) == (status, body, ctype)
    assert response.event_id == "id-1"


def test_header_values_are_kept_as_text():
    response = convert_output(nuclio_sdk.Response(body="", headers={"n": 1, "f": 2.5,
                                                                     "none": None}))
    assert response.headers == {"n": "1", "f": "2.5"}


def test_batch_responses_are_matched_by_event_id():
    out = [nuclio_sdk.Response(body="for-b", event_id="b"),
           nuclio_sdk.Response(body="for-a", event_id="a")]
    responses = convert_batch_output(out, ["a", "b", "c"])
    assert [r.body for r in responses[:2]] == [b"for-a", b"for-b"]
    assert responses[2].status == 500
    assert "no response" in json.loads(responses[2].body)["error"]


def test_json_detection_tolerates_parameters():
    assert is_json_content_type("application/json; charset=utf-8")
    assert is_json_content_type("Application/JSON")
    assert not is_json_content_type("text/plain")
    assert decode_body(b'{"a": 1}', "application/json;charset=UTF-8") == {"a": 1}
    assert decode_body(b"{bad", "application/json") == b"{bad"


def test_nuclio_event_fields():
    raw = RawEvent("id", b"body", "text/plain", {"X-A": "1"}, {"q": "v"}, "PUT", "/p",
                   "/p?q=v", 0.0, "http", "web")
    event = to_nuclio_event(raw)
    assert (event.id, event.body, event.method, event.path, event.url) == \
        ("id", b"body", "PUT", "/p", "/p?q=v")
    assert event.get_header("x-a") == "1"
    assert (event.trigger.kind, event.trigger.name) == ("http", "web")
    assert event.timestamp.year == 1970 and event.size == 4
