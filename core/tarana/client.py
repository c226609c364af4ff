"""HTTP client for the Tarana TCS portal: login, envelopes, retries and concurrent paging.

``TaranaClient`` keeps one keep-alive ``httpx.Client`` and sends the
browser-like headers the portal's gateway insists on. It logs in with Basic
auth once (single-flight across threads), then authenticates by cookie; a
401/403 earns one fresh login and one retry. Transient failures (connection
errors, timeouts, 5xx, 429) are retried with tenacity, honouring Retry-After,
with an injectable ``sleep`` so tests do not wait. ``fetch_devices`` pages the
device list with a thread pool whose in-flight limit halves on a 429 and grows
back slowly, de-duplicates by serial and reports what it saw. Every httpx
error is translated into the ``TaranaError`` tree; no message, log line or
repr carries the password, the cookies or the tokens.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlencode

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from core.errors import (
    TaranaAuthError,
    TaranaError,
    TaranaInvalidResponseError,
    TaranaRateLimitedError,
    TaranaRejectedError,
    TaranaTransientError,
)
from core.settings import Secret

__all__ = ["BROWSER_USER_AGENT", "PAGE_SIZE", "DevicePage", "FetchReport", "TaranaClient"]

log = logging.getLogger(__name__)

PAGE_SIZE = 10  # fixed by the portal whatever ``limit`` says
LOGIN_PATH = "/api/tcs/v1/user-auth/login"
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
MAX_BODY_BYTES = 64 << 20
RETRY_AFTER_CAP_S = 300.0  # a hostile or buggy Retry-After must not park a sync for hours
_SESSION_COOKIES = ("idToken", "accessToken", "refreshToken", "userId")

T = TypeVar("T")


@dataclass(frozen=True)
class DevicePage:
    offset: int
    items: list[dict[str, Any]]
    count: int
    total_count: int


@dataclass
class FetchReport:
    items: list[dict[str, Any]] = field(default_factory=list)  # unique by serial, first wins
    pages: int = 0
    duplicates: list[str] = field(default_factory=list)
    retries: int = 0
    total_count: int = 0
    next_offset: int = 0
    complete: bool = False  # an empty page was reached
    total_mismatch: bool = False


class _AdaptiveLimit:
    """An in-flight cap that halves on a 429 and grows back by one per window of successes.

    A 429 only halves the cap if its request started after the last cut, so one
    burst answered to many parallel requests counts as one signal, as in TCP.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.lowest = ceiling
        self._limit = float(ceiling)
        self._active = 0
        self._epoch = 0
        self._cond = threading.Condition()

    @property
    def current(self) -> int:
        return int(self._limit)

    def acquire(self) -> int:
        with self._cond:
            while self._active >= int(self._limit):
                self._cond.wait()
            self._active += 1
            return self._epoch

    def release(self, epoch: int, status: int | None) -> None:
        with self._cond:
            self._active -= 1
            if status == 429 and epoch == self._epoch:
                self._limit = max(1.0, self._limit / 2)
                self._epoch += 1
                self.lowest = min(self.lowest, int(self._limit))
            elif status is not None and status < 400:
                self._limit = min(float(self.ceiling), self._limit + 1 / self._limit)
            self._cond.notify_all()


class TaranaClient:
    """The portal, as Python calls; see the module docstring.

    ``retries`` counts every retried attempt (each backoff wait) since the
    client was made, across threads; ``logins`` counts successful logins.
    Safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: Secret,
        *,
        operator_id: str,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        retries: int = 6,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if concurrency < 1 or retries < 0 or timeout_s <= 0 or backoff_max_s < 0:
            raise ValueError("concurrency >= 1, retries >= 0, timeout_s > 0, backoff_max_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.operator_id = operator_id
        self.retries = 0
        self._username = username
        self._password = password
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._max_retries = retries
        self._backoff = wait_random_exponential(multiplier=0.5, max=backoff_max_s)
        self._sleep = sleep
        self._max_body = max_body_bytes
        self._limit = _AdaptiveLimit(concurrency)
        self._auth_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._generation = 0  # bumped by each login, so racing threads log in only once
        self._cookie: Secret | None = None
        # Every credential and session value seen, masked in any portal text we repeat.
        self._secrets: set[Secret] = set()
        self._login_tries = 0
        self._login_error: TaranaError | None = None
        self.logins = 0
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Accept": "application/json, text/plain, */*",
                "Referer": f"{self.base_url}/",
                "User-Agent": BROWSER_USER_AGENT,
                "X-Caller-Name": "operator-portal",
            },
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2
            ),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"TaranaClient(base_url={self.base_url!r}, operator_id={self.operator_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def concurrency_limit(self) -> int:
        """The adaptive in-flight cap right now."""
        return self._limit.current

    @property
    def lowest_concurrency(self) -> int:
        """The lowest the adaptive cap has fallen since this client was made."""
        return self._limit.lowest

    # ---- the public calls ---------------------------------------------------

    def login(self) -> None:
        """Log in now (requests also log in by themselves when they need to)."""
        with self._auth_lock:
            self._login_error = None
            self._login_locked()

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> Any:
        """One authenticated request with retries; returns the envelope's ``data``."""
        return self._with_retries(lambda: self._attempt(method, path, params, json_body))

    def device_page(self, offset: int, device_type: str | None = "BN") -> DevicePage:
        return self._page(offset, device_type, None)

    def device(self, serial: str) -> dict[str, Any]:
        data = self.call("GET", f"/api/nqs/v1/devices/{quote(serial, safe='')}")
        if not isinstance(data, dict):
            raise TaranaInvalidResponseError(f"device {serial}: data is not an object")
        return data

    def hierarchy(self) -> dict[str, Any]:
        path = f"/api/nqs/v1/operators/{quote(self.operator_id, safe='')}/network-hierarchy"
        data = self.call("GET", path, params={"hierarchyLevel": "SITE"})
        if not isinstance(data, dict) or not isinstance(data.get("regions"), list):
            raise TaranaInvalidResponseError("network hierarchy: no list of regions")
        return data

    def regions(self) -> list[dict[str, Any]]:
        path = f"/api/tni/v2/operators/{quote(self.operator_id, safe='')}/regions"
        data = self.call("GET", path, params={"offset": 0, "count": 1000})
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TaranaInvalidResponseError("regions: no list of items")
        return items

    def fetch_devices(
        self,
        device_type: str | None = "BN",
        *,
        start_offset: int = 0,
        max_pages: int | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> FetchReport:
        """Page the device list from ``start_offset`` until an empty page (or ``max_pages``).

        Offsets are computed ahead (the page size is fixed) and fetched in
        parallel, but consumed strictly in order; a page of another size
        realigns the offsets to what was actually received.
        """
        report = FetchReport(next_offset=start_offset)
        retries_before = self.retries
        seen: set[str] = set()
        cancel = threading.Event()
        pending: dict[int, Future[DevicePage]] = {}
        ahead, scheduled = start_offset, 0
        pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="tarana-page")
        try:
            while max_pages is None or report.pages < max_pages:
                while len(pending) < 2 * self._concurrency and (
                    max_pages is None or scheduled < max_pages
                ):
                    pending[ahead] = pool.submit(self._page, ahead, device_type, cancel)
                    ahead += PAGE_SIZE
                    scheduled += 1
                page = pending.pop(report.next_offset).result()
                report.pages += 1
                report.total_count = page.total_count
                for item in page.items:
                    serial = item.get("serialNumber")
                    if isinstance(serial, str) and serial:
                        if serial in seen:
                            report.duplicates.append(serial)
                            continue
                        seen.add(serial)
                    report.items.append(item)
                report.next_offset += len(page.items)
                report.complete = not page.items
                if on_page is not None:
                    on_page(report.pages, self._estimate(report, max_pages))
                if report.complete:
                    break
                if report.next_offset not in pending and ahead != report.next_offset:
                    # speculative offsets no longer line up with what was received
                    for future in pending.values():
                        future.cancel()
                    scheduled -= len(pending)
                    pending.clear()
                    ahead = report.next_offset
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
        report.retries = self.retries - retries_before
        expected = start_offset + len(report.items)
        report.total_mismatch = report.complete and expected != report.total_count
        if report.duplicates or report.total_mismatch:
            log.warning(
                "device list pass: %d unique items, %d duplicates, totalCount %d",
                len(report.items), len(report.duplicates), report.total_count,
            )  # fmt: skip
        return report

    @staticmethod
    def _estimate(report: FetchReport, max_pages: int | None) -> int:
        if report.complete:
            return report.pages
        left = max(0, report.total_count - report.next_offset)
        estimate = report.pages + math.ceil(left / PAGE_SIZE) + 1
        return estimate if max_pages is None else min(estimate, max_pages)

    # ---- one page -----------------------------------------------------------

    def _page(
        self, offset: int, device_type: str | None, cancel: threading.Event | None
    ) -> DevicePage:
        if cancel is not None and cancel.is_set():
            return DevicePage(offset, [], 0, 0)  # the pass is over; this page is never read
        path = f"/api/nqs/v1/operators/{quote(self.operator_id, safe='')}/devices"
        params: dict[str, Any] = {"offset": offset}
        if device_type:
            params["type"] = device_type
        data = self._with_retries(lambda: self._attempt("GET", path, params, None), cancel)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TaranaInvalidResponseError(f"device list at offset {offset}: no list of items")
        total = data.get("totalCount")
        count = data.get("count", len(items))
        if not _is_int(total) or not _is_int(count):
            raise TaranaInvalidResponseError(
                f"device list at offset {offset}: count or totalCount is not a number"
            )
        return DevicePage(offset, items, count, total)

    # ---- retries, auth, transport -------------------------------------------

    def _with_retries(self, fn: Callable[[], T], cancel: threading.Event | None = None) -> T:
        stop = stop_after_attempt(self._max_retries + 1)
        retrying = Retrying(
            # An error that already used up a retry budget (a login inside this
            # request, say) is final: retrying it again would multiply the budgets.
            retry=retry_if_exception(
                lambda e: isinstance(e, TaranaTransientError) and not e.exhausted
            ),
            stop=stop | stop_when_event_set(cancel) if cancel is not None else stop,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._note_retry,
            reraise=True,
        )
        try:
            return retrying(fn)
        except TaranaTransientError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            if attempts <= 1:
                raise
            final = type(exc)(f"{exc} (gave up after {attempts} attempts)", exc.retry_after)
            final.exhausted = True
            raise final from exc

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, TaranaTransientError) and exc.retry_after is not None:
            return min(max(0.0, exc.retry_after), RETRY_AFTER_CAP_S)
        return float(self._backoff(state))

    def _note_retry(self, state: RetryCallState) -> None:
        with self._count_lock:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("retrying after %s (attempt %d, waiting %.2f s)", exc, state.attempt_number, wait)

    def _attempt(
        self, method: str, path: str, params: dict[str, Any] | None, json_body: Any
    ) -> Any:
        generation, cookie = self._session()
        status, headers, body = self._send(method, path, params, json_body, cookie)
        if status in (401, 403):
            log.info("portal answered %d to %s %s; logging in again", status, method, path)
            cookie = self._relogin(generation)
            status, headers, body = self._send(method, path, params, json_body, cookie)
            if status in (401, 403):
                at_gateway = headers.get("x-envoy-upstream-service-time") == "1"
                hint = " at the gateway (browser headers rejected?)" if at_gateway else ""
                raise TaranaAuthError(
                    f"the portal refused {method} {path} ({status}) again after a fresh "
                    f"login{hint}: {self._message(body)}",
                    status,
                )
        return self._unwrap(method, path, status, headers, body)

    def _session(self) -> tuple[int, Secret]:
        tried = self._login_tries
        with self._auth_lock:
            if self._cookie is None:
                self._share_failure(tried)
                self._login_locked()
            assert self._cookie is not None
            return self._generation, self._cookie

    def _relogin(self, seen_generation: int) -> Secret:
        tried = self._login_tries
        with self._auth_lock:
            if self._generation == seen_generation or self._cookie is None:
                # nobody else has replaced the refused session yet
                self._share_failure(tried)
                self._login_locked()
            assert self._cookie is not None
            return self._cookie

    def _share_failure(self, tried: int) -> None:
        """Single flight for failures too: a login that failed while we queued is ours.

        A refused password stays refused for automatic logins (asking again only
        hammers the portal and may lock the account); ``login()`` tries afresh.
        """
        failure = self._login_error
        if failure is not None and (
            self._login_tries != tried or isinstance(failure, TaranaAuthError)
        ):
            raise copy.copy(failure) from failure

    def _login_locked(self) -> None:
        self._login_tries += 1
        self._cookie = None
        try:
            self._login_attempt()
            self._login_error = None
        except TaranaError as exc:
            self._login_error = exc
            raise

    def _login_attempt(self) -> None:
        pair = f"{self._username}:{self._password.reveal()}".encode()
        encoded = base64.b64encode(pair).decode("ascii")
        basic = Secret("Basic " + encoded)
        self._remember_secrets(self._password.reveal(), encoded)

        def attempt() -> Secret:
            status, headers, body = self._send("POST", LOGIN_PATH, None, None, None, basic)
            if status in (401, 403):
                raise TaranaAuthError(
                    f"the portal refused the login ({status}): {self._message(body)}; "
                    "check the Tarana username and password",
                    status,
                )
            data = self._unwrap("POST", LOGIN_PATH, status, headers, body)
            return _session_cookie(headers, data)

        self._cookie = self._with_retries(attempt)
        cookie = self._cookie.reveal()
        self._remember_secrets(
            cookie, *(part.split("=", 1)[-1].strip() for part in cookie.split(";"))
        )
        self._http.cookies.clear()  # the session lives in self._cookie only
        self._generation += 1
        self.logins += 1
        log.info("logged in to the portal (session %d)", self._generation)

    def _message(self, body: bytes, payload: Any = None) -> str:
        """The portal's error message, with any credential or session value it quotes masked."""
        return self._redact(_portal_message(body, payload))

    def _redact(self, text: str) -> str:
        # Longest first, so a value containing another is masked whole.
        for secret in sorted((s.reveal() for s in self._secrets), key=len, reverse=True):
            text = text.replace(secret, "********")
        return text

    def _remember_secrets(self, *values: str) -> None:
        self._secrets.update(Secret(v) for v in values if len(v) >= 4)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        json_body: Any,
        cookie: Secret | None,
        authorization: Secret | None = None,
    ) -> tuple[int, httpx.Headers, bytes]:
        headers = {}
        if cookie is not None:
            headers["Cookie"] = cookie.reveal()
        if authorization is not None:
            headers["Authorization"] = authorization.reveal()
        epoch = self._limit.acquire()
        status: int | None = None
        try:
            # one absolute URL string: httpx's merging of base URL and params costs more
            # than the rest of a page request on a fast link
            url = f"{self.base_url}{path}?{urlencode(params)}" if params else self.base_url + path
            request = self._http.build_request(method, url, json=json_body, headers=headers)
            response = self._http.send(request, stream=True)
            try:
                status = response.status_code
                return status, response.headers, self._read(response, method, path)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            raise TaranaTransientError(
                f"{method} {path} timed out after {self._timeout_s:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TaranaTransientError(f"{method} {path} failed: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise TaranaInvalidResponseError(
                f"{method} {path}: unusable response ({type(exc).__name__})"
            ) from exc
        finally:
            self._limit.release(epoch, status)

    def _read(self, response: httpx.Response, method: str, path: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise TaranaInvalidResponseError(
                f"{method} {path}: body of {declared} bytes exceeds {self._max_body}"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_body:
                raise TaranaInvalidResponseError(
                    f"{method} {path}: body exceeds {self._max_body} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _unwrap(
        self, method: str, path: str, status: int, headers: httpx.Headers, body: bytes
    ) -> Any:
        where = f"{method} {path}"
        if status == 429:
            raise TaranaRateLimitedError(
                f"{where}: rate limited (429)", _retry_after(headers.get("retry-after"))
            )
        if status >= 500:
            raise TaranaTransientError(f"{where}: portal error {status}: {self._message(body)}")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            if 400 <= status < 500:
                raise TaranaRejectedError(f"{where}: refused ({status})", status) from exc
            raise TaranaInvalidResponseError(
                f"{where}: answered {status} with a body that is not JSON ({len(body)} bytes)"
            ) from exc
        if not isinstance(payload, dict):
            raise TaranaInvalidResponseError(f"{where}: the JSON is not an envelope object")
        error = payload.get("error")
        if status >= 400 or error:
            code = error.get("code") if isinstance(error, dict) else None
            code = code if _is_int(code) else status
            raise TaranaRejectedError(
                f"{where}: refused ({code}): {self._message(body, payload)}", code
            )
        if not 200 <= status < 300:
            raise TaranaInvalidResponseError(f"{where}: unexpected status {status}")
        if payload.get("data") is None:
            raise TaranaInvalidResponseError(f"{where}: the envelope has no data")
        return payload["data"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _portal_message(body: bytes, payload: Any = None) -> str:
    """The portal's own error message, short and printable, or a placeholder."""
    if payload is None:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return "no JSON error message"
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        return "no error message"
    return message.replace("\n", " ")[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _session_cookie(headers: httpx.Headers, data: Any) -> Secret:
    jar: dict[str, str] = {}
    for line in headers.get_list("set-cookie"):
        try:
            parsed: SimpleCookie = SimpleCookie(line)
        except CookieError:
            continue
        jar.update({name: morsel.value for name, morsel in parsed.items()})
    if "accessToken" not in jar and isinstance(data, dict):
        # no cookies set: fall back to the tokens in the body, under the cookie names
        jar.update({k: str(data[k]) for k in _SESSION_COOKIES if isinstance(data.get(k), str)})
    if "accessToken" not in jar:
        raise TaranaInvalidResponseError("the login answer carried no session cookies")
    ordered = [n for n in _SESSION_COOKIES if n in jar] + [
        n for n in jar if n not in _SESSION_COOKIES
    ]
    return Secret("; ".join(f"{name}={jar[name]}" for name in ordered))
