"""``--config FILE`` (TOML) under env vars and flags, and ``tiercdn check-config``."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.settings import EdgeSettings
from origin.settings import OriginSettings
from shared.ops.cli import main as tiercdn
from shared.service.settings import CacheSettings, load

UPSTREAM = ["--upstream", "http://a:1"]


def write(tmp_path: Path, text: str, name: str = "node.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_config_file_under_env_under_flags(tmp_path):
    """flag > env > file > default, keys with dashes or underscores."""
    path = write(
        tmp_path,
        'cache-bytes = "64MiB"\nread_timeout = "3s"\nname = "from-file"\n'
        'access-log = true\nupstream = ["http://a:1", "http://b:2"]\nport = 8181\n',
    )
    env = {"TIERCDN_CACHE_BYTES": "32MiB", "TIERCDN_NAME": "from-env"}
    s = load(CacheSettings, ["--config", path, "--name", "from-flag"], env=env, port=1)
    assert s.name == "from-flag" and s.cache_bytes == 32 * 2**20
    assert s.read_timeout == 3.0 and s.access_log and s.port == 8181
    assert s.upstream == ("http://a:1", "http://b:2")
    assert s.connect_timeout == 2.0  # untouched: the default


def test_config_file_from_env_var_and_tier_classes(tmp_path):
    path = write(tmp_path, 'prefetch = 5\ncors-origin = "https://x"\n')
    s = load(EdgeSettings, UPSTREAM, env={"TIERCDN_CONFIG": path})
    assert s.prefetch == 5 and s.cors_origin == "https://x"
    o = load(OriginSettings, ["--config", write(tmp_path, "port = 9000\n", "o.toml")], env={})
    assert o.port == 9000


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('cache-byte = "1MiB"\n', ["unknown key cache-byte", "'1MiB'", "cache-bytes?"]),
        ('port = "80"\n', ["port = '80'", "integer"]),
        ('cache-bytes = "lots"\n', ["cache-bytes 'lots'", "size"]),
        ('read-timeout = "soon"\n', ["read-timeout 'soon'", "duration"]),
        ("access-log = 1\n", ["access-log = 1", "true or false"]),
        ("upstream = [1]\n", ["upstream = [1]", "string"]),
        ("name = [\n", ["not TOML"]),
    ],
)
def test_config_file_errors_name_file_key_and_value(tmp_path, text, needles):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as exc:
        load(CacheSettings, ["--config", path, *UPSTREAM], env={})
    message = str(exc.value)
    assert message.startswith(f"error: {path}") and "\n" not in message
    for needle in needles:
        assert needle in message


def test_config_file_missing(tmp_path):
    with pytest.raises(SystemExit, match="nope.toml"):
        load(CacheSettings, ["--config", str(tmp_path / "nope.toml"), *UPSTREAM], env={})


TIERED = """
[edge]
cache-bytes = "128MiB"
access-log = true

[regional]
disk-path = "cache"

[origin]
library = "library"
"""


def test_check_config_good_file_exits_0(tmp_path, capsys):
    assert tiercdn(["check-config", write(tmp_path, TIERED)]) == 0
    assert "ok (edge, regional, origin)" in capsys.readouterr().out
    assert tiercdn(["check-config", write(tmp_path, "prefetch = 3\n"), "--tier", "edge"]) == 0


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        (TIERED.replace("128MiB", "lots"), [], "[edge]: cache-bytes 'lots'"),
        (TIERED + "port = 70000\n", ["--tier", "origin"], "ports must be"),
        (TIERED + "[origin.extra]\n", [], "unknown key extra"),
        ("top = 1\n" + TIERED, [], "top = 1 outside"),
        (TIERED, ["--tier", "nope"], ""),
        ("port = 8080\n", [], "use --tier"),
        ("prefetch = 3\n", ["--tier", "origin"], "unknown key prefetch"),
        ("[edge]\nmax-fills = 0\n", [], "--max-fills must be at least 1"),
    ],
)
def test_check_config_bad_file_exits_1(tmp_path, capsys, text, args, needle):
    path = write(tmp_path, text)
    code: object
    try:
        code = tiercdn(["check-config", path, *args])
    except SystemExit as exc:  # an argparse usage error
        code = exc.code
    assert code in (1, 2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
