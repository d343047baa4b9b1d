"""The MJPEG multipart parser against what real cameras send: every quirk, every way of
splitting the bytes, and damage of every kind."""

from __future__ import annotations

import random

import pytest

from media.multipart import (
    BAD_HEADERS,
    CORRUPT,
    GARBAGE,
    NOT_JPEG,
    OVERSIZE,
    TRUNCATED,
    MultipartParser,
    boundary_from_content_type,
)
from test.mjpeg_support import encode_jpegs, part

JPEGS = encode_jpegs(12)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """The JPEG with an EXIF-like APP1 segment holding a whole JPEG (and so an EOI)."""
    return jpeg[:2] + segment(0xE1, b"Exif\x00\x00" + thumbnail) + jpeg[2:]


# A hand-made JPEG whose entropy-coded data holds stuffed bytes, restart markers and fill
# bytes: none of them ends the image.
SYNTHETIC = (b"\xff\xd8" + segment(0xDB, bytes(65)) + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
             + b"\x12\xff\x00\x34\xff\xd0\x56\xff\xff\xd1\x78\xff\x00" + b"\xff\xd9")


def feed_all(parser: MultipartParser, data: bytes, sizes: list[int] | None = None
             ) -> list[bytes]:
    out: list[bytes] = []
    if sizes is None:
        out += parser.feed(data)
        return out
    pos = 0
    for size in sizes:
        out += parser.feed(data[pos:pos + size])
        pos += size
    out += parser.feed(data[pos:])
    return out


def ffmpeg_stream(jpegs: list[bytes]) -> bytes:
    """ffmpeg's mpjpeg wire format: note its header case."""
    return b"".join(b"--ffmpeg\r\nContent-type: image/jpeg\r\nContent-length: "
                    + str(len(j)).encode() + b"\r\n\r\n" + j + b"\r\n" for j in jpegs)


@pytest.mark.parametrize(("content_type", "expected"), [
    ("multipart/x-mixed-replace;boundary=ffmpeg", b"ffmpeg"),
    ("multipart/x-mixed-replace; boundary=\"--myboundary\"", b"myboundary"),
    ("multipart/x-mixed-replace; BOUNDARY=abc; charset=utf-8", b"abc"),
    ("Multipart/X-Mixed-Replace; Boundary = 'q1'", b"q1"),
    ("multipart/x-mixed-replace;boundary=--frame,other", b"frame"),
    ("multipart/x-mixed-replace", None),
    ("application/octet-stream", None),
    ("multipart/x-mixed-replace; boundary=--", None),
])
def test_boundary_from_the_content_type(content_type: str, expected: bytes | None) -> None:
    assert boundary_from_content_type(content_type) == expected


def test_ffmpeg_stream_split_at_every_byte() -> None:
    data = ffmpeg_stream(JPEGS[:3])
    parser = MultipartParser(b"ffmpeg")
    assert feed_all(parser, data, [1] * len(data)) == JPEGS[:3]
    assert parser.bad == {}


def test_random_chunking_never_changes_the_frames() -> None:
    data = ffmpeg_stream(JPEGS) + b"".join(part(j, length=False) for j in JPEGS)
    rng = random.Random(3)
    for _ in range(30):
        parser = MultipartParser(None)  # the boundary changes midway: learned from the body
        parser.boundary = b"ffmpeg"
        sizes = [rng.randint(1, 3000) for _ in range(len(data) // 500)]
        frames = feed_all(parser, data, sizes)
        # The second half uses another boundary, so after the switch nothing matches.
        assert frames[:len(JPEGS)] == JPEGS


@pytest.mark.parametrize("length", [True, False])
def test_a_frame_is_returned_as_soon_as_its_last_byte_arrives(length: bool) -> None:
    parser = MultipartParser(b"frame")
    one = part(JPEGS[0], length=length)
    jpeg_end = one.index(JPEGS[0]) + len(JPEGS[0])
    assert parser.feed(one[:jpeg_end - 1]) == []
    assert parser.feed(one[jpeg_end - 1:jpeg_end]) == [JPEGS[0]]  # no wait for a boundary


def test_parts_without_content_length_use_the_jpeg_structure() -> None:
    thumbed = with_thumbnail(JPEGS[1], JPEGS[2])
    data = b"".join(part(j, length=False) for j in (JPEGS[0], thumbed, SYNTHETIC, JPEGS[3]))
    parser = MultipartParser(b"frame")
    assert feed_all(parser, data, [7] * (len(data) // 7)) == [JPEGS[0], thumbed, SYNTHETIC,
                                                               JPEGS[3]]
    assert parser.bad == {}


def test_quoted_dashed_boundary_odd_header_case_and_bare_newlines() -> None:
    parser = MultipartParser(boundary_from_content_type(
        'multipart/x-mixed-replace; Boundary="--myboundary"'))
    data = (b"\r\n" + part(JPEGS[0], boundary=b"myboundary", header_case="CONTENT-TYPE")
            + part(JPEGS[1], boundary=b"myboundary", eol=b"\n", length=False)
            + part(JPEGS[2], boundary=b"----myboundary")  # more dashes than it should
            + b"--myboundary--\r\n")
    assert feed_all(parser, data) == JPEGS[:3]
    assert parser.bad == {}


def test_delimiter_lines_without_dashes() -> None:
    parser = MultipartParser(b"frame")
    data = b"frame\r\nContent-Type: image/jpeg\r\n\r\n" + JPEGS[0] + b"\r\n" + part(JPEGS[1])
    assert feed_all(parser, data) == JPEGS[:2]


def test_no_boundary_in_the_content_type_is_learned_from_the_body() -> None:
    parser = MultipartParser(boundary_from_content_type("application/octet-stream"))
    assert feed_all(parser, ffmpeg_stream(JPEGS[:2]), [5] * 20) == JPEGS[:2]
    assert parser.boundary == b"ffmpeg"


def test_parts_without_headers() -> None:
    parser = MultipartParser(b"frame")
    data = (b"--frame\r\n" + JPEGS[0] + b"\r\n" + b"--frame\r\n\r\n" + JPEGS[1] + b"\r\n"
            + b"--frame\r\nContent-Type: image/jpeg\r\n" + JPEGS[2] + b"\r\n")
    assert feed_all(parser, data) == JPEGS[:3]


def test_garbage_between_parts_is_skipped_and_counted() -> None:
    parser = MultipartParser(b"frame")
    data = (part(JPEGS[0]) + b"garbage from a camera\r\n" + part(JPEGS[1])
            + b"\x00\x01\x02 more" + part(JPEGS[2], length=False))
    assert feed_all(parser, data, [13] * 400) == JPEGS[:3]
    assert parser.bad == {GARBAGE: 2}


def test_a_truncated_part_without_length_is_skipped_and_counted() -> None:
    parser = MultipartParser(b"frame")
    data = part(JPEGS[0][:-300], length=False) + part(JPEGS[1], length=False)
    assert feed_all(parser, data) == [JPEGS[1]]
    assert parser.bad == {TRUNCATED: 1}


def test_a_truncated_part_with_its_short_length_is_skipped_and_counted() -> None:
    parser = MultipartParser(b"frame")
    data = part(JPEGS[0][:-300]) + part(JPEGS[1])
    assert feed_all(parser, data, [100] * 200) == [JPEGS[1]]
    assert parser.bad == {TRUNCATED: 1}


@pytest.mark.parametrize("error", [-10, +25])
def test_a_lying_content_length_does_not_lose_frames(error: int) -> None:
    first = part(JPEGS[0]).replace(f"content-LENGTH: {len(JPEGS[0])}".encode(),
                                   f"content-LENGTH: {len(JPEGS[0]) + error}".encode())
    parser = MultipartParser(b"frame")
    assert feed_all(parser, first + part(JPEGS[1]) + part(JPEGS[2])) == JPEGS[:3]


def test_padding_after_the_end_of_image_is_cut_off() -> None:
    parser = MultipartParser(b"frame")
    assert feed_all(parser, part(JPEGS[0] + b"\x00\x00\r\n")) == [JPEGS[0]]


def test_a_part_that_is_not_a_jpeg_is_skipped_and_counted() -> None:
    parser = MultipartParser(b"frame")
    data = (part(JPEGS[0]) + part(b"<html>oops</html>") + part(b"plain", length=False)
            + part(JPEGS[1]))
    assert feed_all(parser, data) == JPEGS[:2]
    assert parser.bad == {NOT_JPEG: 2}


def test_a_corrupt_jpeg_is_skipped_and_counted() -> None:
    parser = MultipartParser(b"frame")
    corrupt = JPEGS[0][:2] + b"\x00\x00garbage" + JPEGS[0][2:]
    data = part(corrupt, length=False) + part(JPEGS[1], length=False)
    assert feed_all(parser, data) == [JPEGS[1]]
    assert parser.bad == {CORRUPT: 1}


def test_oversized_parts_are_skipped_and_memory_stays_bounded() -> None:
    big = JPEGS[0][:2] + segment(0xFE, bytes(5000)) + JPEGS[0][2:]
    parser = MultipartParser(b"frame", max_part=4096)
    data = part(big, length=False) + part(JPEGS[1], length=False) + part(big) + part(JPEGS[2])
    assert feed_all(parser, data, [512] * 100) == [JPEGS[1], JPEGS[2]]
    assert parser.bad[OVERSIZE] == 2  # a declared length over max_part is scanned: too big too
    assert len(parser._buf) < 3 * 4096


def test_endless_header_block_is_counted() -> None:
    parser = MultipartParser(b"frame")
    data = b"--frame\r\nX-Junk: " + b"a" * 9000 + b"\r\n" + part(JPEGS[0])
    assert feed_all(parser, data, [1000] * 20) == [JPEGS[0]]
    assert parser.bad[BAD_HEADERS] == 1


def test_a_boundary_inside_jpeg_data_that_does_not_open_a_line_is_ignored() -> None:
    tricky = JPEGS[0][:2] + segment(0xFE, b"xxframe\r\nx--frames\r\n") + JPEGS[0][2:]
    parser = MultipartParser(b"frame")
    assert feed_all(parser, part(tricky, length=False) + part(JPEGS[1])) == [tricky, JPEGS[1]]


def test_close_counts_a_part_cut_short_and_the_parser_starts_afresh() -> None:
    parser = MultipartParser(b"frame")
    assert parser.feed(part(JPEGS[0]) + part(JPEGS[1])[:400]) == [JPEGS[0]]
    parser.close()
    assert parser.bad == {TRUNCATED: 1}
    assert parser.feed(part(JPEGS[2])) == [JPEGS[2]]


def test_counts_go_to_a_shared_dict() -> None:
    counts: dict[str, int] = {"busy": 3}
    parser = MultipartParser(b"frame", bad=counts)
    parser.feed(b"junk\r\n" + part(JPEGS[0]))
    assert counts == {"busy": 3, GARBAGE: 1}


def test_random_damage_never_raises_and_good_frames_survive() -> None:
    rng = random.Random(11)
    for _ in range(40):
        pieces, expected = [], []
        for i in range(15):
            jpeg = JPEGS[i % len(JPEGS)]
            roll = rng.random()
            if roll < 0.15:
                pieces.append(rng.randbytes(rng.randint(1, 200)) + b"\r\n")  # garbage
            if roll < 0.25:
                cut = rng.randint(10, len(jpeg) - 10)
                pieces.append(part(jpeg[:cut], length=rng.random() < 0.5))
                continue
            pieces.append(part(jpeg, length=rng.random() < 0.5))
            expected.append(jpeg)
        data = b"".join(pieces)
        parser = MultipartParser(b"frame")
        sizes = [rng.randint(1, 4000) for _ in range(len(data) // 1000 + 1)]
        frames = feed_all(parser, data, sizes)
        # Random garbage right before a part may eat its delimiter line; anything that
        # comes out is a frame that went in, in order.
        it = iter(expected)
        assert all(any(frame == e for e in it) for frame in frames)
        assert len(frames) >= len(expected) - sum(parser.bad.values())
