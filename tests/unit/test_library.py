"""Library: raw-path resolution, kinds and content types, MP4 sniffing, MPD listing."""

from __future__ import annotations

import os
import struct
from pathlib import Path, PurePosixPath

import pytest

from origin.library import (
    BadPath,
    Kind,
    Library,
    NotFound,
    mp4_handler,
    parse_iso_duration,
    parse_manifest,
)

MPD = b"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"
     mediaPresentationDuration="PT0H1M2.5S">
  <Period id="0">
    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" codecs="avc1.64001f">
      <Representation id="0" bandwidth="400000" width="426" height="240"/>
      <Representation id="1" bandwidth="800000" width="640" height="360" codecs="avc1.64001e"/>
    </AdaptationSet>
    <AdaptationSet id="1" contentType="audio">
      <Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000"/>
    </AdaptationSet>
  </Period>
</MPD>
"""


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def hdlr(handler: bytes) -> bytes:
    return box(b"hdlr", b"\0" * 8 + handler + b"\0" * 12 + b"Handler\0")


def init_segment(handler: bytes) -> bytes:
    """A minimal init segment: ftyp, then moov whose udta/meta hdlr ("mdir") precedes the track."""
    metadata = box(b"udta", box(b"meta", b"\0" * 4 + hdlr(b"mdir")))
    track = box(
        b"trak", box(b"tkhd", b"\0" * 84) + box(b"mdia", box(b"mdhd", b"\0" * 24) + hdlr(handler))
    )
    return box(b"ftyp", b"iso5\0\0\0\0iso5") + box(
        b"moov", box(b"mvhd", b"\0" * 100) + metadata + track
    )


TRACK = box(b"trak", box(b"mdia", hdlr(b"soun")))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/lib`` (the library, with traps) beside ``root/secret.txt`` (outside it)."""
    root = tmp_path_factory.mktemp("tree")
    (root / "secret.txt").write_text("OUTSIDE-SECRET")
    lib = root / "lib"
    title = lib / "title"
    title.mkdir(parents=True)
    (title / "manifest.mpd").write_bytes(MPD)
    (title / "init-0.mp4").write_bytes(init_segment(b"vide"))
    (title / "init-2.mp4").write_bytes(init_segment(b"soun"))
    (title / "chunk-0-00001.m4s").write_bytes(b"media")
    (title / "with space.m4s").write_bytes(b"media")
    (title / "poster.jpg").write_bytes(b"jpeg")
    (title / "notes.zzunknown").write_bytes(b"?")
    (title / ".hidden.m4s").write_bytes(b"hidden")
    (lib / ".partial").mkdir()
    (lib / ".partial" / "manifest.mpd").write_bytes(MPD)
    (title / "inside.m4s").symlink_to("chunk-0-00001.m4s")
    (title / "leak.m4s").symlink_to(root / "secret.txt")
    (title / "updir").symlink_to(root, target_is_directory=True)
    (title / "loop.m4s").symlink_to("loop.m4s")
    return lib


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/title/manifest.mpd", "title/manifest.mpd"),
        ("/title/manifest.mpd?token=1", "title/manifest.mpd"),
        ("/title/with%20space.m4s", "title/with space.m4s"),
        ("/title/%63hunk-0-00001.m4s", "title/chunk-0-00001.m4s"),
        ("/title/inside.m4s", "title/chunk-0-00001.m4s"),
    ],
)
def test_library_resolve_serves_files_inside(tree: Path, raw: str, expected: str) -> None:
    """Paths naming a regular file inside the library resolve to its real path."""
    assert Library(tree).resolve(raw) == (tree / expected).resolve()


@pytest.mark.parametrize(
    "raw",
    [
        "/../secret.txt",
        "/title/../../secret.txt",
        "/title/./manifest.mpd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/%2E%2E%2fsecret.txt",
        "/title/..%2f..%2fsecret.txt",
        "/title%2fmanifest.mpd",
        "/title%2Fmanifest.mpd",
        "/title%5cmanifest.mpd",
        "/title\\manifest.mpd",
        "/..\\secret.txt",
        "//etc/passwd",
        "//title/manifest.mpd",
        "/title//manifest.mpd",
        "/title/manifest.mpd%00.m4s",
        "/title/%0a.m4s",
        "/title/%zz.m4s",
        "/title/%ff.m4s",
        "title/manifest.mpd",
        "http://example.com/title/manifest.mpd",
        "",
    ],
)
def test_library_resolve_rejects_bad_paths(tree: Path, raw: str) -> None:
    """Traversal, encoded separators, NUL, control bytes and non-origin forms are BadPath."""
    with pytest.raises(BadPath):
        Library(tree).resolve(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "/",
        "/title",
        "/title/",
        "/title/missing.m4s",
        "/missing/manifest.mpd",
        "/title/.hidden.m4s",
        "/title/%2ehidden.m4s",
        "/.partial/manifest.mpd",
        "/title/leak.m4s",
        "/title/updir/secret.txt",
        "/title/loop.m4s",
        "/title/" + "x" * 300 + ".m4s",
    ],
)
def test_library_resolve_hides_what_is_not_servable(tree: Path, raw: str) -> None:
    """Directories, missing and hidden files and symlinks out of the library are NotFound."""
    with pytest.raises(NotFound):
        Library(tree).resolve(raw)


@pytest.mark.parametrize(
    ("name", "kind", "content_type"),
    [
        ("manifest.mpd", Kind.MANIFEST, "application/dash+xml"),
        ("init-0.mp4", Kind.INIT, "video/mp4"),
        ("init-2.mp4", Kind.INIT, "audio/mp4"),
        ("chunk-0-00001.m4s", Kind.MEDIA, "video/iso.segment"),
        ("poster.jpg", Kind.OTHER, "image/jpeg"),
        ("notes.zzunknown", Kind.OTHER, "application/octet-stream"),
    ],
)
def test_library_content_type_by_kind(tree: Path, name: str, kind: Kind, content_type: str) -> None:
    """Kinds come from the name; init segments are typed by their track handler."""
    library = Library(tree)
    path = tree / "title" / name
    assert library.kind(path) is kind
    assert library.content_type(path) == content_type
    assert library.content_type(path) == content_type  # second answer from the cache


@pytest.mark.parametrize(
    ("name", "kind"),
    [("/a/MANIFEST.MPD", Kind.MANIFEST), ("/a/x.M4S", Kind.MEDIA), ("/../x", Kind.OTHER)],
)
def test_library_kind_ignores_case_and_needs_no_file(name: str, kind: Kind) -> None:
    """``kind`` is pure: it reads only the suffix, so it can label bad requests too."""
    assert Library.kind(PurePosixPath(name)) is kind


def test_library_content_type_follows_rewrites(tmp_path: Path) -> None:
    """The sniff cache is keyed by mtime: a rewritten init segment is sniffed again."""
    path = tmp_path / "init-0.mp4"
    path.write_bytes(init_segment(b"vide"))
    library = Library(tmp_path)
    assert library.content_type(path) == "video/mp4"
    path.write_bytes(init_segment(b"soun"))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert library.content_type(path) == "audio/mp4"


@pytest.mark.parametrize(
    ("data", "handler"),
    [
        (init_segment(b"vide"), "vide"),
        (init_segment(b"soun"), "soun"),
        (box(b"ftyp") + box(b"moov", box(b"udta", hdlr(b"mdir"))), None),
        (init_segment(b"soun")[:60], None),
        (b"", None),
        (b"\0\0\0\x04junk", None),
        (struct.pack(">I4sQ", 1, b"moov", 16 + len(TRACK)) + TRACK, "soun"),
        (struct.pack(">I4s", 0, b"moov") + TRACK, "soun"),
    ],
)
def test_library_mp4_handler_walks_boxes(data: bytes, handler: str | None) -> None:
    """Only moov/trak/mdia/hdlr counts; truncated or odd boxes give None, never an error."""
    assert mp4_handler(data) == handler


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT6.0S", 6.0), ("PT1M0.0S", 60.0), ("PT0H1M2.5S", 62.5), ("P1DT1H", 90000.0), ("PT2S", 2.0)],
)
def test_library_parse_iso_duration(text: str, seconds: float) -> None:
    """xs:duration values as ffmpeg writes them become seconds."""
    assert parse_iso_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "6s", "PT-1S", "1:00"])
def test_library_parse_iso_duration_rejects_garbage(text: str) -> None:
    """Anything but an xs:duration is a ValueError."""
    with pytest.raises(ValueError):
        parse_iso_duration(text)


def test_library_parse_manifest_inherits_adaptation_set_attributes() -> None:
    """Representations inherit mimeType/codecs from their AdaptationSet unless they override."""
    info = parse_manifest(MPD)
    assert info["duration"] == pytest.approx(62.5)
    assert info["representations"] == [
        {
            "id": "0",
            "mime_type": "video/mp4",
            "codecs": "avc1.64001f",
            "bandwidth": 400000,
            "width": 426,
            "height": 240,
        },
        {
            "id": "1",
            "mime_type": "video/mp4",
            "codecs": "avc1.64001e",
            "bandwidth": 800000,
            "width": 640,
            "height": 360,
        },
        {
            "id": "2",
            "mime_type": "audio/mp4",
            "codecs": "mp4a.40.2",
            "bandwidth": 128000,
            "width": None,
            "height": None,
        },
    ]


def test_library_titles_lists_visible_folders_with_a_manifest(tree: Path, tmp_path: Path) -> None:
    """One entry per folder with an MPD; hidden folders and broken MPDs are left out."""
    broken = tree / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "manifest.mpd").write_bytes(b"<not xml")
    try:
        titles = Library(tree).titles()
    finally:
        (broken / "manifest.mpd").unlink()
        broken.rmdir()
    assert [t["name"] for t in titles] == ["title"]
    assert titles[0]["manifest"] == "/title/manifest.mpd"
    assert titles[0]["duration"] == pytest.approx(62.5)
    assert len(titles[0]["representations"]) == 3
    assert Library(tmp_path / "missing").titles() == []
