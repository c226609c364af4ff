"""A local imitation of the Tarana TCS portal, served over real HTTP on 127.0.0.1.

``Simulator`` serves a seeded ``Fleet`` through the same paths, headers,
cookies and envelopes as the portal, with its quirks (fixed page size,
gateway refusals, broken endpoints) and switchable faults (latency, 5xx,
429 bursts, hangs, session expiry, churn, broken records, outage, bad
bodies). It is an asyncio server with a small HTTP/1.1 keep-alive parser on a
daemon thread rather than ``http.server``: one event loop answers many
connections without a thread each, hangs and latency cost nothing, and a
device page is a join of pre-encoded item bytes, so a pass over 10,000+ pages
is quick. Tests and the app drive it through the Python API below or the
``/__sim/*`` control endpoints; ``main`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import json
import logging
import random
import secrets
import signal
import sys
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from core.clock import Clock, SystemClock
from core.tarana.faults import KNOB_HELP, Faults
from core.tarana.fleet import Device, Fleet, encode

__all__ = ["DEMO_PASSWORD", "DEMO_USERNAME", "Simulator", "main"]

log = logging.getLogger(__name__)

DEMO_USERNAME = "demo@stationsync.local"
DEMO_PASSWORD = "simulator"  # a fixed demo value: this portal exists only on 127.0.0.1
PAGE_SIZE = 10
MAX_REQUEST_BODY = 1 << 20
_LOOPBACK = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1"}
_COOKIES = ("idToken", "accessToken", "refreshToken", "userId")
_MALFORMED_KINDS = (
    "missing_coordinates", "zero_coordinates", "out_of_range_coordinates", "non_numeric",
    "duplicate_serial", "html_in_name", "formula_in_name", "missing_serial",
)  # fmt: skip

Response = tuple[int, list[tuple[str, str]], bytes]
_JSON = [("Content-Type", "application/json")]


def _envelope_error(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    return encode({"data": None, "error": {"code": status, "message": message, "status": phrase}})


def _ok(payload: Any) -> Response:
    return 200, _JSON, encode({"data": payload, "error": None})


def _fail(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return status, [*_JSON, *(extra or [])], _envelope_error(status, message)


class Simulator:
    """The portal on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        stations: int = 700,
        seed: int = 7,
        faults: Faults | None = None,
        rns_per_bn: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock | None = None,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the simulator binds only to 127.0.0.1, not {host!r}")
        self._host, self._port = _LOOPBACK[host], port
        self._fleet = Fleet(stations, seed, rns_per_bn)
        self._seed = seed
        self._clock: Clock = clock or SystemClock()
        self.username, self.password = DEMO_USERNAME, DEMO_PASSWORD
        self.operator_id = self._fleet.operator_id
        self.base_url = ""
        self._faults = faults or Faults()
        self._lock = threading.RLock()
        self._fault_rng = random.Random(f"faults:{seed}")
        self._mutate_rng = random.Random(f"mutate:{seed}")
        self._sessions: dict[str, float] = {}  # access token -> issued at (clock.monotonic)
        self._counts: Counter[str] = Counter()
        self._data_requests = 0
        self._in_flight = 0
        self._version = 0  # bumped on every change of the BN list, to drop caches
        self._view: tuple[int, list[Device], dict[str, bytes], dict[str, str]] | None = None
        self._index: tuple[int, dict[str, Device]] | None = None
        self._cache: dict[tuple[int, str], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._start_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"Simulator(base_url={self.base_url!r}, operator_id={self.operator_id!r})"

    # ---- lifecycle ----------------------------------------------------------

    def start(self) -> str:
        """Serve on a daemon thread; return the base URL once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="tarana-simulator", daemon=True
        )
        self._thread.start()
        ready.wait(30)
        if self._start_error is not None:
            raise RuntimeError(f"simulator could not start: {self._start_error}") from (
                self._start_error
            )
        return self.base_url

    def stop(self) -> None:
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or stopping is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._connection, self._host, self._port, backlog=512
            )
        except OSError as exc:
            self._start_error = exc
            ready.set()
            return
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://{self._host}:{port}"
        ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    # ---- Python control API -------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            if faults.malformed != self._faults.malformed:
                self._version += 1
            self._faults = faults
            self._data_requests = 0  # bursts count from the moment faults change

    @property
    def faults(self) -> Faults:
        return self._faults

    def mutate(
        self, add: int = 0, remove: int = 0, change: int = 0, seed: int | None = None
    ) -> dict[str, list[str]]:
        """Add, remove and change BNs; return the serials touched under each key."""
        rng = self._mutate_rng if seed is None else random.Random(f"mutate:{seed}")
        with self._lock:
            result = {
                "removed": self._fleet.remove_bns(max(0, remove), rng),
                "changed": self._fleet.change_bns(max(0, change), rng),
                "added": self._fleet.add_bns(max(0, add), rng),
            }
            self._version += 1
        return result

    def expire_sessions(self) -> None:
        """End every login session now, as a token expiry would."""
        with self._lock:
            self._sessions.clear()

    def bn_records(self) -> list[dict[str, Any]]:
        """The BN list items in list order as served (outage aside), broken ones included."""
        with self._lock:
            _, view, overlay, _ = self._bn_view()
            return [json.loads(overlay.get(d.serial) or d.item) for d in view]

    def rn_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(d.item) for d in self._fleet.rns]

    def malformed_serials(self) -> dict[str, str]:
        """Serial -> what was broken, for every BN the ``malformed`` knob damaged."""
        with self._lock:
            return dict(self._bn_view()[3])

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``requests``, ``kind.<route>``, ``status.<code>``, ``logins``,
        ``logins_refused``, ``rate_limited``, ``server_errors``, ``hangs``,
        ``gateway_refusals``, ``churn_inserts``/``churn_removes``, ``max_in_flight``."""
        with self._lock:
            return dict(self._counts)

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counts[key] += 1

    # ---- the BN list as served (with deliberately broken records) -----------

    def _bn_view(self) -> tuple[int, list[Device], dict[str, bytes], dict[str, str]]:
        share = self._faults.malformed
        if share == 0:
            return self._version, self._fleet.bns, {}, {}
        if self._view is not None and self._view[0] == self._version:
            return self._view
        view = list(self._fleet.bns)
        overlay: dict[str, bytes] = {}
        reasons: dict[str, str] = {}
        dups: list[tuple[int, Device]] = []
        for i, device in enumerate(self._fleet.bns):
            # a stable per-serial draw, so churn and mutations do not reshuffle the damage
            draw = zlib.crc32(f"{self._seed}:{device.serial}".encode())
            if draw % 100_000 >= share * 100_000:
                continue
            kind = _MALFORMED_KINDS[(draw >> 17) % len(_MALFORMED_KINDS)]
            reasons[device.serial] = kind
            if kind == "duplicate_serial":
                dups.append((i + 1 + (draw >> 8) % 25, device))
            else:
                overlay[device.serial] = _break(json.loads(device.item), kind)
        for at, device in reversed(dups):
            view.insert(min(at, len(view)), device)
        self._view = (self._version, view, overlay, reasons)
        return self._view

    def _device_index(self) -> dict[str, Device]:
        if self._index is None or self._index[0] != self._version:
            index = {d.serial: d for d in self._fleet.rns}
            index.update((d.serial, d) for d in self._fleet.bns)
            self._index = (self._version, index)
        return self._index[1]

    # ---- HTTP ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            pass  # the server is stopping; ending quietly keeps asyncio from logging it
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            writer.write(_render(400, [], b"bad request line", False))
            return False
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            writer.write(_render(501, [], b"chunked request bodies are not supported", False))
            return False
        length_text = headers.get("content-length", "0") or "0"
        if not length_text.isdigit() or int(length_text) > MAX_REQUEST_BODY:
            writer.write(_render(413, [], b"request body too large or unreadable", False))
            return False
        length = int(length_text)
        body = await reader.readexactly(length) if length else b""
        with self._lock:
            self._in_flight += 1
            self._counts["max_in_flight"] = max(self._counts["max_in_flight"], self._in_flight)
        try:
            status, extra, payload = await self._respond(method, target, headers, body)
        except Exception:  # a simulator bug must still answer, like a real server's 500
            log.exception("simulator failed on %s %s", method, target)
            status, extra, payload = _fail(500, "simulator error")
        finally:
            with self._lock:
                self._in_flight -= 1
        self._count("requests", f"status.{status}", *(["server_errors"] if status >= 500 else []))
        writer.write(_render(status, extra, payload, keep))
        if writer.transport.get_write_buffer_size() > 1 << 16:
            await writer.drain()
        return keep

    async def _respond(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> Response:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/__sim/"):
            self._count("kind.control")
            return self._control(method, path, body)
        faults = self._faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if not _browser_like(headers):
            # the gateway answers in about a millisecond, before any upstream sees it
            self._count("kind.gateway", "gateway_refusals")
            return (
                403,
                [("Content-Type", "text/plain"), ("x-envoy-upstream-service-time", "1")],
                (b"RBAC: access denied"),
            )
        kind, handler = self._route(method, path)
        self._count(f"kind.{kind}")
        if handler is None:
            if kind == "method":
                return _fail(405, f"Method {method} not allowed on {path}")
            return _fail(404, f"No route for {method} {path}")
        if kind == "login":
            return self._login(headers)
        refused = await self._data_faults(faults)
        if refused is not None:
            return refused
        if not self._session_ok(headers.get("cookie", ""), faults):
            return _fail(401, "The incoming token has expired")
        response = handler(path, query, body)
        if response[0] == 200:
            return self._spoil(response, faults)
        return response

    def _route(
        self, method: str, path: str
    ) -> tuple[str, Callable[[str, dict[str, list[str]], bytes], Response] | None]:
        parts = path.strip("/").split("/")
        op = f"operators/{self.operator_id}"
        routes: list[tuple[str, str, bool, Any]] = [
            ("login", "POST", path == "/api/tcs/v1/user-auth/login", None),
            ("devices", "GET", path.startswith("/api/nqs/v1/operators/")
             and path.endswith("/devices") and len(parts) == 6, self._devices),
            ("device", "GET", path.startswith("/api/nqs/v1/devices/") and len(parts) == 5,
             self._device),
            ("hierarchy", "GET", path.startswith("/api/nqs/v1/operators/")
             and path.endswith("/network-hierarchy") and len(parts) == 6, self._hierarchy),
            ("regions", "GET", path.startswith("/api/tni/v2/operators/")
             and path.endswith("/regions") and len(parts) == 6, self._regions),
            ("search", "POST", path == "/api/tmq/v1/radios/search",
             lambda *_: _fail(500, "Internal server error")),
            ("count", "POST", path == "/api/tmq/v5/radios/count",
             lambda *_: _fail(400, "Bad request: query could not be parsed")),
        ]  # fmt: skip
        for kind, want, match, handler in routes:
            if match:
                if method != want:
                    return "method", None
                if kind in {"devices", "hierarchy", "regions"} and f"/{op}/" not in path:
                    return kind, lambda *_: _fail(404, "Operator not found")
                return kind, handler or (lambda *_: _fail(500, "unreachable"))
        return "unknown", None

    async def _data_faults(self, faults: Faults) -> Response | None:
        with self._lock:
            n = self._data_requests
            self._data_requests += 1
            hang = faults.timeout_rate > 0 and self._fault_rng.random() < faults.timeout_rate
            fail = faults.error_rate > 0 and self._fault_rng.random() < faults.error_rate
            code = self._fault_rng.choice((500, 502, 503))
        every, burst = faults.rate_limit_every, faults.rate_limit_burst
        if every and burst and n % (every + burst) >= every:
            self._count("rate_limited")
            return _fail(429, "Too Many Requests", [("Retry-After", f"{faults.retry_after_s:g}")])
        if hang:
            self._count("hangs")
            await asyncio.sleep(faults.hang_s)
        if fail:
            if code == 502:
                return (
                    502,
                    [("Content-Type", "text/html")],
                    b"<html><h1>502 Bad Gateway</h1></html>",
                )
            return _fail(code, HTTPStatus(code).phrase)
        return None

    def _spoil(self, response: Response, faults: Faults) -> Response:
        with self._lock:
            garbage = faults.garbage_rate > 0 and self._fault_rng.random() < faults.garbage_rate
            cut = faults.truncate_rate > 0 and self._fault_rng.random() < faults.truncate_rate
        if garbage:
            self._count("garbage")
            return 200, [("Content-Type", "text/html")], b"<html><body>Loading...</body></html>"
        if cut:
            self._count("truncated")
            return response[0], response[1], response[2][: len(response[2]) // 2]
        return response

    # ---- auth ---------------------------------------------------------------

    def _login(self, headers: dict[str, str]) -> Response:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = password = ""
        good = hmac.compare_digest(user.encode(), self.username.encode()) & hmac.compare_digest(
            password.encode(), self.password.encode()
        )
        if scheme.lower() != "basic" or not good:
            self._count("logins_refused")
            return _fail(401, "Incorrect username or password.")
        now = self._clock.monotonic()
        access = "eyJ" + secrets.token_urlsafe(32)
        with self._lock:
            ttl = self._faults.session_ttl_s
            self._sessions = {t: at for t, at in self._sessions.items() if now - at < ttl}
            self._sessions[access] = now
        self._count("logins")
        user_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, user))
        values = {
            "idToken": "eyJ" + secrets.token_urlsafe(32),
            "accessToken": access,
            "refreshToken": "eyJ" + secrets.token_urlsafe(48),
            "userId": user_id,
        }
        cookies = [
            ("Set-Cookie", f"{name}={values[name]}; Path=/; HttpOnly; SameSite=Strict")
            for name in _COOKIES
        ]
        data = {"userId": user_id, "accessToken": access,
                "refreshToken": values["refreshToken"], "session": None}  # fmt: skip
        return 200, [*_JSON, *cookies], encode({"data": data, "error": None})

    def _session_ok(self, cookie_header: str, faults: Faults) -> bool:
        cookies = dict(
            part.strip().partition("=")[::2] for part in cookie_header.split(";") if "=" in part
        )
        with self._lock:
            issued = self._sessions.get(cookies.get("accessToken", ""))
        return issued is not None and self._clock.monotonic() - issued < faults.session_ttl_s

    # ---- endpoints ----------------------------------------------------------

    def _devices(self, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        try:
            offset = int(query.get("offset", ["0"])[0])
            if offset < 0:
                raise ValueError
        except ValueError:
            return _fail(400, "offset must be a whole number of 0 or more")
        kind = query.get("type", [""])[0] or None
        if kind not in (None, "BN", "RN"):
            return _fail(400, f"Unknown device type {kind}")
        faults = self._faults
        if faults.outage:
            return _ok({"items": [], "count": 0, "offset": offset, "totalCount": 0})
        with self._lock:
            if kind != "RN" and faults.churn and self._fault_rng.random() < faults.churn:
                self._churn()
            _, bns, overlay, _ = self._bn_view()
            rns = self._fleet.rns
            if kind == "RN":
                bns, overlay = [], {}
            chunk = bns[offset : offset + PAGE_SIZE]
            if kind != "BN" and len(chunk) < PAGE_SIZE:
                # the untyped list is BNs then RNs; slice across the seam without copying
                start = max(0, offset - len(bns))
                chunk += rns[start : start + PAGE_SIZE - len(chunk)]
            total = len(bns) + (0 if kind == "BN" else len(rns))
        items = (
            [overlay.get(d.serial) or d.own + d.tail for d in chunk]
            if overlay
            else [d.own + d.tail for d in chunk]
        )
        page = b'{"data":{"items":[%b],"count":%d,"offset":%d,"totalCount":%d},"error":null}' % (
            b",".join(items), len(items), offset, total,
        )  # fmt: skip
        return 200, _JSON, page

    def _churn(self) -> None:
        if self._fault_rng.random() < 0.5 or not self._fleet.bns:
            self._fleet.add_bns(1, self._fault_rng)
            self._counts["churn_inserts"] += 1
        else:
            self._fleet.remove_bns(1, self._fault_rng)
            self._counts["churn_removes"] += 1
        self._version += 1

    def _device(self, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        serial = unquote(path.rsplit("/", 1)[1])
        with self._lock:
            device = self._device_index().get(serial)
        if device is None:
            return _fail(404, f"Device {serial} not found")
        return _ok(self._fleet.detail(device))

    def _hierarchy(self, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        level = query.get("hierarchyLevel", ["SITE"])[0]
        if level not in {"REGION", "MARKET", "SITE"}:
            return _fail(400, f"Unknown hierarchyLevel {level}")
        with self._lock:
            key = (self._version, level)
            if key not in self._cache:
                self._cache = {key: encode({"data": self._fleet.hierarchy(level), "error": None})}
            return 200, _JSON, self._cache[key]

    def _regions(self, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        try:
            offset = int(query.get("offset", ["0"])[0])
            count = int(query.get("count", ["1000"])[0])
        except ValueError:
            return _fail(400, "offset and count must be whole numbers")
        items = self._fleet.regions()[offset : offset + max(0, count)]
        return _ok({"items": items, "count": len(items), "offset": offset})

    def _control(self, method: str, path: str, body: bytes) -> Response:
        try:
            sent: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return _fail(400, "the body is not JSON")
        action = (method, path)
        try:
            if action == ("GET", "/__sim/faults"):
                return _ok(self._faults.as_dict())
            if action == ("POST", "/__sim/faults"):
                parsed = Faults.parse(sent) if isinstance(sent, str) else Faults.from_dict(sent)
                self.set_faults(parsed)
                return _ok(parsed.as_dict())
            if action == ("POST", "/__sim/mutate"):
                known = {"add", "remove", "change", "seed"}
                if not isinstance(sent, dict) or set(sent) - known:
                    raise ValueError(f"mutate takes a JSON object with keys {sorted(known)}")
                return _ok(self.mutate(**{k: int(v) for k, v in sent.items()}))
            if action == ("POST", "/__sim/expire-sessions"):
                self.expire_sessions()
                return _ok({"expired": True})
            if action == ("GET", "/__sim/stats"):
                return _ok(self.stats)
            if action == ("GET", "/__sim/health"):
                return _ok({"ok": True, "operatorId": self.operator_id})
        except (ValueError, TypeError, AttributeError) as exc:
            return _fail(400, str(exc))
        return _fail(404, f"No control endpoint {method} {path}")


def _browser_like(headers: dict[str, str]) -> bool:
    return (
        "application/json" in headers.get("accept", "")
        and headers.get("referer", "").startswith(("http://", "https://"))
        and headers.get("user-agent", "").startswith("Mozilla/")
        and headers.get("x-caller-name") == "operator-portal"
    )


def _break(data: dict[str, Any], kind: str) -> bytes:
    params = data.get("installParams") or {}
    site = (data.get("ancestry") or {}).get("site")
    if kind == "missing_coordinates":
        params.pop("latitude", None)
        params.pop("longitude", None)
    elif kind == "zero_coordinates":
        params.update(latitude=0, longitude=0)
    elif kind == "out_of_range_coordinates":
        params.update(latitude=123.456789, longitude=-200.5)
    elif kind == "non_numeric":
        params.update(latitude="n/a", heightAgl="n/a", antennaAzimuth="unknown")
    elif kind in {"html_in_name", "formula_in_name"}:
        bad = "<script>alert(1)</script>" if kind == "html_in_name" else "=cmd|' /C calc'!A0"
        if site is not None:
            site["name"] = bad if kind == "html_in_name" else f"{bad} {site.get('name', '')}"
        else:
            data["hostName"] = bad
    elif kind == "missing_serial":
        data.pop("serialNumber", None)
    if kind.endswith("coordinates") or kind == "non_numeric":
        data["installParams"] = params
    return encode(data)


def _render(status: int, headers: list[tuple[str, str]], body: bytes, keep: bool) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    head = [f"HTTP/1.1 {status} {phrase}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() == "x-envoy-upstream-service-time" for name, _ in headers):
        head.append("x-envoy-upstream-service-time: 12")
    if not keep:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def main(argv: list[str] | None = None) -> int:
    """Serve a simulator until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m core.tarana.simulator",
        description="Serve a simulated Tarana portal on 127.0.0.1.",
        epilog="fault knobs:\n" + KNOB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stations", type=int, default=700, help="BNs to generate")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated fleet")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument("--faults", default="", help="e.g. 'error_rate=0.3,latency_ms=50'")
    parser.add_argument("--rns-per-bn", type=float, default=2.0, help="RNs per BN")
    args = parser.parse_args(argv)
    try:
        faults = Faults.parse(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    sim = Simulator(args.stations, args.seed, faults, args.rns_per_bn, port=args.port)
    try:
        url = sim.start()
    except RuntimeError as exc:  # most often: the port is taken
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    print(f"Tarana simulator: {args.stations} BNs, seed {args.seed}", flush=True)
    print(f"base_url: {url}", f"username: {sim.username}", f"password: {sim.password}",
          f"operator_id: {sim.operator_id}", sep="\n", flush=True)  # fmt: skip
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
