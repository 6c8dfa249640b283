"""The echo upstream itself, over real sockets: what the gateway's tests will take its word for.

If it changed a path's percent-encoding, dropped a header or misread a chunked body, tests of the
gateway built on it would blame the gateway; so each report is checked against what was sent.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httptools
import httpx
import pytest

from tests.integration.conftest import echo_upstream

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with echo_upstream("alpha") as url:
        yield url


def test_echo_reports_the_request_as_received(echo: str) -> None:
    raw_target = b"/a%2Fb/%7Euser?x=%20y"
    url = httpx.URL(echo).copy_with(raw_path=raw_target)
    headers = [("X-Mixed-Case", "One"), ("x-dup", "1"), ("x-dup", "2")]

    response = httpx.request("PUT", url, headers=headers, content=b"caf\xe9 body")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    report = response.json()
    assert report["upstream"] == "alpha"
    assert report["method"] == "PUT"
    assert report["path"] == "/a%2Fb/%7Euser"
    assert report["query"] == "x=%20y"
    sent = [[name, value] for name, value in report["headers"] if name.lower().startswith("x-")]
    assert sent == [["X-Mixed-Case", "One"], ["x-dup", "1"], ["x-dup", "2"]]
    assert ["Content-Length", "9"] in report["headers"]
    assert report["body"] == "café body"
    assert report["body_length"] == 9


def test_each_upstream_of_the_pair_answers_with_its_own_name(
    echo_pair: tuple[str, str],
) -> None:
    alpha, beta = echo_pair

    names = [httpx.get(f"{url}/who").json()["upstream"] for url in (alpha, beta)]

    assert names == ["alpha", "beta"]


class _Responses:
    """httptools callbacks collecting each complete response's status, headers and body."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.complete: list[tuple[int, dict[str, str], bytes]] = []
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.complete.append((self.parser.get_status_code(), self._headers, bytes(self._body)))
        self._headers, self._body = {}, bytearray()


def test_one_connection_carries_a_length_body_then_a_chunked_body(echo: str) -> None:
    address = urlsplit(echo)
    pipelined = (
        b"POST /first HTTP/1.1\r\nHost: echo\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /second HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    responses = _Responses()
    with socket.create_connection((address.hostname, address.port), timeout=2) as sock:
        sock.sendall(pipelined)
        while len(responses.complete) < 2:
            data = sock.recv(65536)
            assert data, "the upstream closed a kept-alive connection"
            responses.parser.feed_data(data)

    reports = [json.loads(body) for _, _, body in responses.complete]
    assert [(r["path"], r["body"]) for r in reports] == [
        ("/first", "hello"),
        ("/second", "abcdefg"),
    ]
    assert all("connection" not in headers for _, headers, _ in responses.complete)


def test_status_and_retry_after_come_from_the_query(echo: str) -> None:
    response = httpx.get(f"{echo}/flaky?status=503&retry_after=7")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["query"] == "status=503&retry_after=7"


def test_count_reports_earlier_requests_by_method_and_reset_zeroes_it(echo: str) -> None:
    with httpx.Client(base_url=echo) as client:
        client.post("/_reset")
        client.get("/one")
        client.get("/two")
        client.delete("/three")

        first = client.get("/_count").json()
        client.post("/_reset")
        after_reset = client.get("/_count").json()

    assert first == {"requests": 3, "by_method": {"GET": 2, "DELETE": 1}}
    assert after_reset == {"requests": 0, "by_method": {}}


def test_sse_events_arrive_one_by_one_spaced_by_the_interval(echo: str) -> None:
    interval = 0.2
    events, arrivals = [], []
    with httpx.stream("GET", f"{echo}/_sse?events=3&interval={interval}") as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                arrivals.append(time.monotonic())

    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["transfer-encoding"] == "chunked"
    assert [event["i"] for event in events] == [0, 1, 2]
    for earlier, later in itertools.pairwise(events):
        assert later["sent_at"] - earlier["sent_at"] >= interval * 0.5
    for earlier_arrival, later_arrival in itertools.pairwise(arrivals):
        assert later_arrival - earlier_arrival >= interval * 0.5


def test_big_sends_the_mebibytes_asked_for(echo: str) -> None:
    response = httpx.get(f"{echo}/_big?mb=2")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(2 * MiB)
    assert len(response.content) == 2 * MiB
