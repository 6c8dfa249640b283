"""Helpers for integration tests: the app in process, and real processes on free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from dependency_injector import providers

from adapters.backend_client.fake import FakeUpstream
from adapters.clock.fake import FakeClock
from gateway.config import default_config
from gateway.containers import Container, every_upstream
from gateway.settings import GatewaySettings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class InProcessGateway:
    client: httpx.AsyncClient
    clock: FakeClock
    upstream: FakeUpstream
    container: Container


@asynccontextmanager
async def gateway_in_process(
    upstream: FakeUpstream | None = None,
    client_host: str = "203.0.113.1",
    methods: tuple[str, ...] = ("GET",),
    **settings: object,
) -> AsyncIterator[InProcessGateway]:
    """The real app and wiring, with a fake clock and a scripted upstream."""
    clock = FakeClock()
    upstream = upstream or FakeUpstream()
    container = Container()
    gateway_settings = GatewaySettings(_env_file=None, **settings)  # type: ignore[arg-type]
    container.settings.override(providers.Object(gateway_settings))
    container.config.override(providers.Object(default_config(gateway_settings, methods)))
    container.clock.override(providers.Object(clock))
    container.upstream_factory.override(providers.Object(every_upstream(upstream)))
    app = container.app()
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield InProcessGateway(client, clock, upstream, container)


@dataclass
class Service:
    url: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


@contextmanager
def service(
    command: str,
    env: dict[str, str],
    log_dir: Path,
    port: int | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Service]:
    """Start one console script on a free port; stop it with SIGTERM afterwards."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"{command}-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / command), "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,
        )
    try:
        wait_healthy(url, process)
        yield Service(url, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def upstream_module(module: str, *arguments: str) -> Iterator[str]:
    """A test upstream from ``tests/integration`` run as its own process on a free port.

    Yields its base URL once the port accepts connections; terminates it afterwards.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.integration.{module}", "--port", str(port), *arguments],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def hostile_upstream() -> Iterator[str]:
    """``tests/integration/hostile_upstream.py`` as its own process; its base URL."""
    with upstream_module("hostile_upstream") as url:
        yield url


@contextmanager
def echo_upstream(name: str) -> Iterator[str]:
    """``tests/integration/echo_upstream.py`` answering as ``name``; its base URL."""
    with upstream_module("echo_upstream", "--name", name) as url:
        yield url


@pytest.fixture
def echo_pair() -> Iterator[tuple[str, str]]:
    """Two echo upstreams, "alpha" and "beta", fresh for each test (so their counts start at 0)."""
    with echo_upstream("alpha") as alpha, echo_upstream("beta") as beta:
        yield alpha, beta


@pytest.fixture
def pair(tmp_path: Path) -> Callable[..., object]:
    """Start the flaky backend and the gateway in front of it as real processes."""

    @contextmanager
    def start(
        backend_env: dict[str, str] | None = None, **gateway_env: str
    ) -> Iterator[tuple[Service, Service]]:
        backend_settings = {"FLAKY_FAILURE_RATE": "0", "FLAKY_SLOW_RATE": "0"}
        backend_settings.update(backend_env or {})
        with service("flaky-backend", backend_settings, tmp_path) as backend:
            env = {"BACKEND_URL": backend.url, **gateway_env}
            with service("resilient-gateway", env, tmp_path) as gateway:
                yield gateway, backend

    return start


# --- Redis for the Redis-adapter tests ----------------------------------------------------------
# With REDIS_URL set, that server must answer (CI sets it; a silent fallback would hide a broken
# setup). Without it, a private redis-server is started on a free port when the binary is there,
# else a fakeredis server with Lua support (the last resort: its threaded TCP server is slower
# and less faithful under concurrent load). Either way every test talks to Redis over a socket.


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as error:
            pytest.fail(f"REDIS_URL={url} does not answer: {error}")
        yield url
        return
    binary = shutil.which("redis-server")
    if binary:
        yield from _private_redis_server(binary, tmp_path_factory.mktemp("redis"))
        return
    port = free_port()
    server = _serial_fake_redis_server(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()


def _private_redis_server(binary: str, directory: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port, for machines with Redis installed but no URL."""
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _serial_fake_redis_server(port: int) -> Any:
    """A fakeredis TCP server that runs one command at a time, as Redis does.

    fakeredis serves each connection on its own thread and does not run Lua scripts atomically
    across them; real Redis executes commands one after another. One lock around command
    execution gives the fake the same atomicity, so the replica tests mean the same on both.

    Its sockets also get TCP_NODELAY, as Redis gives every client socket. Without it, when a
    client pipelines two commands (redis-py's CLIENT SETINFO pair on connect, the limiter's
    SCRIPT LOAD and EVALSHA after a NOSCRIPT), the second reply waits in Nagle's buffer for the
    client's delayed ACK: about 40 ms, so a first decision took 45-55 ms and ran into the
    limiter's 50 ms storage timeout.
    """
    from fakeredis import TcpFakeServer
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler

    execution = threading.Lock()

    class SerialHandler(TCPFakeRequestHandler):
        def setup(self) -> None:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().setup()
            fake_socket = self.current_client.get_socket()
            send = fake_socket.sendall

            def sendall(data: bytes) -> None:
                with execution:
                    send(data)

            fake_socket.sendall = sendall

    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    server.RequestHandlerClass = SerialHandler
    return server
