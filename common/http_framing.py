"""Where one HTTP/1.x request ends in the bytes read so far, without a thread waiting on a socket.

``common.localserver`` reads every connection in one event loop and hands a request to a worker
only once it is complete (headers and body), so a client that sends slowly, or nothing, never
holds a worker. This module answers the loop's one question: is a whole request in this buffer,
and how long is it? Everything else about the request (its syntax, its headers' meaning) is left
to ``http.server``'s own parser, which the worker runs on exactly these bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True)
class Framed:
    """A complete request: ``size`` bytes of the buffer, and whether the connection must close after it.

    ``close`` is set where the body is not framed by a usable Content-Length (chunked, invalid,
    or over the body limit): the handler answers from the headers alone and the rest of the
    stream cannot be trusted as a next request.
    """

    size: int
    close: bool = False


@dataclass(frozen=True)
class Refused:
    """The buffer can never become an acceptable request: answer ``status`` and close."""

    status: int
    message: str


@dataclass(frozen=True)
class Waiting:
    """Headers complete, body still to come; ``expects_continue``: the client waits for ``100 Continue``."""

    expects_continue: bool = False


def header_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line that ends the header block, or -1 (CRLF or bare LF lines)."""
    ends = [i + 4 for i in (buffer.find(b"\r\n\r\n"),) if i >= 0]
    ends += [i + 2 for i in (buffer.find(b"\n\n"),) if i >= 0]
    ends += [i + 3 for i in (buffer.find(b"\n\r\n"),) if i >= 0]
    return min(ends) if ends else -1


def frame_request(buffer: bytes | bytearray, max_header_bytes: int, max_body_bytes: int) -> Framed | Refused | Waiting | None:
    """What the loop does with ``buffer``: dispatch ``Framed.size`` bytes, refuse, wait for the body, or read on (None)."""
    end = header_end(buffer)
    if end < 0 or end > max_header_bytes:
        if end < 0 and len(buffer) <= max_header_bytes:
            return None
        first_line_end = buffer.find(b"\n", 0, max_header_bytes)
        if first_line_end < 0:
            return Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
        return Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large")
    lengths, chunked, expects_continue = [], False, False
    for line in bytes(buffer[:end]).split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"expect" and value.lower() == b"100-continue":
            expects_continue = True
    if chunked or len(set(lengths)) > 1:
        return Framed(end, close=True)  # the handler refuses it from the headers (411 / 400)
    if not lengths:
        return Framed(end)
    if not lengths[0].isdigit():
        return Framed(end, close=True)  # "bad Content-Length" (400) from the handler
    length = int(lengths[0])
    if length > max_body_bytes:
        return Framed(end, close=True)  # 413 without reading the body
    if len(buffer) < end + length:
        return Waiting(expects_continue)
    return Framed(end + length)


__all__ = ["Framed", "Refused", "Waiting", "frame_request", "header_end"]
