"""The process-worker framing and the logger's fast path."""

from runtime.logger import DEBUG, INFO, LogCapture, Logger
from runtime.workers import wire


def test_decoder_handles_split_and_joined_frames():
    frames = [wire.encode(("event", i, b"x" * i)) for i in range(50)]
    stream = b"".join(frames)
    decoder = wire.Decoder()
    seen = []
    for start in range(0, len(stream), 7):  # awkward chunk size
        seen += decoder.feed(stream[start:start + 7])
    assert seen == [("event", i, b"x" * i) for i in range(50)]
    assert wire.Decoder().feed(frames[3]) == [("event", 3, b"xxx")]


def test_logger_skips_below_level_and_captures_on_request():
    lines = []
    logger = Logger("fn", INFO, sink=lines.append)
    logger.debug("hidden %s", "x")
    assert lines == []
    logger.info_with("shown %d", 1, key="v")
    assert '"message": "shown 1"' in lines[0] and '"key": "v"' in lines[0]
    with LogCapture(DEBUG) as capture:
        logger.debug("captured only")
    assert [r["message"] for r in capture.records] == ["captured only"]
    assert len(lines) == 1  # captured debug lines do not reach stdout at info level


def test_text_format():
    lines = []
    Logger("processor", INFO, "text", worker_id="2", sink=lines.append).warn("careful")
    assert "WARN" in lines[0] and "processor [w2]: careful" in lines[0]
