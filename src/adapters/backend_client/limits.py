"""The bounds every upstream adapter holds an answer to, whichever HTTP library reads it.

An upstream is outside the gateway's control: its header section, its body and its interim
answers are all bytes someone else decides. Each adapter applies the same ``UpstreamLimits`` and
reports a breach as ``UpstreamBadAnswer`` (a 502 for the client, a failure for the breaker, never
retried), so switching ``UPSTREAM_CLIENT`` changes no answer a client can see.

Server-sent events (``Content-Type: text/event-stream``) are the one kind of answer no adapter
buffers: each event must reach the client when the upstream writes it, not when 64 KiB of them
have piled up. Such an answer is handed over as soon as its head is parsed, its body streamed
piece by piece; the attempt's timeout bounds only the wait for the head (an event stream may
last for hours), and ``stream_idle_timeout_seconds`` bounds the silence between two pieces.
``max_body_bytes`` holds for them as for any body.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import UpstreamBadAnswer


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """How much of an upstream's answer the gateway accepts, and how much it holds at once."""

    max_header_bytes: int = 64 * 1024
    """The header section, status line and interim ``1xx`` answers included."""
    max_headers: int = 100
    """Header fields in one answer."""
    max_body_bytes: int = 100 * 1024 * 1024
    """The body; a longer ``Content-Length`` is refused before any byte of it is read."""
    buffer_bytes: int = 64 * 1024
    """Answers up to this size are held whole (and can be retried); larger ones are streamed."""
    max_interim_answers: int = 5
    """``1xx`` answers (``100 Continue``, ``102``, ``103``) before the final one."""
    stream_high_water_bytes: int = 256 * 1024
    """While streaming: past this much unread by the client, reading from the upstream pauses."""
    stream_idle_timeout_seconds: float = 300.0
    """An event stream silent longer than this between two pieces is cut (``UpstreamTimeout``).
    Other streamed bodies are held to the attempt's timeout between pieces instead."""

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_body_bytes", "buffer_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.stream_idle_timeout_seconds > 0:  # NaN is refused too
            raise ValueError("stream_idle_timeout_seconds must be more than 0")

    @staticmethod
    def is_event_stream(content_type: str) -> bool:
        """Whether a ``Content-Type`` value is ``text/event-stream``, in any case, with or
        without parameters (``text/event-stream; charset=utf-8``)."""
        media = content_type.partition(";")[0].strip()
        return len(media) == 17 and media.lower() == "text/event-stream"

    def check_status(self, status: int) -> None:
        """Refuse a final status no client may be given: outside 100-599, or ``101``."""
        if status == 101:
            raise UpstreamBadAnswer("the upstream switched protocols (101) without being asked")
        if not 100 <= status <= 599:
            raise UpstreamBadAnswer(f"status {status} is outside 100-599")

    def check_content_length(self, value: str) -> int:
        """The body's declared length, refused when malformed or over ``max_body_bytes``."""
        text = value.strip()
        if not text.isdigit() or not text.isascii():
            raise UpstreamBadAnswer(f"malformed Content-Length {value[:40]!r}")
        length = int(text)
        if length > self.max_body_bytes:
            raise UpstreamBadAnswer(
                f"Content-Length {length} is over the limit of {self.max_body_bytes} bytes"
            )
        return length

    @staticmethod
    def check_transfer_encoding(value: str) -> None:
        """Only ``chunked``, once: any other coding (which the gateway would strip as hop-by-hop
        and so pass on a body the client cannot decode) or ``chunked`` twice is refused."""
        if value.strip().lower() != "chunked":
            raise UpstreamBadAnswer(f"Transfer-Encoding {value[:40]!r} is not chunked")

    @staticmethod
    def trailing_bytes() -> UpstreamBadAnswer:
        return UpstreamBadAnswer("the upstream sent bytes after its answer")

    def body_too_large(self) -> UpstreamBadAnswer:
        return UpstreamBadAnswer(f"the body is over the limit of {self.max_body_bytes} bytes")

    def head_too_large(self) -> UpstreamBadAnswer:
        return UpstreamBadAnswer(
            f"the header section is over the limit of {self.max_header_bytes} bytes"
        )

    def too_many_headers(self) -> UpstreamBadAnswer:
        return UpstreamBadAnswer(f"more than {self.max_headers} header fields")

    def too_many_interim(self) -> UpstreamBadAnswer:
        return UpstreamBadAnswer(
            f"more than {self.max_interim_answers} interim (1xx) answers before the final one"
        )
