"""Handler responses -> ext_proc replies, and the trigger's attributes, without Envoy."""

from __future__ import annotations

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from core.config import ConfigError, validate_model
from runtime.responses import RawResponse
from triggers.extproc.config import ExtProcAttributes
from triggers.extproc.mutations import CONTINUE, reply


def parse(data: bytes) -> pb.ProcessingResponse:
    return pb.ProcessingResponse.FromString(data)


def common(message: pb.ProcessingResponse) -> pb.CommonResponse:
    kind = message.WhichOneof("response")
    return getattr(message, kind).response


def set_headers(c: pb.CommonResponse) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in c.header_mutation.set_headers}


def test_nothing_to_change_is_the_prebuilt_continue():
    assert reply("1", RawResponse(200, {}, b"", "text/plain")) is CONTINUE["1"]
    assert reply("5", RawResponse(200, {}, b"", "text/plain")) is CONTINUE["5"]


def test_seed_processing_status_header_answers_at_once_with_that_status():
    message = parse(reply("1", RawResponse(200, {"X-Processing-Status": "403"}, b"no",
                                           "text/plain")))
    assert message.WhichOneof("response") == "immediate_response"
    assert message.immediate_response.status.code == 403
    assert message.immediate_response.body == b"no"
    keys = [h.header.key for h in message.immediate_response.headers.set_headers]
    assert "x-processing-status" not in keys


def test_headers_set_lower_cased_and_removed_by_marker():
    c = common(parse(reply("1", RawResponse(200, {"X-A": "1", "X-Nuclio-Remove-Headers":
                                                  "X-B, x-c"}, b"ignored", "text/plain"))))
    assert set_headers(c) == {"x-a": "1"}
    assert list(c.header_mutation.remove_headers) == ["x-b", "x-c"]
    assert not c.HasField("body_mutation")  # a headers phase never changes the body


def test_new_body_fixes_length_type_and_encoding():
    c = common(parse(reply("2", RawResponse(200, {}, b"new!", "application/json"),
                           decompressed=True)))
    assert c.body_mutation.body == b"new!"
    assert set_headers(c) == {"content-type": "application/json", "content-length": "4"}
    assert list(c.header_mutation.remove_headers) == ["content-encoding"]


def test_streamed_bodies_send_the_held_original_without_length():
    c = common(parse(reply("2", RawResponse(200, {}, b"", "text/plain"), original=b"held",
                           length_known=False)))
    assert c.body_mutation.body == b"held"
    assert "content-length" not in set_headers(c)


@pytest.mark.parametrize(("phase", "status", "immediate"), [
    ("1", 403, True), ("2", 201, True), ("1", 200, False), ("4", 404, False),
    ("5", 500, True), ("4", 503, True)])
def test_which_statuses_answer_the_client_at_once(phase, status, immediate):
    message = parse(reply(phase, RawResponse(status, {"x": "y"}, b"body", "text/plain")))
    assert (message.WhichOneof("response") == "immediate_response") is immediate
    if immediate:
        answer = message.immediate_response
        assert (answer.status.code, answer.body) == (status, b"body")
        assert {h.header.key for h in answer.headers.set_headers} == {"x", "content-type"}
    elif phase == "4":
        assert set_headers(common(message))[":status"] == str(status)


def test_marker_makes_a_200_immediate_and_never_travels():
    message = parse(reply("2", RawResponse(200, {"X-Nuclio-Immediate-Response": "true"},
                                           b"ok", "text/plain")))
    answer = message.immediate_response
    assert answer.status.code == 200
    assert {h.header.key for h in answer.headers.set_headers} == {"content-type"}
    not_marked = parse(reply("1", RawResponse(200, {"X-Nuclio-Immediate-Response": "false"},
                                              b"", "text/plain")))
    assert not_marked.WhichOneof("response") == "request_headers"


def test_processing_options_each_default_on_their_own():
    attrs = ExtProcAttributes.model_validate(
        {"type": "preprocessor", "port": 1, "processingOptions": {"logStream": True}})
    options = attrs.processingOptions
    assert options.logStream is True
    assert (options.decompressBodies, options.bufferStreamedBodies, options.logPhases,
            options.requestIdHeaderName, options.perRequestBodyBufferBytes) == \
        (True, True, False, "x-request-id", 4 << 20)
    assert (attrs.gracefulShutdownTimeout, attrs.maxConcurrentStreams, attrs.failOpen) == \
        (15.0, 100, True)
    assert ExtProcAttributes.model_validate(
        {"type": "wrapprocessor", "port": 1, "gracefulShutdownTimeout": "1m30s"}
    ).gracefulShutdownTimeout == 90.0


def test_unknown_processing_option_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"attributes\.processingOptions\.decompressBody"):
        validate_model(ExtProcAttributes, {"type": "preprocessor", "port": 1,
                                           "processingOptions": {"decompressBody": False}},
                       "spec.triggers.ep.attributes")
