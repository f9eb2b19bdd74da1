"""The live player's pure parts: channel timing, live edge, ABR, buffer, access logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.livechannel import Playhead, Throughput, next_rung, parse_channel, parse_max_age
from loadtest.livereport import count_requests

MPD = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
     availabilityStartTime="2026-01-01T00:00:00.000Z">
  <BaseURL>run1/</BaseURL>
  <ServiceDescription id="0"><Latency target="3000"/></ServiceDescription>
  <Period id="0" start="PT0.0S">
    <AdaptationSet contentType="video">
      <Representation id="0" bandwidth="150000">
        <SegmentTemplate timescale="1000000" duration="2000000" availabilityTimeOffset="1.500"
          availabilityTimeComplete="false" initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
      <Representation id="1" bandwidth="500000">
        <SegmentTemplate timescale="1000000" duration="2000000" availabilityTimeOffset="1.500"
          initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet contentType="audio">
      <Representation id="2" bandwidth="128000">
        <SegmentTemplate timescale="1000000" duration="2000000" availabilityTimeOffset="1.500"
          initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"""
AST = 1767225600.0  # 2026-01-01T00:00:00Z


def test_channel_parses_timing_and_paths() -> None:
    """AST, segment duration, offset, latency target, BaseURL and segment paths."""
    ch = parse_channel(MPD, "/live/ch/manifest.mpd")
    assert (ch.ast, ch.segment, ch.offset, ch.latency) == (AST, 2.0, 1.5, 3.0)
    assert ch.base == "run1/" and ch.bandwidths == [150000, 500000]
    assert ch.path(ch.video[1], 7) == "/live/ch/run1/chunk-1-00007.m4s"
    assert ch.audio is not None and ch.path(ch.audio, 1) == "/live/ch/run1/chunk-2-00001.m4s"


@pytest.mark.parametrize(
    ("now", "edge"),
    [(AST, 1), (AST + 0.49, 1), (AST + 0.5, 1), (AST + 2.49, 1), (AST + 2.5, 2), (AST + 9, 5)],
)
def test_channel_live_edge_is_the_newest_available(now: float, edge: int) -> None:
    """Segment n is available at AST + (n - 1) * d + d - availabilityTimeOffset."""
    ch = parse_channel(MPD, "/m.mpd")
    assert ch.availability(3) == AST + 4.5
    assert ch.live_edge(now) == edge


def test_channel_refuses_a_static_mpd() -> None:
    with pytest.raises(ValueError):
        parse_channel(MPD.replace(b'type="dynamic"', b'type="static"'), "/m.mpd")


@pytest.mark.parametrize(
    ("rung", "bps", "late", "want"),
    [
        (0, None, False, 0),  # no estimate yet: stay
        (0, 10e6, False, 1),  # room: up one
        (1, 10e6, False, 1),  # top already
        (1, 10e6, True, 0),  # late: down one
        (1, 300e3, False, 0),  # the estimate no longer carries rung 1
        (0, 0.0, True, 0),
    ],
)
def test_next_rung(rung: int, bps: float | None, late: bool, want: int) -> None:
    assert next_rung(rung, [150_000, 500_000], bps, late) == want


def test_playhead_stalls_when_a_segment_is_late() -> None:
    """Playback of the first segment starts at media start + latency target; a later
    segment complete after it is due stalls for as long, and latency grows by as much."""
    head = Playhead(5, media_start=100.0, latency=3.0, segment=2.0)
    assert head.arrived(5, 102.1) == 0 and head.started == 103.0
    assert head.arrived(6, 104.5) == 0  # due at 105
    assert head.arrived(7, 107.25) == pytest.approx(0.25)  # due at 107
    assert head.stalls == 1 and head.due(8) == pytest.approx(109.25)
    assert head.latency == pytest.approx(3.25)


def test_throughput_counts_only_busy_time_and_max_age_parses() -> None:
    meter = Throughput()
    meter.add(1000, 0.01)
    assert meter.bps == pytest.approx(800_000)
    assert parse_max_age("public, max-age=1") == 1.0 and parse_max_age("no-store") == 1.0


def test_count_requests_reads_tiercdn_and_nginx_lines(tmp_path: Path) -> None:
    """Both access log formats, by path and status, filtered by client address."""
    log = tmp_path / "access.log"
    log.write_text(
        '2026-12-02 06:16:30,212 INFO tiercdn.access.origin: origin 127.0.0.1 "GET /a.m4s"'
        ' 200 3415 "-" ttfb=1.4ms total=3.5ms up=-\n'
        '127.0.0.3 "GET /a.m4s?x=1 HTTP/1.1" 404 10 "MISS"\n'
        '127.0.0.2 "GET /a.m4s HTTP/1.1" 200 10 "-"\n'
    )
    assert count_requests(log) == {"/a.m4s": {200: 2, 404: 1}}
    assert count_requests(log, {"127.0.0.3"}) == {"/a.m4s": {404: 1}}
    assert count_requests(tmp_path / "missing.log") == {}
