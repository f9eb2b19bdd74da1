"""decide: every Action, StaleReason, Fwd and validator set a GET/HEAD can end with;
and the three freshness computations (lookup's fast path, ``classify``, ``ttl``) agree."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import SegmentIndex
from shared.engine.decide import (
    FRESH_HIT,
    Action,
    Decision,
    FillKey,
    Load,
    Policy,
    Request,
    StaleReason,
    decide,
    freshness,
    may_serve_if_error,
)
from shared.engine.outcome import Fwd
from shared.http import (
    Lookup,
    cache_headers,
    classify,
    current_age,
    format_http_date,
    freshness_lifetime,
    parse_cache_control,
)
from shared.policy.shedding import Shed, Shedder
from shared.store.entry import CachedObject

RT = 1_800_000_000.0  # when every stored response here was received
HEURISTIC = 3600.0
DATE = format_http_date(RT)
ETAG = '"v1"'
LAST_MODIFIED = format_http_date(RT - 86_400)
SEG = "/v/seg-7.m4s"  # no MPD taught us its template: Priority.UNKNOWN, 75 % of each cap
MPD = "/v/manifest.mpd"  # Priority.MANIFEST, 110 % of each cap
EMPTY: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
Fields = Sequence[tuple[str, str]]


def stored_response(
    fields: Fields, *, status: int = 200, delay: float = 0.0, url: str = SEG
) -> CachedObject:
    """A stored response built as ``Fetcher._object`` builds one: requested ``delay``
    seconds before it was received at ``RT``."""
    headers = CIMultiDictProxy(CIMultiDict(fields))
    return CachedObject(
        key=url,
        vary_names=(),
        vary_key=(),
        status=status,
        headers=headers,
        body=b"body",
        request_time=RT - delay,
        response_time=RT,
        lifetime=freshness_lifetime(status, headers, heuristic_max_age=HEURISTIC),
        initial_age=current_age(headers, RT - delay, RT, RT),
        must_validate="no-cache" in parse_cache_control(headers),
    )


def request(
    fields: Fields = (),
    *,
    url: str = SEG,
    vary: tuple[str, ...] = (),
    misses: int = 0,
    fetches: int = 0,
    busy: bool = False,
    vary_miss: bool = False,
    pass_marked: bool = False,
    failures: int = 0,
    retryable: bool = True,
) -> Request:
    headers = CIMultiDictProxy(CIMultiDict(fields))
    return Request(
        key=FillKey(url, vary),
        headers=headers,
        cc=parse_cache_control(headers),
        vary_miss=vary_miss,
        pass_marked=pass_marked,
        failures=failures,
        retryable=retryable,
        load=Load(misses, fetches, busy),
    )


def policy() -> Policy:
    return Policy(
        shedder=Shedder(max_requests=10, max_fills=10),  # SEG sheds at 8, MPD at 11
        segments=SegmentIndex(),
        heuristic_max_age=HEURISTIC,
        stale_if_error=120,
        stale_if_busy=30,
        retries=1,
    )


def cc(value: str, *, validators: bool = True) -> list[tuple[str, str]]:
    """A stored response's fields: Date, Cache-Control and (by default) both validators."""
    fields = [("Date", DATE), ("Cache-Control", value)]
    return [*fields, ("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)] if validators else fields


MAX60 = cc("max-age=60")
SWR = cc("max-age=60, stale-while-revalidate=30")
SIE = cc("max-age=60, stale-if-error=300")
MUST = cc("max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=300")
NO_CACHE = cc("no-cache, max-age=60, stale-while-revalidate=30")
BOTH = (("If-None-Match", ETAG), ("If-Modified-Since", LAST_MODIFIED))
INM, IMS = BOTH[:1], BOTH[1:]

A, R, F = Action, StaleReason, Fwd
K, KM = FillKey(SEG), FillKey(MPD)
GZ = ("accept-encoding: gzip",)


def d(
    action: Action,
    fwd: Fwd | None = None,
    reason: StaleReason | None = None,
    conditional: tuple[tuple[str, str], ...] = (),
    shed: Shed | None = None,
    key: FillKey = K,
) -> Decision:
    if action in (Action.SERVE_FRESH, Action.SERVE_STALE):
        return Decision(action, None, fwd, reason, conditional, shed)  # served as stored: no fill
    return Decision(action, key, fwd, reason, conditional, shed)


# (request, stored fields or None, fill in flight, seconds after RT, decision)
CASES = [
    # -- fresh: served, whatever the load (hits are never shed) -------------------------
    pytest.param(request(), MAX60, False, 10, d(A.SERVE_FRESH), id="fresh"),
    pytest.param(
        request(misses=100, fetches=100, busy=True),
        MAX60,
        True,
        10,
        d(A.SERVE_FRESH),
        id="fresh-under-full-load-not-shed",
    ),
    pytest.param(
        request([("Cache-Control", "only-if-cached")]),
        MAX60,
        False,
        10,
        d(A.SERVE_FRESH),
        id="fresh-only-if-cached",
    ),
    pytest.param(
        request([("Cache-Control", "max-stale=100")]),
        MAX60,
        False,
        80,
        d(A.SERVE_FRESH),
        id="stale-within-request-max-stale",
    ),
    # -- stale-while-revalidate (RFC 5861 §3) ---------------------------------------------
    pytest.param(
        request(),
        SWR,
        False,
        80,
        d(A.SERVE_STALE_AND_REVALIDATE, F.STALE, R.WHILE_REVALIDATE, BOTH),
        id="swr-in-window",
    ),
    pytest.param(
        request(),
        SWR,
        False,
        90,
        d(A.SERVE_STALE_AND_REVALIDATE, F.STALE, R.WHILE_REVALIDATE, BOTH),
        id="swr-window-edge",
    ),
    pytest.param(
        request(misses=100, fetches=100),
        SWR,
        True,
        80,
        d(A.SERVE_STALE_AND_REVALIDATE, F.STALE, R.WHILE_REVALIDATE, BOTH),
        id="swr-under-full-load-not-shed",
    ),
    pytest.param(
        request(), SWR, False, 100, d(A.REVALIDATE, F.STALE, conditional=BOTH), id="swr-out"
    ),
    pytest.param(
        request(), MUST, False, 80, d(A.REVALIDATE, F.STALE, conditional=BOTH), id="swr-must-rev"
    ),
    pytest.param(
        request(),
        NO_CACHE,
        False,
        10,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="no-cache-response-always-validated",
    ),
    pytest.param(
        request([("Cache-Control", "no-cache")]),
        SWR,
        False,
        80,
        d(A.REVALIDATE, F.REQUEST, conditional=BOTH),
        id="swr-but-request-no-cache",
    ),
    # -- stale-if-busy: the origin budget is spent ------------------------------------------
    pytest.param(
        request(busy=True),
        MAX60,
        False,
        80,
        d(A.SERVE_STALE, F.STALE, R.IF_BUSY),
        id="busy-stale-in-window",
    ),
    pytest.param(
        request(busy=True),
        MAX60,
        False,
        100,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="busy-stale-out-of-window",
    ),
    pytest.param(
        request(busy=True),
        MUST,
        False,
        80,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="busy-must-revalidate",
    ),
    pytest.param(request(busy=True), None, False, 0, d(A.LEAD_FILL, F.URI_MISS), id="busy-cold"),
    # -- the request asks for a reload (RFC 9111 §5.2.1.1, §5.2.1.4, §5.4) ----------------
    pytest.param(
        request([("Cache-Control", "no-cache")]),
        MAX60,
        False,
        10,
        d(A.REVALIDATE, F.REQUEST, conditional=BOTH),
        id="request-no-cache",
    ),
    pytest.param(
        request([("Cache-Control", "max-age=0")]),
        MAX60,
        False,
        10,
        d(A.REVALIDATE, F.REQUEST, conditional=BOTH),
        id="request-max-age-0",
    ),
    pytest.param(
        request([("Pragma", "no-cache")]),
        MAX60,
        False,
        10,
        d(A.REVALIDATE, F.REQUEST, conditional=BOTH),
        id="request-pragma",
    ),
    pytest.param(
        request([("Cache-Control", "no-cache")]),
        MAX60,
        True,
        10,
        d(A.JOIN_FILL, F.REQUEST),
        id="request-no-cache-joins-fill",
    ),
    pytest.param(
        request([("Cache-Control", "max-age=5")]),
        MAX60,
        False,
        10,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="request-max-age-older",
    ),
    # -- stale: revalidate with the validators it has (RFC 9111 §4.3.1) ---------------------
    pytest.param(
        request(), MAX60, False, 100, d(A.REVALIDATE, F.STALE, conditional=BOTH), id="stale"
    ),
    pytest.param(
        request(),
        [("Date", DATE), ("Cache-Control", "max-age=60"), ("ETag", ETAG)],
        False,
        100,
        d(A.REVALIDATE, F.STALE, conditional=INM),
        id="stale-etag-only",
    ),
    pytest.param(
        request(),
        [("Date", DATE), ("Cache-Control", "max-age=60"), ("Last-Modified", LAST_MODIFIED)],
        False,
        100,
        d(A.REVALIDATE, F.STALE, conditional=IMS),
        id="stale-last-modified-only",
    ),
    pytest.param(
        request(),
        cc("max-age=60", validators=False),
        False,
        100,
        d(A.REVALIDATE, F.STALE),
        id="stale-no-validators",
    ),
    pytest.param(request(), MAX60, True, 100, d(A.JOIN_FILL, F.STALE), id="stale-joins-fill"),
    # -- misses -------------------------------------------------------------------------------
    pytest.param(request(), None, False, 0, d(A.LEAD_FILL, F.URI_MISS), id="cold"),
    pytest.param(request(), None, True, 0, d(A.JOIN_FILL, F.URI_MISS), id="cold-joins-fill"),
    pytest.param(
        request(vary_miss=True), None, False, 0, d(A.LEAD_FILL, F.VARY_MISS), id="vary-miss"
    ),
    pytest.param(
        request([("Accept-Encoding", "gzip")], vary=GZ, vary_miss=True),
        None,
        True,
        0,
        d(A.JOIN_FILL, F.VARY_MISS, key=FillKey(SEG, GZ)),
        id="vary-miss-joins-its-variant-fill",
    ),
    # -- only-if-cached (RFC 9111 §5.2.1.7) ---------------------------------------------------
    pytest.param(
        request([("Cache-Control", "only-if-cached")]),
        None,
        False,
        0,
        d(A.REJECT, F.URI_MISS),
        id="only-if-cached-nothing",
    ),
    pytest.param(
        request([("Cache-Control", "only-if-cached")], vary_miss=True),
        None,
        True,
        0,
        d(A.REJECT, F.VARY_MISS),
        id="only-if-cached-vary-miss",
    ),
    pytest.param(
        request([("Cache-Control", "only-if-cached")]),
        MAX60,
        False,
        100,
        d(A.REJECT, F.STALE),
        id="only-if-cached-stale",
    ),
    pytest.param(
        request([("Cache-Control", "only-if-cached")], misses=100, fetches=100),
        None,
        False,
        0,
        d(A.REJECT, F.URI_MISS),
        id="only-if-cached-under-load-rejects-not-sheds",
    ),
    # -- pass: a private fill -----------------------------------------------------------------
    pytest.param(
        request([("Authorization", "Bearer t")]),
        None,
        False,
        0,
        d(A.PASS, F.URI_MISS),
        id="authorization",
    ),
    pytest.param(
        request([("Authorization", "Bearer t")]),
        None,
        True,
        0,
        d(A.PASS, F.URI_MISS),
        id="authorization-never-joins",
    ),
    pytest.param(
        request([("Cache-Control", "no-store")]),
        None,
        False,
        0,
        d(A.PASS, F.URI_MISS),
        id="request-no-store",
    ),
    pytest.param(request(pass_marked=True), None, False, 0, d(A.PASS, F.BYPASS), id="pass-marked"),
    pytest.param(
        request(pass_marked=True), None, True, 0, d(A.PASS, F.BYPASS), id="pass-marked-never-joins"
    ),
    # -- load shedding: misses only, by priority share ----------------------------------------
    pytest.param(request(misses=7), None, False, 0, d(A.LEAD_FILL, F.URI_MISS), id="load-under"),
    pytest.param(
        request(misses=8),
        None,
        False,
        0,
        d(A.SHED, F.URI_MISS, shed=Shed.SHED_REQUESTS),
        id="shed-requests",
    ),
    pytest.param(
        request(fetches=8),
        None,
        False,
        0,
        d(A.SHED, F.URI_MISS, shed=Shed.SHED_FILLS),
        id="shed-fills",
    ),
    pytest.param(
        request(fetches=8),
        None,
        True,
        0,
        d(A.JOIN_FILL, F.URI_MISS),
        id="joining-costs-no-fill",
    ),
    pytest.param(
        request(fetches=8, pass_marked=True),
        None,
        True,
        0,
        d(A.SHED, F.BYPASS, shed=Shed.SHED_FILLS),
        id="pass-needs-a-fill",
    ),
    pytest.param(
        request(url=MPD, misses=10),
        None,
        False,
        0,
        d(A.LEAD_FILL, F.URI_MISS, key=KM),
        id="manifest-reserve",
    ),
    pytest.param(
        request(url=MPD, misses=11),
        None,
        False,
        0,
        d(A.SHED, F.URI_MISS, shed=Shed.SHED_REQUESTS, key=KM),
        id="manifest-shed",
    ),
    pytest.param(
        request(misses=8, vary_miss=True),
        None,
        False,
        0,
        d(A.SHED, F.VARY_MISS, shed=Shed.SHED_REQUESTS),
        id="shed-vary-miss",
    ),
    pytest.param(
        request(misses=8),
        MAX60,
        False,
        80,
        d(A.SERVE_STALE, F.STALE, R.IF_BUSY, shed=Shed.SHED_REQUESTS),
        id="shed-stale-in-window",
    ),
    pytest.param(
        request(fetches=8),
        MAX60,
        False,
        90,
        d(A.SERVE_STALE, F.STALE, R.IF_BUSY, shed=Shed.SHED_FILLS),
        id="shed-stale-window-edge",
    ),
    pytest.param(
        request(misses=8),
        MAX60,
        False,
        100,
        d(A.SHED, F.STALE, shed=Shed.SHED_REQUESTS),
        id="shed-stale-out-of-window",
    ),
    pytest.param(
        request(misses=8),
        MUST,
        False,
        80,
        d(A.SHED, F.STALE, shed=Shed.SHED_REQUESTS),
        id="shed-must-revalidate",
    ),
    # -- after a failed fill: stale-if-error (RFC 5861 §4), one retry, then FAIL ---------------
    pytest.param(
        request(failures=1),
        SIE,
        False,
        200,
        d(A.SERVE_STALE, F.STALE, R.IF_ERROR),
        id="error-response-stale-if-error",
    ),
    pytest.param(
        request(failures=1),
        SIE,
        False,
        400,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="error-past-response-window-retries",
    ),
    pytest.param(
        request(failures=1),
        MAX60,
        False,
        150,
        d(A.SERVE_STALE, F.STALE, R.IF_ERROR),
        id="error-policy-stale-if-error",
    ),
    pytest.param(
        request(failures=1),
        MAX60,
        False,
        200,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="error-past-policy-window-retries",
    ),
    pytest.param(
        request(failures=1),
        cc("max-age=60, stale-if-error=10"),
        False,
        80,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="error-response-window-beats-policy",
    ),
    pytest.param(
        request(failures=1),
        MUST,
        False,
        80,
        d(A.REVALIDATE, F.STALE, conditional=BOTH),
        id="error-must-revalidate-retries",
    ),
    pytest.param(request(failures=1), None, False, 0, d(A.LEAD_FILL, F.URI_MISS), id="error-lead"),
    pytest.param(request(failures=1), None, True, 0, d(A.JOIN_FILL, F.URI_MISS), id="error-join"),
    pytest.param(request(failures=2), None, False, 0, d(A.FAIL, F.URI_MISS), id="error-twice"),
    pytest.param(
        request(failures=2), MAX60, False, 400, d(A.FAIL, F.STALE), id="error-twice-stale"
    ),
    pytest.param(
        request(failures=2),
        SIE,
        False,
        200,
        d(A.SERVE_STALE, F.STALE, R.IF_ERROR),
        id="error-twice-stale-if-error",
    ),
    pytest.param(
        request(failures=1, retryable=False),
        None,
        True,
        0,
        d(A.FAIL, F.URI_MISS),
        id="error-not-retryable",
    ),
    pytest.param(
        request(failures=1, retryable=False),
        SIE,
        False,
        200,
        d(A.SERVE_STALE, F.STALE, R.IF_ERROR),
        id="error-not-retryable-stale-if-error",
    ),
    pytest.param(
        request(failures=2, pass_marked=True),
        None,
        False,
        0,
        d(A.FAIL, F.BYPASS),
        id="error-twice-pass",
    ),
]


@pytest.mark.parametrize(("req", "fields", "in_flight", "after", "expected"), CASES)
def test_decide_outcomes(req, fields, in_flight, after, expected):
    """Each set of facts ends in one decision: action, fwd, stale reason, validators, shed."""
    stored = None if fields is None else stored_response(fields)
    fill = req.key if in_flight else None
    assert decide(req, stored, fill, policy(), RT + after) == expected


def test_decide_covers_every_action_reason_and_fwd():
    """The table above reaches every Action, every StaleReason and every fwd a GET can get."""
    decisions = [x for p in CASES if isinstance(x := p.values[-1], Decision)]
    assert len(decisions) == len(CASES)
    assert {x.action for x in decisions} == set(Action)
    assert {x.reason for x in decisions} == {*StaleReason, None}
    assert {x.fwd for x in decisions} == {*Fwd, None} - {Fwd.METHOD}  # METHOD: not a GET
    assert {x.conditional for x in decisions} >= {BOTH, INM, IMS, ()}


@pytest.mark.parametrize(
    ("fields", "after", "default", "expected"),
    [
        pytest.param(SIE, 200, 0, True, id="own-window"),
        pytest.param(SIE, 400, 1000, False, id="past-own-window-whatever-the-default"),
        pytest.param(MAX60, 150, 120, True, id="default-window"),
        pytest.param(MAX60, 200, 120, False, id="past-default-window"),
        pytest.param(MAX60, 10, 0, True, id="still-fresh"),
        pytest.param(MUST, 80, 120, False, id="must-revalidate"),
        pytest.param(cc("max-age=60, proxy-revalidate"), 80, 120, False, id="proxy-revalidate"),
        pytest.param(NO_CACHE, 80, 120, False, id="no-cache"),
    ],
)
def test_may_serve_if_error(fields, after, default, expected):
    """stale-if-error (RFC 5861 §4): the response's own window, else the default one,
    past expiry; never when must-revalidate, proxy-revalidate or no-cache forbid it.
    The fetcher asks it before failing a fill on a 5xx; decide, after the failure."""
    assert may_serve_if_error(stored_response(fields), RT + after, default) is expected


# -- freshness: the fast path, the full RFC path and the stored ttl agree ----------------------

FRESH, STALE, MUST_VALIDATE = Lookup.FRESH, Lookup.STALE, Lookup.MUST_VALIDATE
DELAY = 1.0  # request_time is one second before response_time: the age starts at 1


def fields(*pairs: tuple[str, str], date: float | None = RT) -> list[tuple[str, str]]:
    return ([("Date", format_http_date(date))] if date is not None else []) + list(pairs)


# (fields, status, fresh for (seconds after RT), lookup once not fresh)
RESPONSES = [
    pytest.param(fields(("Cache-Control", "max-age=60")), 200, 59, STALE, id="max-age"),
    pytest.param(
        fields(("Cache-Control", "s-maxage=120, max-age=10")),
        200,
        119,
        MUST_VALIDATE,
        id="s-maxage",
    ),
    pytest.param(fields(("Expires", format_http_date(RT + 300))), 200, 299, STALE, id="expires"),
    pytest.param(fields(("Expires", "0")), 200, 0, STALE, id="expires-invalid"),
    pytest.param(
        fields(("Cache-Control", "max-age=30"), ("Expires", format_http_date(RT + 300))),
        200,
        29,
        STALE,
        id="max-age-over-expires",
    ),
    pytest.param(fields(("Cache-Control", "max-age=abc")), 200, 0, STALE, id="max-age-invalid"),
    pytest.param(
        fields(("Cache-Control", "max-age=60"), date=None), 200, 59, STALE, id="no-date-max-age"
    ),
    pytest.param(
        fields(("Expires", format_http_date(RT + 300)), date=None),
        200,
        0,
        STALE,
        id="no-date-expires",
    ),
    pytest.param(fields(("Cache-Control", "max-age=60"), ("Age", "20")), 200, 39, STALE, id="age"),
    pytest.param(
        fields(("Cache-Control", "max-age=60"), ("Age", "100")),
        200,
        0,
        STALE,
        id="age-over-max-age",
    ),
    pytest.param(
        fields(("Cache-Control", "max-age=60"), date=RT - 30), 200, 30, STALE, id="date-in-past"
    ),
    pytest.param(
        fields(("Cache-Control", "max-age=60, stale-while-revalidate=30")),
        200,
        59,
        STALE,
        id="stale-while-revalidate",
    ),
    pytest.param(
        fields(("Cache-Control", "max-age=60, must-revalidate")),
        200,
        59,
        MUST_VALIDATE,
        id="must-revalidate",
    ),
    pytest.param(
        fields(("Cache-Control", "max-age=60, proxy-revalidate")),
        200,
        59,
        MUST_VALIDATE,
        id="proxy-revalidate",
    ),
    pytest.param(
        fields(("Cache-Control", "no-cache"), ("ETag", ETAG)), 200, 0, MUST_VALIDATE, id="no-cache"
    ),
    pytest.param(
        fields(("Cache-Control", "no-cache, max-age=60"), ("ETag", ETAG)),
        200,
        0,  # never FRESH, though its lifetime is 60 s
        MUST_VALIDATE,
        id="no-cache-max-age",
    ),
    pytest.param(
        fields(("Last-Modified", format_http_date(RT - 10_000))),
        200,
        999,
        STALE,
        id="heuristic",
    ),
    pytest.param(
        fields(("Last-Modified", format_http_date(RT - 1_000_000))),
        200,
        3599,
        STALE,
        id="heuristic-capped",
    ),
    pytest.param(
        fields(("Last-Modified", format_http_date(RT - 10_000))),
        404,
        999,
        STALE,
        id="heuristic-404",
    ),
    pytest.param(
        fields(("Last-Modified", format_http_date(RT - 10_000))),
        302,
        0,
        STALE,
        id="no-heuristic-302",
    ),
    pytest.param(
        fields(("Cache-Control", "public"), ("Last-Modified", format_http_date(RT - 10_000))),
        302,
        999,
        STALE,
        id="heuristic-public-302",
    ),
]
MOMENTS = ["fresh", "just-expired", "long-expired"]


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize(("pairs", "status", "fresh_for", "once_stale"), RESPONSES)
def test_freshness_fast_path_classify_and_ttl_agree(pairs, status, fresh_for, once_stale, moment):
    """Lookup's fast path, RFC 9111 ``classify`` and the stored ttl agree on FRESH, and
    the first two on STALE vs MUST_VALIDATE (no-cache, must-revalidate, s-maxage)."""
    obj = stored_response(pairs, status=status, delay=DELAY)
    now = {
        "fresh": RT + max(fresh_for - 1, 0),
        "just-expired": RT + fresh_for,
        "long-expired": RT + fresh_for + 86_400,
    }[moment]
    expected = FRESH if now < RT + fresh_for else once_stale
    fast = freshness(obj, EMPTY, now, HEURISTIC)
    full = classify(
        EMPTY,
        obj.headers,
        status=obj.status,
        request_time=obj.request_time,
        response_time=obj.response_time,
        now=now,
        heuristic_max_age=HEURISTIC,
    )
    assert (fast, full) == (expected, expected)
    # ttl is the lifetime left; a no-cache response keeps its lifetime but is flagged
    # must_validate, which the fast path checks first.
    assert (obj.ttl(now) > 0 and not obj.must_validate) == (expected is FRESH)


@pytest.mark.parametrize(
    "req",
    [
        pytest.param(request(), id="calm"),
        pytest.param(request(misses=100, fetches=100, busy=True), id="full-load-busy-budget"),
        pytest.param(request(pass_marked=True), id="pass-marked"),
        pytest.param(request((("Cache-Control", "only-if-cached"),)), id="only-if-cached"),
        pytest.param(request((("Cache-Control", "no-store"),)), id="request-no-store"),
        pytest.param(request((("Authorization", "Bearer x"),)), id="authorization"),
        pytest.param(request(vary_miss=True), id="vary-miss-flag"),
    ],
)
@pytest.mark.parametrize("in_flight", [False, True], ids=["no-fill", "fill-in-flight"])
@pytest.mark.parametrize(
    "fields",
    [
        pytest.param((("Cache-Control", "max-age=60"),), id="max-age"),
        pytest.param((("Cache-Control", "max-age=60, must-revalidate"),), id="must-revalidate"),
        pytest.param((("Cache-Control", "max-age=60, stale-while-revalidate=30"),), id="swr"),
        pytest.param(
            (("Date", DATE), ("Last-Modified", format_http_date(RT - 100_000))), id="heuristic"
        ),
    ],
)
def test_decide_fresh_is_served_whatever_the_other_facts(req, in_flight, fields):
    """The driver's hit path serves when ``freshness`` says FRESH without building the
    other facts: ``decide`` must answer exactly ``FRESH_HIT`` then, whatever they are."""
    stored = stored_response(fields)
    now = RT + 5
    assert freshness(stored, req.headers, now, HEURISTIC) is Lookup.FRESH
    fill = req.key if in_flight else None
    assert decide(req, stored, fill, policy(), now) == FRESH_HIT


# --- targeted cache control (RFC 9213 §2.2) and negative TTLs ------------------------


def targeted_response(fields: Fields, *, status: int = 200, negative: float | None = None):
    """A stored response built as ``Fetcher._object`` builds one for a node whose target
    list is CDN-Cache-Control: its policy view, and a negative TTL if given."""
    headers = CIMultiDictProxy(CIMultiDict(fields))
    view = cache_headers(headers, ("CDN-Cache-Control",))
    lifetime = freshness_lifetime(status, view, heuristic_max_age=HEURISTIC)
    return CachedObject(
        key=SEG,
        vary_names=(),
        vary_key=(),
        status=status,
        headers=headers,
        body=b"body",
        request_time=RT,
        response_time=RT,
        lifetime=lifetime if negative is None else negative,
        initial_age=current_age(headers, RT, RT, RT),
        must_validate="no-cache" in parse_cache_control(view),
        policy_headers=None if view is headers else CIMultiDictProxy(view),
    )


def cdn(cache_control: str, targeted: str) -> list[tuple[str, str]]:
    return [*cc(cache_control), ("CDN-Cache-Control", targeted)]


@pytest.mark.parametrize(
    ("req", "fields", "after", "expected"),
    [
        pytest.param(
            request(),
            cdn("max-age=60, must-revalidate", "max-age=60, stale-while-revalidate=30"),
            70,
            d(A.SERVE_STALE_AND_REVALIDATE, F.STALE, R.WHILE_REVALIDATE, BOTH),
            id="s2.2-swr-over-must-revalidate",
        ),
        pytest.param(
            request(),
            cdn("max-age=60, stale-while-revalidate=30", "max-age=60, must-revalidate"),
            70,
            d(A.REVALIDATE, F.STALE, conditional=BOTH),
            id="s2.2-must-revalidate-over-swr",
        ),
        pytest.param(
            request(),
            cdn("max-age=60", "no-cache"),
            1,
            d(A.REVALIDATE, F.STALE, conditional=BOTH),
            id="s2.2-no-cache",
        ),
        pytest.param(
            request([("Cache-Control", "max-stale=100")]),
            cdn("max-age=60, stale-while-revalidate=30", "max-age=60, proxy-revalidate"),
            70,
            d(A.REVALIDATE, F.STALE, conditional=BOTH),
            id="s2.2-classify-reads-the-view",
        ),
        pytest.param(
            request(),
            cdn("max-age=0", "max-age=60"),
            30,
            FRESH_HIT,
            id="s2.2-cdn-max-age-over-max-age-0",
        ),
    ],
)
def test_decide_obeys_the_targeted_field(req, fields, after, expected):
    """Freshness and the stale rules come from CDN-Cache-Control, not Cache-Control."""
    stored = targeted_response(fields)
    assert decide(req, stored, None, policy(), RT + after) == expected


@pytest.mark.parametrize(
    ("req", "after", "expected"),
    [
        pytest.param(request(), 1, FRESH_HIT, id="fast-path"),
        pytest.param(request([("Cache-Control", "min-fresh=0")]), 1, FRESH_HIT, id="classify"),
        pytest.param(request(), 3, d(A.REVALIDATE, F.STALE), id="expired-no-validators"),
    ],
)
def test_decide_negative_ttl_lifetime(req, after, expected):
    """A 404 stored for its negative TTL is fresh for that long on either path."""
    stored = targeted_response([("Date", DATE)], status=404, negative=2.0)
    assert decide(req, stored, None, policy(), RT + after) == expected
