"""A tiny portal double on 127.0.0.1 that logs in properly and then answers with hostile bodies.

``HostilePortal`` speaks just enough of the portal's contract (see the portal
notes): Basic-auth login that sets the four session cookies, cookie-checked
data requests, the paged device list with its envelope. What it answers for a
device-list page is up to the test: a ``Reply`` (status, headers, body) built
from the corpus, or raw bytes written to the socket as they are (to cut a body
short or break the framing). It records every request so tests can check what
reached it, and it binds to the loopback address only.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
LOGIN_PATH = "/api/tcs/v1/user-auth/login"
OPERATOR_ID = "4242"
USERNAME = "hostile-test@example.com"
PASSWORD = "Hostile-Portal-Pw-5c1e"
# Distinctive session values, so a test can look for them anywhere they might leak.
TOKENS = {
    "idToken": "eyJid-Tok3n-0f1d2c",
    "accessToken": "eyJaccess-Tok3n-9a8b7c",
    "refreshToken": "eyJrefresh-Tok3n-6d5e4f",
    "userId": "user-id-1b2c3d4e",
}
PAGE_SIZE = 10


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. ``raw`` (if set) is written to the socket verbatim instead."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    raw: bytes | None = None


def envelope(data: Any) -> bytes:
    return json.dumps({"data": data, "error": None}).encode()


def error_reply(status: int, message: str) -> Reply:
    body = json.dumps(
        {"data": None, "error": {"code": status, "message": message, "status": "Error"}}
    ).encode()
    return Reply(status, body)


def page_body(items: Sequence[Any], offset: int, total: int) -> bytes:
    return envelope(
        {"items": list(items), "count": len(items), "offset": offset, "totalCount": total}
    )


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


# (kind "BN"/"RN"/None, offset) -> a Reply, or None for the default page
Override = Callable[[str | None, int], Reply | None]


@dataclass
class PortalState:
    bns: list[Any] = field(default_factory=list)
    rns: list[Any] = field(default_factory=list)
    override: Override | None = None
    login_reply: Reply | None = None  # replaces the normal login answer when set
    data_reply: Reply | None = None  # answers every data request when set (e.g. a 5xx storm)
    # "login" or "data": refuse with an error message that quotes the credentials received,
    # as some gateways' error pages do (the client must not pass them on)
    echo: str | None = None
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers must not wait for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests look at ``seen`` instead."""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        state = self.server.state
        with state.lock:
            state.seen.append(
                Seen(
                    method,
                    url.path,
                    parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                )
            )
        self._send(self._route(method, url.path, parse_qs(url.query)))

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Reply:
        state = self.server.state
        if path == LOGIN_PATH and method == "POST":
            if state.echo == "login":
                said = self.headers.get("Authorization") or ""
                return error_reply(401, f"Invalid Authorization header {said!r} for this tenant")
            return state.login_reply or self._login()
        if not self._has_session():
            return error_reply(401, "The incoming token has expired")
        if state.echo == "data":
            said = self.headers.get("Cookie") or ""
            return error_reply(500, f"Session store unavailable; request cookies were: {said}")
        if state.data_reply is not None:
            return state.data_reply
        devices = f"/api/nqs/v1/operators/{OPERATOR_ID}/devices"
        if path == devices and method == "GET":
            try:
                offset = int(query.get("offset", ["0"])[0])
            except ValueError:
                return error_reply(400, "offset must be a whole number")
            kind = query.get("type", [""])[0] or None
            if state.override is not None:
                hostile = state.override(kind, offset)
                if hostile is not None:
                    return hostile
            listed = state.rns if kind == "RN" else state.bns
            chunk = listed[offset : offset + PAGE_SIZE]
            return Reply(200, page_body(chunk, offset, len(listed)))
        if path.startswith("/api/nqs/v1/devices/") and method == "GET":
            return error_reply(404, "Device not found")
        return error_reply(404, f"No route for {method} {path}")

    def _login(self) -> Reply:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != (USERNAME, PASSWORD):
            return error_reply(401, "Incorrect username or password.")
        cookies = tuple(
            ("Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict")
            for name, value in TOKENS.items()
        )
        data = {
            "userId": TOKENS["userId"],
            "accessToken": TOKENS["accessToken"],
            "refreshToken": TOKENS["refreshToken"],
            "session": None,
        }
        return Reply(200, envelope(data), (("Content-Type", "application/json"), *cookies))

    def _has_session(self) -> bool:
        cookie = self.headers.get("Cookie") or ""
        pairs = dict(p.strip().partition("=")[::2] for p in cookie.split(";") if "=" in p)
        return pairs.get("accessToken") == TOKENS["accessToken"]

    def _send(self, reply: Reply) -> None:
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in reply.headers):
            self.send_header("Content-Length", str(len(reply.body)))
        # headers and body in one write, as one segment where it fits
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        self.wfile.write(head + reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: PortalState) -> None:
        self.state = state
        super().__init__((LOOPBACK, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client hanging up on a hostile answer is expected here."""


class HostilePortal:
    """The portal double, serving on a daemon thread until ``stop``."""

    def __init__(self, bns: Sequence[Any] = (), rns: Sequence[Any] = ()) -> None:
        self.state = PortalState(list(bns), list(rns))
        self._server = _Server(self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hostile-portal", daemon=True
        )
        self.operator_id = OPERATOR_ID
        self.username = USERNAME
        self.password = PASSWORD

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> HostilePortal:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_bn_page(self, reply: Reply, at_offset: int = 0) -> None:
        """Answer the BN list's page at ``at_offset`` with ``reply``; other pages stay normal."""
        self.state.override = lambda kind, offset: (
            reply if kind == "BN" and offset == at_offset else None
        )

    def data_requests(self) -> list[Seen]:
        with self.state.lock:
            return [s for s in self.state.seen if s.path != LOGIN_PATH]
