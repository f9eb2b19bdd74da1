"""Human units and the settings loader (env vars under flags)."""

from __future__ import annotations

import pytest

from shared.service.settings import CacheSettings, load
from shared.service.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MiB", 512 * 2**20),
        ("4MB", 4_000_000),
        ("1024", 1024),
        ("1.5KiB", 1536),
        ("2 GiB", 2 * 2**30),
        ("0", 0),
        (7, 7),
        ("10b", 10),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "12 parsecs", "-1", "1e9", "five"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2s", 2.0), ("250ms", 0.25), ("1.5", 1.5), ("5m", 300.0), ("1h", 3600.0), (3, 3.0)],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2 fortnights", "-1s", "s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_size():
    assert [format_size(n) for n in (10, 1536, 3 * 2**20)] == ["10B", "1.5KiB", "3.0MiB"]


def test_settings_flags_override_env_override_defaults():
    """A flag beats its TIERCDN_ env var, which beats the tier's default."""
    env = {
        "TIERCDN_CACHE_BYTES": "2MiB",
        "TIERCDN_NAME": "edge-env",
        "TIERCDN_ACCESS_LOG": "yes",
        "TIERCDN_UPSTREAM": "http://a:1, http://b:2",
    }
    s = load(
        CacheSettings,
        ["--name", "edge-flag", "--read-timeout", "250ms"],
        env=env,
        name="edge-default",
    )
    assert s.name == "edge-flag" and s.cache_bytes == 2 * 2**20 and s.access_log
    assert s.read_timeout == 0.25
    assert s.upstream == ("http://a:1", "http://b:2")


def test_settings_repeated_upstream_flag():
    s = load(CacheSettings, ["--upstream", "http://a:1", "--upstream", "http://b:2"], env={})
    assert s.upstream == ("http://a:1", "http://b:2")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "upstream"),
        (["--upstream", "ftp://x"], "http"),
        (["--upstream", "http://x", "--name", "a b"], "name"),
        (["--upstream", "http://x", "--cache-bytes", "lots"], "size"),
        (["--upstream", "http://x", "--port", "70000"], "port"),
    ],
)
def test_settings_invalid_values_exit_with_message(argv, message, capsys):
    """Bad settings end the program with a one-line message naming the problem."""
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, argv, env={})
    assert message in str(exc.value)


def test_settings_max_object_clamped_to_cache():
    s = load(CacheSettings, ["--upstream", "http://x", "--cache-bytes", "1MiB"], env={})
    assert s.max_object_bytes == 2**20


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"TIERCDN_CACHE_BYTES": "lots"}, ["TIERCDN_CACHE_BYTES 'lots'", "size"]),
        ({"TIERCDN_PORT": "abc"}, ["TIERCDN_PORT 'abc'", "integer"]),
        ({"TIERCDN_ACCESS_LOG": "maybe"}, ["TIERCDN_ACCESS_LOG 'maybe'", "true/false"]),
    ],
)
def test_settings_env_errors_name_the_variable(env, needles):
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, ["--upstream", "http://x"], env=env)
    for needle in needles:
        assert needle in str(exc.value)
    assert "--" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, True) for t in ("true", "1", "YES", "on")]
    + [(f, False) for f in ("false", "0", "no", "Off")],
)
def test_settings_bool_env_values(text, expected):
    s = load(CacheSettings, ["--upstream", "http://x"], env={"TIERCDN_ACCESS_LOG": text})
    assert s.access_log is expected


def test_settings_unknown_env_var_warns_with_closest(capsys):
    load(CacheSettings, ["--upstream", "http://x"], env={"TIERCDN_CACHE_BYTE": "1MiB"})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TIERCDN_CACHE_BYTE " in err[0] and "TIERCDN_CACHE_BYTES" in err[0]


def test_settings_bad_flag_value_is_one_line_with_help_hint():
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, ["--upstream", "http://x", "--port", "abc"], env={})
    assert str(exc.value) == "error: --port 'abc': expected an integer; see --help"


def test_settings_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, ["--upstream", "http://x", "--bogus", "1"], prog="tiercdn-edge")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tiercdn-edge: error: unrecognized arguments: --bogus 1; see --help"]
