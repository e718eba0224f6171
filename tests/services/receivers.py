"""Notification receivers on loopback: an HTTP server (for apprise ``json://``, ``form://``, webhooks) and an
SMTP server (aiosmtpd, for ``mailto://``). Each records exactly what arrived, in a thread of its own::

    with HttpReceiver() as http, SmtpReceiver() as smtp:
        http.fail_next(2)                      # the next two requests get HTTP 500
        ... send to http.url("json") and smtp.url(to="ops@example.test") ...
        http.wait_for(3)                       # three requests arrived (two refused, one accepted)
        smtp.messages[0]["Subject"]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support import free_port


@dataclass(frozen=True)
class Request:
    """One HTTP request as it arrived, and the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body as an urlencoded form (one value per key)."""
        return {key: values[0] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}


def _wait(count: Callable[[], int], expected: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while count() < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"expected {expected} {what}, got {count()} within {timeout}s")
        time.sleep(0.01)


@dataclass
class HttpReceiver:
    """An HTTP server on 127.0.0.1 answering every request with 200 (or a planned failure) and recording it."""

    port: int = field(default_factory=free_port)
    requests: list[Request] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        """An apprise URL posting to this server (``json``, ``form``, ``xml``)."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests with ``status`` instead of 200."""
        with self._lock:
            self._failures.extend([status] * count)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until ``count`` requests arrived; return all of them."""
        _wait(lambda: len(self.requests), count, timeout, "HTTP requests")
        return list(self.requests)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self._lock:
            status = self._failures.pop(0) if self._failures else 200
            self.requests.append(Request(handler.command, handler.path, dict(handler.headers.items()), body, status))
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._answer(self)

            do_PUT = do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, name="http-receiver", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class Mail:
    """One message as the SMTP server received it."""

    sender: str
    recipients: list[str]
    message: EmailMessage

    def text(self) -> str:
        """The plain-text (or only) part of the body."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        mail = Mail(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], message)
        with self.receiver.lock:
            self.receiver.messages.append(mail)
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 (aiosmtpd, no TLS, no auth) keeping every message it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Mail] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def url(self, to: str = "ops@example.test", sender: str = "qwq@example.test") -> str:
        """An apprise ``mailto://`` URL delivering to this server in plain SMTP."""
        return f"mailto://127.0.0.1:{self.port}?to={to}&from={sender}&mode=insecure"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        """Block until ``count`` messages arrived; return all of them."""
        _wait(lambda: len(self.messages), count, timeout, "mails")
        return list(self.messages)

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._controller.stop()
