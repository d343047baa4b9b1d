"""An incremental ``multipart/x-mixed-replace`` parser for MJPEG cameras, as they really are.

Feed it the body's bytes as they arrive; it returns each complete JPEG at once
(never waiting for the next part's boundary, which a camera only sends with the
next frame). What it copes with, because cameras do all of it:

- the boundary quoted or not, with or without a leading ``--``, in any
  parameter case; missing from the Content-Type (then the first ``--line`` of
  the body names it); delimiter lines with two dashes, more, or none;
- header names in any case, ``\\n`` or ``\\r\\n`` line ends, no headers at all;
- parts with a Content-Length (trusted only when the bytes it spans form a JPEG)
  or without one: the JPEG's own structure says where it ends. Its segments are
  walked by their lengths (so a thumbnail inside EXIF does not end it early) and
  its entropy-coded data is scanned for the next real marker;
- garbage between parts, truncated or corrupt JPEGs, oversized parts: each bad
  part is skipped and counted (``bad``, by reason), and parsing resumes at the
  next boundary.
"""

from __future__ import annotations

import re

DEFAULT_MAX_PART = 16 << 20
_MAX_HEADERS = 8 << 10
_SOI = b"\xff\xd8"
# A header line "Content-Length: N" in any case; a malformed value counts as absent.
_CONTENT_LENGTH = re.compile(
    rb"(?<![^\n])[ \t]*content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?(?:\n|$)", re.I)
_BOUNDARY_PARAM = re.compile(r"""boundary\s*=\s*(?:"([^"]*)"|'([^']*)'|([^;,\s]+))""", re.I)

# Bad-part reasons (metric label values).
TRUNCATED = "truncated"      # the next boundary came before the JPEG ended
CORRUPT = "corrupt"          # the bytes do not follow JPEG's structure
NOT_JPEG = "not_jpeg"        # the part does not start with a JPEG start-of-image
OVERSIZE = "oversize"        # larger than max_part bytes
BAD_HEADERS = "bad_headers"  # no end of the header block within 8 KiB
GARBAGE = "garbage"          # bytes between parts that are not a part


def boundary_from_content_type(content_type: str) -> bytes | None:
    """The boundary token (without leading dashes) named by a Content-Type, if any."""
    match = _BOUNDARY_PARAM.search(content_type)
    if match is None:
        return None
    value = next(group for group in match.groups() if group is not None).strip()
    value = value.lstrip("-")
    return value.encode("latin-1") if value else None


class _JpegEnd:
    """Finds where a JPEG ends, resuming where the last call stopped (bytes arrive in
    pieces). Raises ValueError when the bytes are not a well-formed JPEG."""

    __slots__ = ("pos", "scanning")

    def __init__(self, start: int) -> None:
        self.pos = start + 2  # past the SOI, checked by the caller
        self.scanning = False  # inside entropy-coded data (after an SOS header)

    def find(self, buf: bytearray, size: int) -> int | None:
        """The index just past the EOI marker, or None when more bytes (than ``buf[:size]``)
        are needed."""
        pos = self.pos
        try:
            while True:
                if self.scanning:
                    i = buf.find(0xFF, pos, size)
                    if i < 0 or i + 1 >= size:
                        pos = size if i < 0 else i
                        return None
                    marker = buf[i + 1]
                    if marker == 0x00 or 0xD0 <= marker <= 0xD7:  # stuffed byte, restart
                        pos = i + 2
                    elif marker == 0xFF:  # fill byte
                        pos = i + 1
                    else:
                        self.scanning = False
                        pos = i
                    continue
                if pos + 1 >= size:
                    return None
                if buf[pos] != 0xFF:
                    raise ValueError("expected a JPEG marker")
                marker = buf[pos + 1]
                if marker == 0xFF:
                    pos += 1
                elif marker == 0xD9:
                    return pos + 2
                elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
                    pos += 2
                elif marker in (0x00, 0xD8):
                    raise ValueError("unexpected JPEG marker")
                else:
                    if pos + 3 >= size:
                        return None
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    if length < 2:
                        raise ValueError("bad JPEG segment length")
                    pos += 2 + length
                    if marker == 0xDA:
                        self.scanning = True
        finally:
            self.pos = pos


def _whole_jpeg_end(buf: bytearray, start: int, end: int) -> int | None:
    """A cheap check that ``buf[start:end]`` is one JPEG: it opens with SOI and closes with
    EOI (allowing a few bytes of padding, which are cut off). Truncated frames fail it."""
    if buf[start:start + 2] != _SOI:
        return None
    tail_start = max(start + 2, end - 16)
    tail = bytes(buf[tail_start:end]).rstrip(b"\r\n\t \x00")
    return tail_start + len(tail) if tail.endswith(b"\xff\xd9") else None


class MultipartParser:
    """Turns a multipart byte stream into JPEG frames; see the module docstring."""

    def __init__(self, boundary: bytes | None, *, max_part: int = DEFAULT_MAX_PART,
                 bad: dict[str, int] | None = None) -> None:
        self.boundary = boundary.lstrip(b"-") if boundary else None
        self.max_part = max_part
        # Bad parts by reason; pass a metric's dict to count straight into it.
        self.bad: dict[str, int] = {} if bad is None else bad
        self._buf = bytearray()
        self._pos = 0  # parse position in _buf (bytes before it are consumed)
        self._searched = 0  # boundary search resumes here (no re-scanning)
        self._state = self._seek
        # The part being read: body start, declared length, JPEG end finder.
        self._body = 0
        self._length: int | None = None
        self._jpeg: _JpegEnd | None = None
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes]:
        """Adds bytes; returns the frames completed by them, in order."""
        buf = self._buf
        if self._pos and self._pos >= len(buf) // 2:
            del buf[:self._pos]
            self._searched = max(0, self._searched - self._pos)
            self._body = max(0, self._body - self._pos)
            if self._jpeg is not None:
                self._jpeg.pos -= self._pos
            self._pos = 0
        buf += data
        frames: list[bytes] = []
        while self._state(frames):
            pass
        return frames

    def close(self) -> None:
        """The stream ended: a part cut short is counted as truncated."""
        if self._state == self._read_body and len(self._buf) > self._body:
            self._count(TRUNCATED)
        self._buf.clear()
        self._pos = self._searched = self._body = 0
        self._state = self._seek
        self._jpeg = None

    def _count(self, reason: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1

    # -- states: each returns True when it made progress and parsing should go on --------
    def _seek(self, frames: list[bytes]) -> bool:
        """Looks for the next delimiter line; what comes before it is skipped."""
        buf, start = self._buf, self._pos
        if self.boundary is None and not self._learn_boundary():
            return False
        found = self._find_delimiter(max(start, self._searched))
        if found is None:
            if len(buf) - start > self.max_part:  # no boundary in sight: keep memory bounded
                if not self._skipping:
                    self._count(GARBAGE)
                self._pos = self._searched = len(buf)
            return False
        delim_start, after = found
        if buf[start:delim_start].strip() and not self._skipping:
            self._count(GARBAGE)
        self._skipping = False
        line_end = buf.find(b"\n", after)
        if line_end < 0:
            self._pos = delim_start  # wait for the rest of the line
            self._searched = delim_start
            return False
        self._pos = self._searched = line_end + 1
        if buf[after:after + 2] == b"--":  # the close delimiter: a part may still follow
            return True
        self._state = self._headers
        return True

    def _learn_boundary(self) -> bool:
        """No boundary in the Content-Type: the first line starting with ``--`` names it."""
        buf = self._buf
        while True:
            nl = buf.find(b"\n", self._pos)
            if nl < 0:
                return False
            line = bytes(buf[self._pos:nl]).strip()
            if line.startswith(b"--") and len(line) > 2:
                self.boundary = line.lstrip(b"-")
                self._searched = self._pos
                return True
            self._pos = nl + 1

    def _find_delimiter(self, frm: int) -> tuple[int, int] | None:
        """The start of the next delimiter line (its dashes included) and the index past
        the boundary token. The token counts when it opens a line (after any dashes), or,
        after garbage that lacks a line end, when it has two dashes and ends its line."""
        buf, token = self._buf, self.boundary
        assert token is not None
        while True:
            i = buf.find(token, frm)
            if i < 0:
                # Keep the tail that may hold the start of a boundary split across reads.
                self._searched = max(frm, len(buf) - len(token) - 2)
                return None
            start = i
            while start > self._pos and buf[start - 1] == 0x2D:  # '-'
                start -= 1
            after = i + len(token)
            if start == self._pos or buf[start - 1] == 0x0A:
                return start, after
            if i - start >= 2:
                follows = buf[after:after + 2]
                if len(follows) < 2 and follows in (b"", b"-", b"\r"):
                    self._searched = start  # cannot tell yet
                    return None
                if follows in (b"\r\n", b"--") or follows[:1] == b"\n":
                    return start, after
            frm = i + 1

    def _headers(self, frames: list[bytes]) -> bool:
        buf, start = self._buf, self._pos
        if buf[start:start + 2] == _SOI:  # no headers at all
            return self._begin_body(start, None)
        if len(buf) - start < 2:
            return False
        if buf[start] in (0x0D, 0x0A):  # an empty header block
            end = start + (2 if buf[start:start + 2] == b"\r\n" else 1)
            return self._begin_body(end, None)
        window = start + _MAX_HEADERS
        # The header block ends at a blank line, or where a line starts with the JPEG's SOI
        # (cameras that leave the blank line out), whichever comes first. The usual CRLF
        # blank line bounds the other searches, which then stay short.
        crlf = buf.find(b"\r\n\r\n", start, window)
        if crlf >= 0:
            window = crlf
        ends = ((crlf, 4), (buf.find(b"\n\n", start, window), 2),
                (buf.find(b"\n\xff\xd8", start, window), 1))
        found = [(i, n) for i, n in ends if i >= 0]
        if not found:
            if len(buf) - start >= _MAX_HEADERS:
                self._count(BAD_HEADERS)
                self._state = self._seek
                self._searched = start
                return True
            return False
        end, sep = min(found)
        match = _CONTENT_LENGTH.search(buf, start, end)  # no copy of the header block
        return self._begin_body(end + sep, int(match.group(1)) if match else None)

    def _begin_body(self, body: int, length: int | None) -> bool:
        self._pos = self._body = body
        self._searched = body
        self._length = length if length is not None and length <= self.max_part else None
        self._jpeg = None
        self._state = self._read_body
        return True

    def _read_body(self, frames: list[bytes]) -> bool:
        buf, body = self._buf, self._body
        # Some cameras put a blank line between the headers and the JPEG.
        while len(buf) > body and buf[body] in (0x0D, 0x0A):
            body += 1
        self._body = body
        if len(buf) - body < 2:
            return False
        if buf[body:body + 2] != _SOI:
            return self._bad(NOT_JPEG)
        length = self._length
        if length is not None:
            if len(buf) - body < length:
                return False
            end = _whole_jpeg_end(buf, body, body + length)
            if end is not None:
                return self._emit(frames, body, end, body + length)
            self._length = None  # the length lied: find the end ourselves
        return self._scan_body(frames)

    def _scan_body(self, frames: list[bytes]) -> bool:
        buf, body = self._buf, self._body
        if self._jpeg is None:
            self._jpeg = _JpegEnd(body)
        # The JPEG must end before the next delimiter, if one has arrived already.
        found = self._find_delimiter(max(self._searched, body))
        limit = len(buf) if found is None else found[0]
        try:
            end = self._jpeg.find(buf, limit)
        except ValueError:
            return self._bad(CORRUPT)
        if end is not None:
            return self._emit(frames, body, end, end)
        if found is not None:
            return self._bad(TRUNCATED)
        if len(buf) - body > self.max_part:
            return self._bad(OVERSIZE)
        return False

    def _emit(self, frames: list[bytes], body: int, end: int, resume: int) -> bool:
        with memoryview(self._buf) as view:  # one copy, not a bytearray slice and another
            frames.append(bytes(view[body:end]))
        self._pos = self._searched = resume
        self._jpeg = None
        self._state = self._seek
        return True

    def _bad(self, reason: str) -> bool:
        """Skips the current part: parsing resumes at the next boundary after its start."""
        self._count(reason)
        self._skipping = True  # its bytes are not counted again as garbage
        self._pos = self._searched = self._body
        self._jpeg = None
        self._state = self._seek
        return True
