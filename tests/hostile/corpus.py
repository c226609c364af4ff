"""The hostile corpus, as data: bad device-list records and bad raw portal answers.

``RECORDS`` are device-list items, each with what a correct sync does with it:
``REJECT`` (skipped, with a reason mentioning ``reason``) or ``ACCEPT`` (stored,
its names kept verbatim as text). Every record carries a unique marker (its
serial, or its hostName when it has no usable serial) so a test can prove that
no row of a rejected record reached the table. ``BODIES`` are whole answers to
a device-list request and ``LOGIN_BODIES`` whole answers to the login, each
with the error family the client must raise for it. Big bodies are built on
demand, so importing the corpus stays cheap.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.hostile.server import Reply, envelope, page_body

REJECT, ACCEPT = "reject", "accept"
PAGE_LEVEL = "not-objects"  # the group whose items may fail the whole page
MEGABYTE = 1_000_000


def good_bn(n: int) -> dict[str, Any]:
    """A well-formed BN list item, shaped like the portal's (numbered to be unique)."""
    cell = f"X{3400 + n:04d}"
    return {
        "serialNumber": f"S134F{2220600000 + n}",
        "hostName": f"{cell}-BN-45",
        "type": "BN",
        "connected": n % 5 != 0,
        "band": "5ghz",
        "lastUpdateTimeSeconds": 1767225600 - n,
        "installParams": {
            "latitude": -26.1 - n / 1000,
            "longitude": 28.05 + n / 1000,
            "heightAgl": 21.5,
            "antennaAzimuth": 45,
        },
        "ancestry": {
            "region": {"id": 7001, "name": "South Africa"},
            "market": {"id": 7101, "name": "JHB Gauteng"},
            "site": {"id": 80000 + n, "name": f"Good Site {n}", "latitude": 0, "longitude": 0},
            "cell": {"id": 500000 + n, "name": str(n)},
            "sector": {"id": 1000000 + n, "name": "1"},
            "cellDetails": {"id": 500000 + n, "name": cell},
            "sectorDetails": {"id": 1000000 + n, "name": f"{cell}-BN-45"},
            "operator": {
                "id": 4242,
                "name": "Hostile Test Wireless",
                "timeZone": "Africa/Johannesburg",
            },
        },
    }


def good_fleet(count: int = 12) -> list[dict[str, Any]]:
    return [good_bn(n) for n in range(1, count + 1)]


def good_rns(bns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One connected RN per BN, linked by ``masterSerial``."""
    return [
        {
            "serialNumber": f"S150F{2310000000 + i}",
            "hostName": f"RN-{i}",
            "type": "RN",
            "connected": True,
            "masterSerial": bn["serialNumber"],
        }
        for i, bn in enumerate(bns)
    ]


@dataclass(frozen=True)
class RecordCase:
    """One hostile record: what it is, the item itself, and what must happen to it."""

    name: str
    item: Any
    expect: str
    group: str
    reason: str = ""  # a word the skip reason must contain (REJECT)
    marker: str = ""  # unique serial or hostName of this item
    stored: dict[str, Any] = field(default_factory=dict)  # column -> value it must keep (ACCEPT)


_cases: list[RecordCase] = []
_group = ""


def group(name: str) -> None:
    """Cases declared from here on belong to ``name`` (one full sync per group)."""
    global _group
    _group = name


def _hostile(n: int) -> dict[str, Any]:
    item = good_bn(900 + n)
    item["serialNumber"] = f"S134FHOSTILE{n:04d}"
    item["hostName"] = f"hostile-host-{n:04d}"
    return item


def _set(item: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = item
    for part in parents:
        node = node[part]
    node[last] = value


def _drop(item: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node: Any = item
    for part in parents:
        node = node[part]
    node.pop(last, None)


def reject(name: str, reason: str, **changes: Any) -> None:
    """A record made from a good one by ``changes`` (dotted path -> value, ``...`` drops)."""
    n = len(_cases) + 1
    item = _hostile(n)
    for path, value in changes.items():
        path = path.replace("__", ".")
        if value is ...:
            _drop(item, path)
        else:
            _set(item, path, value)
    serial = item.get("serialNumber")
    marker = serial if isinstance(serial, str) and serial.strip() else item["hostName"]
    _cases.append(RecordCase(name, item, REJECT, _group, reason, str(marker)))


def accept(name: str, stored: dict[str, Any], **changes: Any) -> None:
    n = len(_cases) + 1
    item = _hostile(n)
    for path, value in changes.items():
        _set(item, path.replace("__", "."), value)
    _cases.append(RecordCase(name, item, ACCEPT, _group, "", str(item["serialNumber"]), stored))


def not_an_object(name: str, item: Any) -> None:
    _cases.append(RecordCase(name, item, REJECT, _group, "not an object", ""))


HUGE = "H" * MEGABYTE
BIG_INT = 10**400  # valid JSON, beyond any float
NAN, INF = math.nan, math.inf

# --- serial numbers ---------------------------------------------------------
group("serial")
reject("serial missing", "serial", serialNumber=...)
reject("serial null", "serial", serialNumber=None)
reject("serial empty", "serial", serialNumber="")
reject("serial blank", "serial", serialNumber="   \t ")
reject("serial a number", "not text", serialNumber=134220600926)
reject("serial an object (operator injection)", "not text", serialNumber={"$gt": ""})
reject("serial a list", "not text", serialNumber=["S134F1", "S134F2"])
reject("serial a boolean", "not text", serialNumber=True)
reject("serial 65 characters", "longer", serialNumber="S" * 65)
reject("serial one megabyte", "longer", serialNumber="S" + HUGE)
reject("serial with NUL", "NUL", serialNumber="S134F\x00HOSTILE")
reject("serial with a lone surrogate", "Unicode", serialNumber="S134F\ud800HOSTILE")
# --- type -------------------------------------------------------------------
group("type")
reject("an RN in the BN list", "type", type="RN")
reject("type a number", "type", type=1)
reject("type script", "type", type="<script>alert(1)</script>")
# --- coordinates -------------------------------------------------------------
group("coordinates")
reject("installParams missing", "coordinates", installParams=...)
reject("installParams null", "coordinates", installParams=None)
reject("installParams a list", "coordinates", installParams=[-26.1, 28.0])
reject("installParams a string", "coordinates", installParams="-26.1,28.0")
reject("latitude missing", "latitude", installParams__latitude=...)
reject("longitude null", "longitude", installParams__longitude=None)
reject("zero coordinates", "zero", installParams__latitude=0, installParams__longitude=0)
reject("zero latitude", "zero", installParams__latitude=0.0)
reject("zero longitude", "zero", installParams__longitude=-0.0)
reject(
    "zero coordinates as text",
    "zero",
    installParams__latitude="0",
    installParams__longitude="0.000",
)
reject("latitude NaN", "finite", installParams__latitude=NAN)
reject("latitude Infinity", "finite", installParams__latitude=INF)
reject("longitude -Infinity", "finite", installParams__longitude=-INF)
reject("latitude 'NaN' as text", "number", installParams__latitude="NaN")
reject("longitude 'inf' as text", "number", installParams__longitude="inf")
reject("latitude '1e999' as text", "finite", installParams__latitude="1e999")
reject("latitude 91", "range", installParams__latitude=91)
reject("longitude just past 180", "range", installParams__longitude=180.0000001)
reject("latitude -90.5", "range", installParams__latitude=-90.5)
reject("latitude 1e308", "range", installParams__latitude=1e308)
reject("latitude a 401-digit integer", "number", installParams__latitude=BIG_INT)
reject("longitude a negative 401-digit integer", "number", installParams__longitude=-BIG_INT)
reject("latitude a boolean", "number", installParams__latitude=True)
reject("latitude a list", "number", installParams__latitude=[-26.1])
reject("latitude an object", "number", installParams__latitude={"value": -26.1})
reject("latitude with a decimal comma", "number", installParams__latitude="-26,1")
reject(
    "latitude with SQL after it",
    "number",
    installParams__latitude="-26.1; DROP TABLE base_stations",
)
reject("latitude in hex", "number", installParams__latitude="0x1A")
reject("latitude one megabyte of digits", "finite", installParams__latitude="9" * MEGABYTE)
# --- other numbers ----------------------------------------------------------
group("numbers")
reject("height NaN", "finite", installParams__heightAgl=NAN)
reject("height 'n/a'", "number", installParams__heightAgl="n/a")
reject("height a 401-digit integer", "number", installParams__heightAgl=BIG_INT)
reject(
    "height as the fallback key, infinite",
    "finite",
    installParams__heightAgl=None,
    installParams__height=INF,
)
reject("azimuth 720", "range", installParams__antennaAzimuth=720)
reject("azimuth 'unknown'", "number", installParams__antennaAzimuth="unknown")
reject("azimuth -Infinity", "finite", installParams__antennaAzimuth=-INF)
reject("azimuth a 401-digit integer", "number", installParams__antennaAzimuth=BIG_INT)
# --- text that cannot be stored --------------------------------------------
group("text")
reject("hostName an object", "hostName", hostName={"name": "X"})
reject("site name a list", "site name", ancestry__site__name=["Alex", "Mall"])
reject("site name with NUL", "NUL", ancestry__site__name="Alex\x00Mall")
reject("market name with a lone surrogate", "Unicode", ancestry__market__name="JHB \udfff")
reject("region id 65 characters", "region id", ancestry__region__id="R" * 65)
reject("sector id an object", "sector id", ancestry__sector__id={"id": 1})
reject("band a list", "band", band=["5ghz"])
# --- huge strings -----------------------------------------------------------
group("huge")
reject("site name one megabyte", "long", ancestry__site__name=HUGE)
reject("hostName one megabyte", "long", hostName="h" + HUGE)
reject("sector name one megabyte", "long", ancestry__sectorDetails__name=HUGE)
# --- names that must stay literal text (stored verbatim) --------------------
group("names")
SCRIPT = "<script>alert('site')</script>"
IMG = '<img src=x onerror="alert(1)">'
accept("site name with a script tag", {"site_name": SCRIPT}, ancestry__site__name=SCRIPT)
accept("hostName with an img onerror", {"hostname": IMG}, hostName=IMG)
accept(
    "market with HTML",
    {"market": "<b>JHB</b> & <i>co</i>"},
    ancestry__market__name="<b>JHB</b> & <i>co</i>",
)
accept(
    "site name =cmd formula",
    {"site_name": "=cmd|' /C calc'!A0"},
    ancestry__site__name="=cmd|' /C calc'!A0",
)
accept("site name +formula", {"site_name": "+SUM(1,2)"}, ancestry__site__name="+SUM(1,2)")
accept(
    "hostName -formula", {"hostname": "-2+3+cmd|' /C calc'!A0"}, hostName="-2+3+cmd|' /C calc'!A0"
)
accept("site name @formula", {"site_name": "@SUM(A1:A9)"}, ancestry__site__name="@SUM(A1:A9)")
accept("site name leading tab", {"site_name": "\t=1+1"}, ancestry__site__name="\t=1+1")
accept("site name leading CR", {"site_name": "\r=1+1"}, ancestry__site__name="\r=1+1")
accept(
    "site name with template braces",
    {"site_name": "{s}{h}{{7*7}}"},
    ancestry__site__name="{s}{h}{{7*7}}",
)
accept(
    "site name with SQL", {"site_name": "Robert'); DROP TABLE base_stations;--"},
    ancestry__site__name="Robert'); DROP TABLE base_stations;--",
)  # fmt: skip
accept(
    "site name with LIKE and regex characters",
    {"site_name": "100% _[.*\\"},
    ancestry__site__name="100% _[.*\\",
)
accept(
    "site name with bidi override and emoji",
    {"site_name": "\u202eevil\u202c 📡"},
    ancestry__site__name="\u202eevil\u202c 📡",
)
accept("site name a number", {"site_name": "12345"}, ancestry__site__name=12345)
accept(
    "serial with SQL inside",
    {"serial_number": "S1'; DROP TABLE base_stations; --"},
    serialNumber="S1'; DROP TABLE base_stations; --",
)
accept("latitude as padded text", {"lat": -26.5}, installParams__latitude="  -26.5\n")
# --- structure ----------------------------------------------------------------
group("structure")
accept("ancestry a string", {"site_name": None, "market": None}, ancestry="JHB/Alex")
accept("ancestry.site a list", {"site_name": None}, ancestry__site=["Alex"])
accept("connected as the text 'true' is offline", {"device_status": "offline"}, connected="true")
accept("connected null is offline", {"device_status": "offline"}, connected=None)
# Items that are not objects at all make the page itself the wrong shape: the
# client may refuse the page (the sync then fails with that reason) or pass
# them on to be skipped; either way the reason is recorded and nothing is lost.
group("not-objects")
not_an_object("item a list", ["S134F1", -26.1, 28.0])
not_an_object("item a string", "S134F2220600926")
not_an_object("item null", None)
not_an_object("item a number", 42)
not_an_object("item a boolean", False)

RECORDS: tuple[RecordCase, ...] = tuple(_cases)
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(c.group for c in RECORDS))


def record_json(case: RecordCase) -> Any:
    """The item as the portal would send it: through JSON (NaN and Infinity as JS literals)."""
    if isinstance(case.item, dict):
        return json.loads(json.dumps(case.item))
    return copy.deepcopy(case.item)


# --- raw answers to a device-list request -----------------------------------

INVALID, TRANSIENT = "invalid", "transient"


@dataclass(frozen=True)
class BodyCase:
    """A whole answer to the first BN page; ``expect`` is the client's error family."""

    name: str
    reply: Callable[[], Reply]
    expect: str = INVALID


def _ok(body: bytes, content_type: str = "application/json") -> Callable[[], Reply]:
    return lambda: Reply(200, body, (("Content-Type", content_type),))


def _page(**data: Any) -> bytes:
    return json.dumps({"data": data, "error": None}, allow_nan=True).encode()


_ITEMS = good_fleet(10)
_WHOLE_PAGE = page_body(_ITEMS, 0, 10)


def _million_items() -> Reply:
    # a million list items where the portal's page size is 10: each is a bare object
    items = b",".join([b'{"type":"BN"}'] * 1_000_000)
    body = (
        b'{"data":{"items":[%b],"count":1000000,"offset":0,"totalCount":1000000},"error":null}'
        % items
    )
    return Reply(200, body)


def _gzip_bomb() -> Reply:
    # about 100 KB on the wire, 100 MB once inflated: more than the client's body limit
    bomb = gzip.compress(b" " * (100 * MEGABYTE), compresslevel=9)
    return Reply(200, bomb, (("Content-Type", "application/json"), ("Content-Encoding", "gzip")))


def _huge_body() -> Reply:
    return Reply(200, b'{"data":"' + b"x" * (70 * MEGABYTE) + b'"}')


def _raw(head: bytes, body: bytes) -> Callable[[], Reply]:
    return lambda: Reply(raw=head + body)


BODIES: tuple[BodyCase, ...] = (
    BodyCase(
        "an HTML page with status 200", _ok(b"<html><body>Loading...</body></html>", "text/html")
    ),
    BodyCase(
        "an HTML error page with script",
        _ok(b"<html><script>alert(1)</script></html>", "text/html"),
    ),
    BodyCase("an empty body", _ok(b"")),
    BodyCase("whitespace only", _ok(b" \r\n\t ")),
    BodyCase("a truncated JSON body", _ok(_WHOLE_PAGE[: len(_WHOLE_PAGE) // 2])),
    BodyCase("one byte of JSON", _ok(b"{")),
    BodyCase("JSON followed by garbage", _ok(_WHOLE_PAGE + b"<!-- cached -->")),
    BodyCase("two JSON documents", _ok(_WHOLE_PAGE + _WHOLE_PAGE)),
    BodyCase("a JSON list", _ok(b"[]")),
    BodyCase("a JSON string", _ok(b'"ok"')),
    BodyCase("JSON null", _ok(b"null")),
    BodyCase("a JSON number", _ok(b"42")),
    BodyCase("JSON NaN", _ok(b"NaN")),
    BodyCase("an envelope without data", _ok(b'{"error":null}')),
    BodyCase("data null", _ok(b'{"data":null,"error":null}')),
    BodyCase("data a list", _ok(envelope([good_bn(1)]))),
    BodyCase("data a string", _ok(envelope("items"))),
    BodyCase("items missing", _ok(_page(count=0, offset=0, totalCount=0))),
    BodyCase("items a string", _ok(_page(items="[]", count=0, offset=0, totalCount=0))),
    BodyCase(
        "items an object", _ok(_page(items={"0": good_bn(1)}, count=1, offset=0, totalCount=1))
    ),
    BodyCase("items null", _ok(_page(items=None, count=0, offset=0, totalCount=0))),
    BodyCase(
        "items hold non-objects",
        _ok(_page(items=[1, "x", None, []], count=4, offset=0, totalCount=4)),
    ),
    BodyCase("items hold NaN", _ok(_page(items=[NAN], count=1, offset=0, totalCount=1))),
    BodyCase("totalCount missing", _ok(_page(items=_ITEMS, count=10, offset=0))),
    BodyCase("totalCount as text", _ok(_page(items=_ITEMS, count=10, offset=0, totalCount="10"))),
    BodyCase("totalCount NaN", _ok(_page(items=_ITEMS, count=10, offset=0, totalCount=NAN))),
    BodyCase("totalCount Infinity", _ok(_page(items=_ITEMS, count=10, offset=0, totalCount=INF))),
    BodyCase("totalCount a float", _ok(_page(items=_ITEMS, count=10, offset=0, totalCount=10.5))),
    BodyCase("totalCount a boolean", _ok(_page(items=_ITEMS, count=10, offset=0, totalCount=True))),
    BodyCase(
        "totalCount a 5000-digit number",
        _ok(
            b'{"data":{"items":[],"count":0,"offset":0,"totalCount":1'
            + b"0" * 5000
            + b'},"error":null}'
        ),
    ),
    BodyCase("count a string", _ok(_page(items=_ITEMS, count="ten", offset=0, totalCount=10))),
    BodyCase("JSON nested 100,000 deep", _ok(b"[" * 100_000 + b"]" * 100_000)),
    BodyCase(
        "bytes that are not UTF-8", _ok(b'{"data":{"items":[],"note":"\xff\xfe\xfa"},"error":null}')
    ),
    BodyCase("a million items on one page", _million_items),
    BodyCase("a body larger than the limit", _huge_body),
    BodyCase(
        "a declared length beyond the limit",
        _raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n",
            b'{"data":',
        ),
    ),
    BodyCase("a gzip bomb", _gzip_bomb),
    BodyCase(
        "a gzip header on a body that is not gzip",
        lambda: Reply(
            200, _WHOLE_PAGE, (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
        ),
    ),
    BodyCase(
        "a redirect elsewhere", lambda: Reply(302, b"", (("Location", "http://127.0.0.1:9/steal"),))
    ),
    BodyCase("status 204 with no body", lambda: Reply(204, b"", ())),
    # framing broken on the wire: the connection ends before the declared body does
    BodyCase(
        "a body cut short by the connection",
        _raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(_WHOLE_PAGE),
            _WHOLE_PAGE[:50],
        ),
        TRANSIENT,
    ),
    BodyCase(
        "a broken chunked body",
        _raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"zz\r\n{}\r\n",
        ),
        TRANSIENT,
    ),
    BodyCase("not HTTP at all", _raw(b"SSH-2.0-OpenSSH_9.6\r\n", b""), TRANSIENT),
)


# --- raw answers to the login (the data requests never get a session) -------

LOGIN_BODIES: tuple[BodyCase, ...] = (
    BodyCase(
        "login: an HTML page with status 200",
        _ok(b"<html><body>Sign in</body></html>", "text/html"),
    ),
    BodyCase("login: an empty body and no cookies", _ok(b"")),
    BodyCase(
        "login: an envelope with no session at all",
        _ok(envelope({"userId": "u1", "session": None})),
    ),
    BodyCase("login: data null", _ok(b'{"data":null,"error":null}')),
    BodyCase("login: a truncated envelope", _ok(envelope({"accessToken": "eyJabc"})[:20])),
    BodyCase(
        "login: tokens that are not text",
        _ok(envelope({"accessToken": 12345, "refreshToken": ["x"]})),
    ),
    BodyCase(
        "login: a token with a line break (header injection)",
        _ok(envelope({"accessToken": "eyJabc\r\nX-Injected: 1", "refreshToken": "eyJdef"})),
        TRANSIENT,
    ),
    BodyCase(
        "login: garbage cookies",
        lambda: Reply(
            200,
            envelope({"session": None}),
            (
                ("Content-Type", "application/json"),
                ("Set-Cookie", "=;;;===; Path"),
                ("Set-Cookie", "accessToken"),
                ("Set-Cookie", 'idToken="unterminated; Path=/'),
            ),
        ),
    ),
)
