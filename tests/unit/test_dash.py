"""Table-driven tests for shared.dash (MPD parsing, path classification, next segments)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import shared.dash
from shared.dash import (
    ContentKind,
    SegmentIndex,
    SegmentKind,
    Timeline,
    is_manifest,
    parse_mpd,
    presentation,
    template,
)
from shared.dash import index as index_module
from shared.dash import mpd as mpd_module
from shared.policy.shedding import Priority, priority_of

INIT, MEDIA = SegmentKind.INIT, SegmentKind.MEDIA


def mpd(body: str, **attrs: str) -> bytes:
    extra = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {extra}>{body}</MPD>'.encode()


# Representation-level templates, $Number%05d$, bandwidths out of document order; the
# audio id holds regex metacharacters. 10 s of 4 s segments: 3 segments.
REP_LEVEL = mpd(
    """
  <Period id="p0">
    <AdaptationSet contentType="video">
      <Representation id="hi" bandwidth="800000" width="640" height="360">
        <SegmentTemplate timescale="1000" duration="4000"
                         initialization="init-$RepresentationID$.mp4"
                         media="seg-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
      <Representation id="lo" bandwidth="200000" width="320" height="180">
        <SegmentTemplate timescale="1000" duration="4000"
                         initialization="init-$RepresentationID$.mp4"
                         media="seg-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
      <Representation id="mid" bandwidth="400000" width="480" height="270">
        <SegmentTemplate timescale="1000" duration="4000"
                         initialization="init-$RepresentationID$.mp4"
                         media="seg-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="en.1+" bandwidth="64000">
        <SegmentTemplate timescale="1000" duration="4000" startNumber="0"
                         initialization="init-$RepresentationID$.mp4"
                         media="seg-$RepresentationID$-$Number%05d$.m4s?token=abc"/>
      </Representation>
    </AdaptationSet>
  </Period>""",
    type="static",
    mediaPresentationDuration="PT10S",
)

# AdaptationSet-level template with $Bandwidth$ and $$, one Representation overriding
# media only, BaseURL at MPD, AdaptationSet and Representation level (one absolute).
# Period of 8 s in 2 s segments: 4 segments.
ASET_LEVEL = mpd(
    """
  <BaseURL>content/</BaseURL>
  <Period duration="PT8S">
    <AdaptationSet contentType="video">
      <BaseURL>video/</BaseURL>
      <SegmentTemplate timescale="90000" duration="180000"
                       initialization="$Bandwidth$/init.mp4" media="$Bandwidth$/seg$$$Number$.m4s"/>
      <Representation id="a" bandwidth="500000"/>
      <Representation id="b" bandwidth="1500000">
        <SegmentTemplate media="hd/$Number%03d$.m4s"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="application/ttml+xml">
      <Representation id="subs" bandwidth="1000">
        <BaseURL>http://cdn.example.com/subs/</BaseURL>
        <SegmentTemplate duration="2" media="sub-$Number$.ttml"/>
      </Representation>
    </AdaptationSet>
  </Period>""",
    type="static",
)

# SegmentTimeline: $Time$ (times 0 4 8 12 20 25 30: r repeats, t carried on, and r=-1 up
# to the 35 s period end) and $Number$ with startNumber 5 (r=-1 of 10 s: numbers 5..8).
TIMELINE = mpd(
    """
  <Period>
    <AdaptationSet contentType="video">
      <SegmentTemplate timescale="1" initialization="$RepresentationID$/init.mp4"
                       media="$RepresentationID$/$Time$.m4s">
        <SegmentTimeline><S t="0" d="4" r="2"/><S d="3"/><S t="20" d="5" r="-1"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v1" bandwidth="100"/>
      <Representation id="v2" bandwidth="300"/>
    </AdaptationSet>
    <AdaptationSet contentType="audio">
      <SegmentTemplate timescale="1" startNumber="5" media="$RepresentationID$/n$Number$.m4s">
        <SegmentTimeline><S t="0" d="10" r="-1"/></SegmentTimeline>
      </SegmentTemplate>
      <Representation id="a1" bandwidth="64"/>
    </AdaptationSet>
  </Period>""",
    type="static",
    mediaPresentationDuration="PT35S",
)

# Live: no last segment, by duration and by an open-ended timeline.
DYNAMIC = mpd(
    """
  <Period start="PT0S">
    <AdaptationSet mimeType="video/mp4">
      <Representation id="live" bandwidth="1000">
        <SegmentTemplate duration="2" startNumber="100" initialization="live-init.mp4"
                         media="live-$Number$.m4s"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="aud" bandwidth="1000">
        <SegmentTemplate timescale="48000" media="aud/$Time$.m4s">
          <SegmentTimeline><S t="1000" d="96000" r="-1"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
    </AdaptationSet>
  </Period>""",
    type="dynamic",
    mediaPresentationDuration="PT10S",
)

# Two periods in their own folders: 4 s (up to the next start), then up to the 10 s total.
PERIODS = mpd(
    """
  <Period id="one"><BaseURL>p1/</BaseURL>
    <AdaptationSet contentType="video"><Representation id="v" bandwidth="1">
      <SegmentTemplate duration="2" media="$RepresentationID$-$Number$.m4s"/>
    </Representation></AdaptationSet>
  </Period>
  <Period id="two" start="PT4S"><BaseURL>p2/</BaseURL>
    <AdaptationSet contentType="video"><Representation id="v" bandwidth="1">
      <SegmentTemplate duration="2" media="$RepresentationID$-$Number$.m4s"/>
    </Representation></AdaptationSet>
  </Period>""",
    type="static",
    mediaPresentationDuration="P0Y0M0DT0H0M10.000S",
)

# Junk attributes and invalid templates: skipped or defaulted, never raised.
JUNK = mpd(
    """
  <Period>
    <AdaptationSet contentType="image">
      <Representation id="x" bandwidth="fast">
        <SegmentTemplate timescale="0" duration="-4" startNumber="z" media="x-$Number$.m4s">
          <SegmentTimeline><S t="0"/><S t="0" d="2" r="1"/></SegmentTimeline>
        </SegmentTemplate>
      </Representation>
      <Representation id="bad1" bandwidth="1"><SegmentTemplate media="$Foo$.m4s"/></Representation>
      <Representation id="bad2" bandwidth="2">
        <SegmentTemplate media="$RepresentationID%02d$-$Number$.m4s"/>
      </Representation>
      <Representation id="none" bandwidth="3"/>
      <Representation id="bare" bandwidth="4">
        <SegmentTemplate media="bare-$Number$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>""",
    mediaPresentationDuration="soon",
)


def index(*mpds: tuple[str, bytes]) -> SegmentIndex:
    idx = SegmentIndex()
    for path, xml in mpds:
        assert idx.learn(path, xml) is not None
    return idx


ALL = index(
    ("/t1/manifest.mpd", REP_LEVEL),
    ("/t2/manifest.mpd", ASET_LEVEL),
    ("/t3/manifest.mpd?v=2", TIMELINE),
    ("/live/ch1.mpd", DYNAMIC),
    ("/mp/manifest.mpd", PERIODS),
    ("/junk/manifest.mpd", JUNK),
)


# --- parse_mpd -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        pytest.param(
            REP_LEVEL,
            [
                ("hi", 800000, ContentKind.VIDEO, 2, 3, 640, 360),
                ("lo", 200000, ContentKind.VIDEO, 0, 3, 320, 180),
                ("mid", 400000, ContentKind.VIDEO, 1, 3, 480, 270),
                ("en.1+", 64000, ContentKind.AUDIO, 0, 1, None, None),
            ],
            id="rep-level",
        ),
        pytest.param(
            ASET_LEVEL,
            [
                ("a", 500000, ContentKind.VIDEO, 0, 2, None, None),
                ("b", 1500000, ContentKind.VIDEO, 1, 2, None, None),
                ("subs", 1000, ContentKind.TEXT, 0, 1, None, None),
            ],
            id="aset-level",
        ),
        pytest.param(
            JUNK,
            [
                ("x", 0, ContentKind.OTHER, 0, 5, None, None),
                ("bare", 4, ContentKind.OTHER, 4, 5, None, None),
            ],
            id="junk-skipped",
        ),
    ],
)
def test_parse_mpd_representations(xml, expected):
    """Representations in document order with kind and rank by bandwidth in their set."""
    reps = parse_mpd(xml, "/t/manifest.mpd").representations
    got = [(r.id, r.bandwidth, r.kind, r.rank, r.ranks, r.width, r.height) for r in reps]
    assert got == expected


@pytest.mark.parametrize(
    ("xml", "rep_id", "init", "media", "start", "length"),
    [
        pytest.param(
            REP_LEVEL, "lo", "/t/init-lo.mp4", "/t/seg-lo-$Number%05d$.m4s", 1, 3, id="rep-level"
        ),
        pytest.param(
            REP_LEVEL,
            "en.1+",
            "/t/init-en.1+.mp4",
            "/t/seg-en.1+-$Number%05d$.m4s",
            0,
            3,
            id="query-dropped",
        ),
        pytest.param(
            ASET_LEVEL,
            "a",
            "/t/content/video/500000/init.mp4",
            "/t/content/video/500000/seg$$$Number$.m4s",
            1,
            4,
            id="aset-bandwidth-baseurl",
        ),
        pytest.param(
            ASET_LEVEL,
            "b",
            "/t/content/video/1500000/init.mp4",
            "/t/content/video/hd/$Number%03d$.m4s",
            1,
            4,
            id="rep-overrides-media",
        ),
        pytest.param(ASET_LEVEL, "subs", None, "/subs/sub-$Number$.ttml", 1, 4, id="absolute"),
        pytest.param(TIMELINE, "v1", "/t/v1/init.mp4", "/t/v1/$Time$.m4s", 1, 7, id="timeline"),
        pytest.param(TIMELINE, "a1", None, "/t/a1/n$Number$.m4s", 5, 4, id="timeline-open-r"),
        pytest.param(
            DYNAMIC, "live", "/t/live-init.mp4", "/t/live-$Number$.m4s", 100, None, id="dynamic"
        ),
        pytest.param(JUNK, "x", None, "/t/x-$Number$.m4s", 1, 2, id="junk-defaults"),
    ],
)
def test_parse_mpd_streams(xml, rep_id, init, media, start, length):
    """Templates resolve against BaseURLs to absolute paths; lengths bound static timelines."""
    [stream] = [
        s for s in parse_mpd(xml, "/t/manifest.mpd").streams if s.representation.id == rep_id
    ]
    assert (stream.initialization, stream.media) == (init, media)
    assert (stream.start_number, stream.timeline.length) == (start, length)


def test_parse_mpd_presentation_fields():
    """Type, duration (xs:duration with Y/M/D parts) and the MPD path without its query."""
    p = parse_mpd(PERIODS, "mp/manifest.mpd?x=1")
    assert (p.mpd_path, p.dynamic, p.duration) == ("/mp/manifest.mpd", False, 10.0)
    assert [s.representation.period for s in p.streams] == [0, 1]
    assert [s.timeline.length for s in p.streams] == [2, 3]
    live = parse_mpd(DYNAMIC, "/live/ch1.mpd")
    assert (live.dynamic, live.duration) == (True, 10.0)
    assert parse_mpd(JUNK, "/j.mpd").duration is None


@pytest.mark.parametrize(
    "xml",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<MPD", id="truncated"),
        pytest.param(b"not xml at all", id="text"),
        pytest.param(b"<html><body/></html>", id="not-mpd"),
        pytest.param(b"<MPD xmlns='urn:other'/>", id="wrong-namespace"),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(
                f'<!ENTITY a{i} "{("&a;" if i == 0 else f"&a{i - 1};") * 10}">'.encode()
                for i in range(9)
            )
            + b']><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><BaseURL>&a8;</BaseURL></MPD>',
            id="entity-bomb",
        ),
    ],
)
def test_index_learn_malformed_is_none(xml):
    """Malformed XML, other documents and entity bombs: learn gives None and keeps nothing."""
    idx = SegmentIndex()
    assert idx.learn("/t/manifest.mpd", xml) is None
    assert len(idx) == 0
    with pytest.raises(ValueError):
        parse_mpd(xml, "/t/manifest.mpd")


# --- Timeline ------------------------------------------------------------------------


TL = parse_mpd(TIMELINE, "/t/m.mpd").streams[0].timeline


@pytest.mark.parametrize(
    ("index", "time"),
    [(0, 0), (2, 8), (3, 12), (4, 20), (6, 30), (7, None), (-1, None)],
)
def test_timeline_time_at(index, time):
    """Start time of the index-th segment across runs; None past the end."""
    assert TL.time_at(index) == time


@pytest.mark.parametrize(
    ("time", "index"),
    [(0, 0), (8, 2), (12, 3), (20, 4), (30, 6), (5, None), (15, None), (35, None), (-4, None)],
)
def test_timeline_index_of(time, index):
    """Index of the segment starting at time; None off the timeline (gaps, past the end)."""
    assert TL.index_of(time) == index


def test_timeline_empty():
    """No duration and no SegmentTimeline: nothing known."""
    assert (Timeline().time_at(0), Timeline().index_of(0), Timeline().length) == (None, None, None)


# --- classify ------------------------------------------------------------------------


CLASSIFIED = [
    ("/t1/init-hi.mp4", INIT, "hi", 2, 3, None, None, "/t1/manifest.mpd"),
    ("/t1/init-lo.mp4", INIT, "lo", 0, 3, None, None, "/t1/manifest.mpd"),
    ("/t1/seg-mid-00002.m4s", MEDIA, "mid", 1, 3, 2, None, "/t1/manifest.mpd"),
    ("/t1/seg-lo-00003.m4s?session=9", MEDIA, "lo", 0, 3, 3, None, "/t1/manifest.mpd"),
    ("/t1/seg-lo-123456.m4s", MEDIA, "lo", 0, 3, 123456, None, "/t1/manifest.mpd"),
    ("/t1/seg-lo-00099.m4s", MEDIA, "lo", 0, 3, 99, None, "/t1/manifest.mpd"),
    ("/t1/seg-en.1+-00000.m4s", MEDIA, "en.1+", 0, 1, 0, None, "/t1/manifest.mpd"),
    ("/t2/content/video/500000/init.mp4", INIT, "a", 0, 2, None, None, "/t2/manifest.mpd"),
    ("/t2/content/video/500000/seg$4.m4s", MEDIA, "a", 0, 2, 4, None, "/t2/manifest.mpd"),
    ("/t2/content/video/1500000/init.mp4", INIT, "b", 1, 2, None, None, "/t2/manifest.mpd"),
    ("/t2/content/video/hd/001.m4s", MEDIA, "b", 1, 2, 1, None, "/t2/manifest.mpd"),
    ("/subs/sub-2.ttml", MEDIA, "subs", 0, 1, 2, None, "/t2/manifest.mpd"),
    ("/t3/v2/init.mp4", INIT, "v2", 1, 2, None, None, "/t3/manifest.mpd"),
    ("/t3/v1/25.m4s", MEDIA, "v1", 0, 2, None, 25, "/t3/manifest.mpd"),
    ("/t3/v1/7.m4s", MEDIA, "v1", 0, 2, None, 7, "/t3/manifest.mpd"),
    ("/t3/a1/n6.m4s", MEDIA, "a1", 0, 1, 6, None, "/t3/manifest.mpd"),
    ("/live/live-init.mp4", INIT, "live", 0, 1, None, None, "/live/ch1.mpd"),
    ("/live/live-987654.m4s", MEDIA, "live", 0, 1, 987654, None, "/live/ch1.mpd"),
    ("/mp/p2/v-3.m4s#frag", MEDIA, "v", 0, 1, 3, None, "/mp/manifest.mpd"),
]


@pytest.mark.parametrize(
    ("path", "kind", "rep_id", "rank", "ranks", "number", "time", "mpd_path"),
    CLASSIFIED,
    ids=[row[0] for row in CLASSIFIED],
)
def test_index_classify_segments(path, kind, rep_id, rank, ranks, number, time, mpd_path):
    """Init and media paths map to their representation, rank, number or time and MPD."""
    info = ALL.classify(path)
    assert info is not None
    assert (info.kind, info.representation.id, info.number, info.time) == (
        kind,
        rep_id,
        number,
        time,
    )
    assert (info.representation.rank, info.representation.ranks) == (rank, ranks)
    assert info.mpd_path == mpd_path


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/t1/seg-lo-1.m4s", id="missing-zero-pad"),
        pytest.param("/t1/seg-lo-000001.m4s", id="extra-zero-pad"),
        pytest.param("/t1/seg-lo-00001.m4sx", id="suffix"),
        pytest.param("/t1/seg-lo-00001xm4s", id="dot-is-literal"),
        pytest.param("/t1/seg-enX1+-00000.m4s", id="id-dot-is-literal"),
        pytest.param("/t1/seg-en.11-00000.m4s", id="id-plus-is-literal"),
        pytest.param("/t1/seg-xx-00001.m4s", id="unknown-rep"),
        pytest.param("/t1/seg-lo--0001.m4s", id="negative"),
        pytest.param("/t1/sub/seg-lo-00001.m4s", id="deeper-dir"),
        pytest.param("/seg-lo-00001.m4s", id="parent-dir"),
        pytest.param("/t9/seg-lo-00001.m4s", id="other-title"),
        pytest.param("/t1/manifest.mpd", id="manifest"),
        pytest.param("/t2/content/video/500000/seg4.m4s", id="dollar-missing"),
        pytest.param("/t2/content/video/hd/01.m4s", id="width-3"),
        pytest.param("/t3/v1/abc.m4s", id="time-not-digits"),
        pytest.param("/junk/bad1-1.m4s", id="invalid-template"),
        pytest.param("", id="empty"),
        pytest.param("no-slash", id="relative"),
    ],
)
def test_index_classify_unknown(path):
    """Paths no learned template produces: None."""
    assert ALL.classify(path) is None


# --- next_segments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "k", "expected"),
    [
        pytest.param(
            "/t1/seg-lo-00001.m4s", 2, ["/t1/seg-lo-00002.m4s", "/t1/seg-lo-00003.m4s"], id="number"
        ),
        pytest.param("/t1/seg-lo-00002.m4s?q=1", 5, ["/t1/seg-lo-00003.m4s"], id="stops-at-end"),
        pytest.param("/t1/seg-lo-00003.m4s", 5, [], id="last"),
        pytest.param("/t1/seg-lo-00099.m4s", 5, [], id="past-end"),
        pytest.param("/t1/seg-en.1+-00000.m4s", 1, ["/t1/seg-en.1+-00001.m4s"], id="start-0"),
        pytest.param("/t1/seg-lo-00001.m4s", 0, [], id="k-0"),
        pytest.param("/t1/init-lo.mp4", 3, [], id="init"),
        pytest.param("/t1/nothing.m4s", 3, [], id="unknown"),
        pytest.param(
            "/t2/content/video/500000/seg$1.m4s",
            2,
            ["/t2/content/video/500000/seg$2.m4s", "/t2/content/video/500000/seg$3.m4s"],
            id="dollar",
        ),
        pytest.param(
            "/t3/v1/4.m4s", 3, ["/t3/v1/8.m4s", "/t3/v1/12.m4s", "/t3/v1/20.m4s"], id="time-runs"
        ),
        pytest.param("/t3/v2/25.m4s", 5, ["/t3/v2/30.m4s"], id="time-stops-at-end"),
        pytest.param("/t3/v1/5.m4s", 2, [], id="time-off-timeline"),
        pytest.param("/t3/a1/n7.m4s", 3, ["/t3/a1/n8.m4s"], id="number-timeline"),
        pytest.param("/t3/a1/n4.m4s", 3, [], id="below-start-number"),
        pytest.param(
            "/live/live-100000.m4s",
            3,
            ["/live/live-100001.m4s", "/live/live-100002.m4s", "/live/live-100003.m4s"],
            id="live-number-unbounded",
        ),
        pytest.param(
            f"/live/aud/{1000 + 96000 * 50}.m4s",
            2,
            [f"/live/aud/{1000 + 96000 * 51}.m4s", f"/live/aud/{1000 + 96000 * 52}.m4s"],
            id="live-time-open",
        ),
        pytest.param("/live/aud/1001.m4s", 2, [], id="live-time-off-grid"),
        pytest.param("/mp/p1/v-1.m4s", 3, ["/mp/p1/v-2.m4s"], id="period-1-ends"),
        pytest.param("/mp/p2/v-1.m4s", 3, ["/mp/p2/v-2.m4s", "/mp/p2/v-3.m4s"], id="period-2"),
        pytest.param("/junk/x-1.m4s", 3, ["/junk/x-2.m4s"], id="junk-timeline"),
        pytest.param(
            "/junk/bare-7.m4s",
            2,
            ["/junk/bare-8.m4s", "/junk/bare-9.m4s"],
            id="no-timing-unbounded",
        ),
    ],
)
def test_index_next_segments(path, k, expected):
    """The next k media paths in the same representation, stopping at the last segment."""
    assert ALL.next_segments(path, k) == expected


# --- LRU -----------------------------------------------------------------------------


def titled(title: str) -> tuple[str, bytes]:
    return f"/{title}/manifest.mpd", REP_LEVEL


def test_index_lru_bound():
    """At most max_presentations; the least recently learned or classified goes first."""
    idx = SegmentIndex(max_presentations=2)
    for title in ("a", "b"):
        idx.learn(*titled(title))
    assert idx.classify("/a/init-lo.mp4") is not None  # a is now the most recent
    idx.learn(*titled("c"))
    assert len(idx) == 2
    assert "/b/manifest.mpd" not in idx
    assert idx.classify("/b/init-lo.mp4") is None
    assert idx.classify("/a/init-lo.mp4") is not None
    assert idx.classify("/c/seg-hi-00001.m4s") is not None
    assert re.fullmatch(r"SegmentIndex\(presentations=2/2, dirs=2\)", repr(idx))


def test_index_relearn_replaces():
    """Learning an MPD path again replaces its templates; an MPD with none is not kept."""
    idx = SegmentIndex()
    idx.learn("/t/manifest.mpd", REP_LEVEL)
    idx.learn("/t/manifest.mpd", PERIODS)
    assert len(idx) == 1
    assert idx.classify("/t/init-lo.mp4") is None
    assert idx.classify("/t/p1/v-1.m4s") is not None
    empty = mpd("<Period/>", type="static")
    assert idx.learn("/t/manifest.mpd", empty) is not None
    assert len(idx) == 0
    assert idx.classify("/t/p1/v-1.m4s") is None
    with pytest.raises(ValueError):
        SegmentIndex(max_presentations=0)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/t/manifest.mpd", True),
        ("/t/Manifest.MPD?token=1", True),
        ("/t/init.mp4", False),
        ("/t/manifest.mpd.bak", False),
    ],
)
def test_is_manifest(path, expected):
    """A manifest is a path ending in .mpd, query ignored."""
    assert is_manifest(path) is expected


@pytest.mark.parametrize("module", [presentation, template, mpd_module, index_module])
def test_module_exports_resolve(module):
    """Every name in a module's __all__ exists, and the package re-exports the same object."""
    for name in module.__all__:
        assert getattr(shared.dash, name) is getattr(module, name)


def test_package_exports_are_the_modules_exports():
    """The package's __all__ is exactly the union of its modules' __all__."""
    modules = (presentation, template, mpd_module, index_module)
    assert sorted(shared.dash.__all__) == sorted(n for m in modules for n in m.__all__)


# --- the packager's own MPD ----------------------------------------------------------


@pytest.mark.slow
def test_index_classifies_sample_title(sample_library: Path):
    """Every file the packager wrote classifies as what its name says, ranks by bandwidth."""
    title = sample_library / "sample"
    idx = SegmentIndex()
    presentation = idx.learn("/sample/manifest.mpd", (title / "manifest.mpd").read_bytes())
    assert isinstance(presentation, shared.dash.Presentation)
    reps = {r.id: r for r in presentation.representations}
    assert {i: (r.kind, r.rank, r.ranks) for i, r in reps.items()} == {
        "0": (ContentKind.VIDEO, 0, 2),
        "1": (ContentKind.VIDEO, 1, 2),
        "2": (ContentKind.AUDIO, 0, 1),
    }
    files = sorted(p.name for p in title.iterdir() if p.suffix in (".mp4", ".m4s"))
    assert len(files) >= 3 + 3 * 3
    for name in files:
        info = idx.classify(f"/sample/{name}")
        assert info is not None, name
        init = re.fullmatch(r"init-(\d)\.mp4", name)
        chunk = re.fullmatch(r"chunk-(\d)-(\d{5})\.m4s", name)
        if init:
            assert (info.kind, info.representation.id, info.number) == (INIT, init[1], None)
        else:
            assert chunk is not None, name
            assert (info.kind, info.representation.id) == (MEDIA, chunk[1])
            assert info.number == int(chunk[2])
        assert info.representation == reps[info.representation.id]
    assert idx.classify("/sample/manifest.mpd") is None
    assert idx.next_segments("/sample/chunk-1-00001.m4s", 5) == [
        "/sample/chunk-1-00002.m4s",
        "/sample/chunk-1-00003.m4s",
    ]


# --- live: when a segment may be requested ------------------------------------------------

# An LL-DASH channel as tiercdn's live origin writes it: 2 s segments of 0.5 s chunks,
# availabilityTimeOffset 1.5 (a segment is requestable once its first chunk can exist).
LIVE_LL = mpd(
    """
  <BaseURL>1a2b/</BaseURL>
  <Period id="0" start="PT10S">
    <AdaptationSet contentType="video">
      <Representation id="0" bandwidth="150000">
        <SegmentTemplate timescale="1000000" duration="2000000" startNumber="1"
            availabilityTimeOffset="1.500" availabilityTimeComplete="false"
            initialization="init-$RepresentationID$.mp4"
            media="chunk-$RepresentationID$-$Number%05d$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>""",
    type="dynamic",
    availabilityStartTime="2026-12-02T06:00:00.250Z",
)
AST = 1_796_191_200.25  # 2026-12-02T06:00:00.250Z


def test_live_presentation_reads_its_availability_timing():
    p = parse_mpd(LIVE_LL, "/live/sports/manifest.mpd")
    assert p.dynamic and p.availability_start == AST
    (stream,) = p.streams
    assert stream.availability_offset == 1.5 and stream.period_start == 10.0
    # segment 3 (index 2) spans 4..6 s of the period: requestable at its end - 1.5 s
    assert p.available_at(stream, 2) == AST + 10 + 6 - 1.5
    assert parse_mpd(DYNAMIC, "/live/ch1.mpd").availability_start is None  # none given
    assert parse_mpd(PERIODS, "/mp/manifest.mpd").available_at(stream, 2) is None  # static


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        pytest.param('availabilityStartTime="2026-12-02T06:00:00"', 1_796_191_200.0, id="no-zone"),
        pytest.param('availabilityStartTime="2026-12-02T07:00:00+01:00"', 1_796_191_200.0, id="tz"),
        pytest.param('availabilityStartTime="yesterday"', None, id="garbage"),
        pytest.param("", None, id="absent"),
    ],
)
def test_live_availability_start_time_forms(attrs, expected):
    xml = LIVE_LL.replace(b'availabilityStartTime="2026-12-02T06:00:00.250Z"', attrs.encode())
    assert parse_mpd(xml, "/l.mpd").availability_start == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("INF", float("inf")), ("nan", 0.0), ("-2", 0.0), ("soon", 0.0), ("0.25", 0.25)],
)
def test_live_availability_time_offset_forms(value, expected):
    xml = LIVE_LL.replace(
        b'availabilityTimeOffset="1.500"', f'availabilityTimeOffset="{value}"'.encode()
    )
    assert parse_mpd(xml, "/l.mpd").streams[0].availability_offset == expected


def test_index_upcoming_live_segments_carry_their_availability_time():
    """Prefetch's question at the live edge: the next segments and when each may be
    asked for; a static title's carry None."""
    index = SegmentIndex()
    index.learn("/live/sports/manifest.mpd", LIVE_LL)
    got = index.upcoming("/live/sports/1a2b/chunk-0-00007.m4s", 2)
    assert got == [
        ("/live/sports/1a2b/chunk-0-00008.m4s", AST + 10 + 16 - 1.5),
        ("/live/sports/1a2b/chunk-0-00009.m4s", AST + 10 + 18 - 1.5),
    ]
    assert index.next_segments("/live/sports/1a2b/chunk-0-00007.m4s", 2) == [p for p, _ in got]
    assert ALL.upcoming("/mp/p2/v-1.m4s", 1) == [("/mp/p2/v-2.m4s", None)]
    info = index.classify("/live/sports/1a2b/chunk-0-00008.m4s")  # shedding ranks it too
    assert info is not None and info.kind is SegmentKind.MEDIA and info.number == 8
    assert priority_of("/live/sports/1a2b/chunk-0-00008.m4s", info) is Priority.MEDIA_BASE
    init = index.classify("/live/sports/1a2b/init-0.mp4")
    assert priority_of("/live/sports/1a2b/init-0.mp4", init) is Priority.INIT
