"""dash.segment_paths: which paths a pre-warm asks for."""

from __future__ import annotations

import pytest

from shared.dash import parse_mpd, segment_paths

LADDER = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT7S">
 <Period>
  <AdaptationSet contentType="video">
   <SegmentTemplate timescale="1000" duration="2000" startNumber="1"
       initialization="v/init-$RepresentationID$.mp4"
       media="v/$RepresentationID$-$Number%03d$.m4s"/>
   <Representation id="hi" bandwidth="3000000"/>
   <Representation id="lo" bandwidth="500000"/>
   <Representation id="mid" bandwidth="1000000"/>
  </AdaptationSet>
  <AdaptationSet contentType="audio">
   <SegmentTemplate timescale="48000" duration="96000" startNumber="0"
       initialization="a/init-$RepresentationID$.mp4" media="a/$RepresentationID$-$Number$.m4s"/>
   <Representation id="en" bandwidth="128000"/>
   <Representation id="fr" bandwidth="64000"/>
  </AdaptationSet>
 </Period>
</MPD>"""

TIMELINE = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT14S">
 <Period>
  <AdaptationSet mimeType="video/mp4">
   <SegmentTemplate timescale="10" presentationTimeOffset="100"
       initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Time$.m4s">
    <SegmentTimeline><S t="100" d="40" r="1"/><S d="20" r="-1"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="v1" bandwidth="100"/>
   <Representation id="v2" bandwidth="200"/>
  </AdaptationSet>
 </Period>
</MPD>"""

TWO_PERIODS = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT8S">
 <Period id="p0" duration="PT4S">
  <AdaptationSet contentType="video">
   <SegmentTemplate timescale="1" duration="2" startNumber="1"
       initialization="p0/init.mp4" media="p0/$Number$.m4s"/>
   <Representation id="v" bandwidth="100"/>
  </AdaptationSet>
 </Period>
 <Period id="p1">
  <AdaptationSet contentType="video">
   <SegmentTemplate timescale="1" duration="2" startNumber="1"
       initialization="p1/init.mp4" media="p1/$Number$.m4s"/>
   <Representation id="v" bandwidth="100"/>
  </AdaptationSet>
 </Period>
</MPD>"""

LIVE = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic">
 <Period>
  <AdaptationSet contentType="video">
   <SegmentTemplate timescale="1" duration="2" initialization="init.mp4" media="$Number$.m4s"/>
   <Representation id="v" bandwidth="100"/>
  </AdaptationSet>
 </Period>
</MPD>"""

A = ["/t/a/init-en.mp4", "/t/a/init-fr.mp4"]


@pytest.mark.parametrize(
    ("mpd", "lowest", "seconds", "expected"),
    [
        pytest.param(
            LADDER, 1, 3.0,
            ["/t/v/init-lo.mp4", *A, "/t/v/lo-001.m4s", "/t/a/en-0.m4s", "/t/a/fr-0.m4s",
             "/t/v/lo-002.m4s", "/t/a/en-1.m4s", "/t/a/fr-1.m4s"],
            id="lowest rung, first 3 s overlap two 2 s segments, audio all reps",
        ),
        pytest.param(
            LADDER, 2, 0.0, ["/t/v/init-lo.mp4", "/t/v/init-mid.mp4", *A],
            id="two lowest rungs by bandwidth, not document order; 0 s = inits only",
        ),
        pytest.param(
            LADDER, 5, 2.0,
            ["/t/v/init-hi.mp4", "/t/v/init-lo.mp4", "/t/v/init-mid.mp4", *A,
             "/t/v/hi-001.m4s", "/t/v/lo-001.m4s", "/t/v/mid-001.m4s",
             "/t/a/en-0.m4s", "/t/a/fr-0.m4s"],
            id="lowest beyond the ladder = all",
        ),
        pytest.param(
            TIMELINE, 1, 8.0,
            ["/t/v1/init.mp4", "/t/v1/100.m4s", "/t/v1/140.m4s"],
            id="timeline: $Time$ relative to presentationTimeOffset",
        ),
        pytest.param(
            TIMELINE, 1, None,
            ["/t/v1/init.mp4", "/t/v1/100.m4s", "/t/v1/140.m4s", "/t/v1/180.m4s",
             "/t/v1/200.m4s", "/t/v1/220.m4s"],
            id="timeline: r=-1 runs to the end of the period",
        ),
        pytest.param(
            TWO_PERIODS, None, 5.0,
            ["/t/p0/init.mp4", "/t/p1/init.mp4", "/t/p0/1.m4s", "/t/p0/2.m4s", "/t/p1/1.m4s"],
            id="second period starts where the first ends",
        ),
        pytest.param(LIVE, None, None, ["/t/init.mp4"], id="live: no media, only the init"),
        pytest.param(LIVE, None, 4.0, ["/t/init.mp4"], id="live: no media even with seconds"),
    ],
)  # fmt: skip
def test_segment_paths_selects_rungs_and_time(mpd, lowest, seconds, expected):
    """The paths chosen by rung and by time, inits first, media by start time."""
    presentation = parse_mpd(mpd, "/t/manifest.mpd")
    assert segment_paths(presentation, lowest=lowest, seconds=seconds) == expected


def test_segment_paths_static_ends_at_duration():
    """Without seconds a static presentation gives every segment up to its duration."""
    paths = segment_paths(parse_mpd(LADDER, "/t/m.mpd"), lowest=1)
    assert [p for p in paths if p.startswith("/t/v/lo-")] == [
        "/t/v/lo-001.m4s", "/t/v/lo-002.m4s", "/t/v/lo-003.m4s", "/t/v/lo-004.m4s",
    ]  # fmt: skip
    assert len([p for p in paths if p.startswith("/t/a/en-")]) == 4  # ceil(7 / 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lowest": 0}, "lowest"),
        ({"seconds": -1.0}, "seconds"),
        ({"seconds": float("nan")}, "seconds"),
        ({"limit": 3}, "more than 3"),
    ],
)
def test_segment_paths_refuses_bad_arguments(kwargs, message):
    """Bad arguments and too many segments are a ValueError."""
    with pytest.raises(ValueError, match=message):
        segment_paths(parse_mpd(LADDER, "/t/m.mpd"), **kwargs)


def test_segment_paths_of_the_packager_sample(sample_library):
    """The real sample: lowest video rung and audio, first 4 s."""
    xml = (sample_library / "sample" / "manifest.mpd").read_bytes()
    presentation = parse_mpd(xml, "/sample/manifest.mpd")
    assert segment_paths(presentation, lowest=1, seconds=4) == [
        "/sample/init-0.mp4", "/sample/init-2.mp4",
        "/sample/chunk-0-00001.m4s", "/sample/chunk-2-00001.m4s",
        "/sample/chunk-0-00002.m4s", "/sample/chunk-2-00002.m4s",
    ]  # fmt: skip
    every = segment_paths(presentation)
    assert len(every) == 3 + 3 * 3
    for path in every:  # each one exists in the library
        assert (sample_library / path.lstrip("/")).is_file(), path
