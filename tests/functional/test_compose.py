"""docker-compose.yml, the Dockerfile and docker/ checked without a container engine.

No Docker here or in CI, so the compose file is checked against the code it
runs instead of being run:

- each tiercdn service's command is split the way compose and ``sh -c`` split
  it; every ``tiercdn-*`` invocation in it must be a console script of
  pyproject.toml, its ``python -m <module> [subcommand] --help`` must exit 0,
  and its flags (with the service's ``environment:``) must build the service's
  settings with the CLI's own argparse parser and settings dataclass, so an
  unknown flag or a bad value fails here as it would fail in the container;
- those effective settings then pin the rest: listeners on 0.0.0.0, upstream
  URLs naming compose services and their ports, published ports, healthchecks,
  Prometheus targets, Grafana's data source;
- the dashboard's queries name only metrics that nodes configured from the
  compose file export on their real admin listeners (``/metrics``), and the
  compose healthcheck command is run against a real admin listener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import origin.__main__ as origin_cli
from edge.app import make_app as make_edge_app
from edge.settings import EdgeSettings
from origin.app import make_admin_app as make_origin_admin
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from regional.app import make_app as make_regional_app
from regional.settings import RegionalSettings
from shared.engine.outcome import Outcome
from shared.service.admin import make_admin_app
from shared.service.settings import ServiceSettings, from_namespace, load
from tests.helpers import url_of

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
TIERCDN = ("origin", "regional", "edge-1", "edge-2")
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
PROMETHEUS = yaml.safe_load((REPO / "docker/prometheus.yml").read_text())
PROVISIONING = REPO / "docker/grafana/provisioning"
DASHBOARD = json.loads((REPO / "docker/grafana/dashboards/tiercdn.json").read_text())


# --- reading the compose file -------------------------------------------------


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the host environment left out (deterministic)."""
    assert "$" not in re.sub(r"\$\{\w+:?-([^}]*)\}", "", value), f"unsupported: {value!r}"
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def invocations(service: str) -> list[list[str]]:
    """The ``tiercdn*`` commands a service runs, in order; ``exec`` is kept as a first word.

    A string command is split like a shell line (as compose does); ``sh -c
    SCRIPT`` is split into simple commands at ``;``, ``||``, ``&&`` and ``|``.
    """
    command = SERVICES[service]["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    simple: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "||", "&&", "|"):
            simple.append([])
        else:
            simple[-1].append(token)
    return [c for c in simple if c and c[c[0] == "exec" :][0].startswith("tiercdn")]


def main_command(service: str) -> list[str]:
    """The long-running command: the last one, exec'd by the shell so it gets SIGTERM."""
    commands = invocations(service)
    assert commands, f"{service} runs no tiercdn command"
    argv = commands[-1]
    if isinstance(SERVICES[service]["command"], list) and SERVICES[service]["command"][0] == "sh":
        assert argv[0] == "exec", f"{service}: exec the service so it is the shell's successor"
    return argv[1:] if argv[0] == "exec" else argv


def module_of(program: str) -> str:
    """``tiercdn-edge`` → ``edge`` (its console script is ``edge.__main__:main``)."""
    assert program in SCRIPTS, f"{program} is not a console script of pyproject.toml"
    return SCRIPTS[program].split(":")[0].removesuffix(".__main__")


def parse(argv: list[str], env: dict[str, str]) -> Any:
    """Parse one invocation with its CLI's real parser: settings for a server, else a Namespace.

    argparse exits on an unknown flag or a bad value, and the settings
    dataclasses raise SystemExit on an invalid combination: both fail the test.
    """
    module = module_of(argv[0])
    try:
        if module == "origin":
            ns = origin_cli._parser().parse_args(argv[1:])
            return from_namespace(OriginSettings, ns, env) if ns.command == "serve" else ns
        defaults = importlib.import_module(f"{module}.app").DEFAULTS
        settings_class = {"edge": EdgeSettings, "regional": RegionalSettings}[module]
        return load(settings_class, argv[1:], prog=argv[0], env=env, **defaults)
    except SystemExit as exc:
        pytest.fail(f"{shlex.join(argv)} is rejected by its CLI: {exc}")


def settings_of(service: str) -> ServiceSettings:
    settings = parse(main_command(service), environment(service))
    assert isinstance(settings, ServiceSettings), f"{service} does not run a server"
    return settings


def ports(service: str) -> list[tuple[str, int, int]]:
    """Published ports as (host ip, host port, container port); short syntax only."""
    out = []
    for entry in SERVICES[service].get("ports", []):
        *ip, host, container = str(entry).split(":")
        out.append((ip[0] if ip else "0.0.0.0", int(host), int(container)))
    return out


def mounts(service: str) -> dict[str, str]:
    """Container path → source (a named volume or a ./path) of a service's volumes."""
    out = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target, *_ = entry.split(":")
        out[target] = source
    return out


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]


# --- compose ------------------------------------------------------------------


def test_compose_runs_the_cdn_and_its_monitoring():
    """The services are the three tiers (two edges) plus Prometheus and Grafana, one image."""
    assert set(SERVICES) == {*TIERCDN, "prometheus", "grafana"}
    assert {SERVICES[s]["image"] for s in TIERCDN} == {SERVICES["origin"]["image"]}
    assert all(SERVICES[s]["build"] == "." for s in TIERCDN)


@pytest.mark.parametrize("service", TIERCDN)
def test_compose_commands_are_real_cli_invocations(service):
    """Every tiercdn command in a service's command line exists and accepts its flags."""
    for argv in invocations(service):
        argv = argv[1:] if argv[0] == "exec" else argv
        subcommands = []
        for word in argv[1:]:
            if word.startswith("-"):
                break
            subcommands.append(word)
        proc = subprocess.run(
            [sys.executable, "-m", module_of(argv[0]), *subcommands, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        parse(argv, environment(service))


def test_compose_origin_makes_the_sample_into_its_library():
    """The origin's first start makes a sample title inside the library it then serves."""
    (sample,) = [c for c in invocations("origin") if c[:2] == ["tiercdn-origin", "sample"]]
    settings = settings_of("origin")
    assert isinstance(settings, OriginSettings)
    library = settings.library
    out = parse(sample, {}).out
    assert out.parent == Path(library)
    assert mounts("origin")[library] in COMPOSE["volumes"]
    assert f"ls {library}/*/manifest.mpd" in SERVICES["origin"]["command"][2]


@pytest.mark.parametrize("service", TIERCDN)
def test_compose_services_listen_on_every_interface(service):
    """Inside a container 127.0.0.1 is unreachable from outside: both listeners bind 0.0.0.0."""
    settings = settings_of(service)
    assert (settings.host, settings.admin_host) == ("0.0.0.0", "0.0.0.0")
    assert settings.port and settings.admin_port


def test_compose_tiers_point_at_each_other():
    """Edges' parent is the regional service, the regional's the origin, by service port."""
    regional, origin = settings_of("regional"), settings_of("origin")
    assert isinstance(regional, RegionalSettings)
    assert regional.upstream == (f"http://origin:{origin.port}",)
    for edge in ("edge-1", "edge-2"):
        settings = settings_of(edge)
        assert isinstance(settings, EdgeSettings)
        assert settings.upstream == (f"http://regional:{regional.port}",)
        assert settings.name == edge
    names = [settings_of(s).name for s in TIERCDN]
    assert len(set(names)) == len(names)
    assert regional.disk_path.startswith(tuple(mounts("regional")))
    assert mounts("regional")[str(Path(regional.disk_path).parent)] in COMPOSE["volumes"]


def test_compose_published_ports():
    """Edges on host 8080 and 8090; every admin port only on the host's loopback."""
    published = [(ip, host) for s in SERVICES for ip, host, _ in ports(s)]
    assert len({host for _, host in published}) == len(published), "a host port is taken twice"
    for service in TIERCDN:
        settings = settings_of(service)
        for ip, _, container in ports(service):
            assert container in (settings.port, settings.admin_port), (service, container)
            if container == settings.admin_port:
                assert ip == "127.0.0.1", f"{service} publishes its admin port beyond loopback"
    for edge, host in (("edge-1", 8080), ("edge-2", 8090)):
        assert ("0.0.0.0", host, settings_of(edge).port) in ports(edge)
    for service in ("prometheus", "grafana"):
        assert {ip for ip, _, _ in ports(service)} == {"127.0.0.1"}


def test_compose_volumes_are_defined():
    """Named volumes are declared; bind mounts name files of this repository."""
    for service in SERVICES:
        for source in mounts(service).values():
            if source.startswith("."):
                assert (REPO / source).exists(), source
            else:
                assert source in COMPOSE["volumes"], f"{service}: undeclared volume {source}"


@pytest.mark.parametrize("service", TIERCDN)
def test_compose_healthchecks_probe_the_admin_port(service):
    """Each tier is checked on its admin /healthz, on the port its settings listen on."""
    check = SERVICES[service]["healthcheck"]
    assert check["test"][0] == "CMD" and "/healthz" in " ".join(check["test"])
    assert "TIERCDN_ADMIN_PORT" in " ".join(check["test"])
    assert int(environment(service)["TIERCDN_ADMIN_PORT"]) == settings_of(service).admin_port


def test_compose_starts_tiers_once_their_parent_is_healthy():
    """The regional waits for a healthy origin, the edges for a healthy regional."""
    for service, parent in (("regional", "origin"), ("edge-1", "regional"), ("edge-2", "regional")):
        assert SERVICES[service]["depends_on"][parent]["condition"] == "service_healthy"
    for service in SERVICES:
        assert set(SERVICES[service].get("depends_on", {})) <= set(SERVICES)


# --- Dockerfile ---------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_with_a_healthcheck():
    """python:3.11-slim, the project pip-installed, a non-root user, a HEALTHCHECK."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]
    assert ["FROM", "python:3.11-slim"] in lines
    assert "pip install ." in text
    users = [line[1] for line in lines if line[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(line[0] == "HEALTHCHECK" for line in lines)
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for line in lines:
        if line[0] == "COPY":
            for source in line[1:-1]:
                assert (REPO / source).exists() and source.rstrip("/") not in ignored


# --- Prometheus and Grafana ---------------------------------------------------


def test_prometheus_scrapes_every_admin_listener():
    """The scrape targets are exactly the tiercdn services at their admin ports."""
    targets = {
        target
        for job in PROMETHEUS["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{s}:{settings_of(s).admin_port}" for s in TIERCDN}
    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "./docker/prometheus.yml"


def test_grafana_provisions_prometheus_and_the_dashboard():
    """The data source is the prometheus service; the provider loads the mounted dashboard."""
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    (prometheus_port,) = [container for _, _, container in ports("prometheus")]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == "./docker/grafana/provisioning"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards/tiercdn.yml").read_text())["providers"]
    assert grafana[provider["options"]["path"]] == "./docker/grafana/dashboards"
    uids = {t["datasource"]["uid"] for p in DASHBOARD["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}


@pytest.fixture
async def compose_nodes(aiohttp_server, sample_library, tmp_path):
    """origin → regional → edge-1 with the compose file's settings, on loopback ports."""

    def local(settings: Any, **kw: Any) -> Any:
        return dataclasses.replace(settings, host="127.0.0.1", port=0, admin_port=0, **kw)

    origin = local(settings_of("origin"), library=str(sample_library))
    origin_app = make_origin_app(origin)
    origin_server = await aiohttp_server(origin_app)
    regional = local(
        settings_of("regional"),
        upstream=(url_of(origin_server),),
        disk_path=str(tmp_path / "regional-1"),
    )
    regional_app = make_regional_app(regional)
    regional_server = await aiohttp_server(regional_app)
    edge = local(settings_of("edge-1"), upstream=(url_of(regional_server),))
    edge_app = make_edge_app(edge)
    await aiohttp_server(edge_app)
    return {
        "origin": await aiohttp_server(make_origin_admin(origin_app)),
        "regional": await aiohttp_server(make_admin_app(regional_app)),
        "edge-1": await aiohttp_server(make_admin_app(edge_app)),
    }


async def test_dashboard_queries_only_exported_metrics(compose_nodes, http):
    """Every metric a panel queries is on some node's /metrics, as compose configures them."""
    exported = set()
    for admin in compose_nodes.values():
        async with http.get(url_of(admin) + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
        for family in text_string_to_metric_families(text):
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
            exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    queried = {name for expr in dashboard_exprs() for name in re.findall(r"tiercdn_\w+", expr)}
    assert queried <= exported, queried - exported
    assert {
        "tiercdn_requests_total",
        "tiercdn_origin_requests_total",
        "tiercdn_origin_tokens",
        "tiercdn_origin_waiting",
        "tiercdn_origin_rejected_total",
        "tiercdn_fills_in_flight",
        "tiercdn_fill_readers_total",
        "tiercdn_shed_total",
        "tiercdn_first_byte_seconds_bucket",
        "tiercdn_breaker_state",
    } <= queried
    outcomes = {o.value for o in Outcome}
    for expr in dashboard_exprs():
        for values in re.findall(r'outcome=~?"([^"]*)"', expr):
            assert set(values.split("|")) <= outcomes, expr
    # Panels group by `job` (the tier) and `node`: labels Prometheus attaches to every target.
    assert {job["job_name"] for job in PROMETHEUS["scrape_configs"]} == {
        "edge",
        "regional",
        "origin",
    }
    groups = [g for job in PROMETHEUS["scrape_configs"] for g in job["static_configs"]]
    assert all("node" in group.get("labels", {}) for group in groups)


async def test_compose_healthcheck_command_probes_a_real_admin_listener(compose_nodes):
    """The healthcheck succeeds against a live admin listener and fails with none there."""
    command = SERVICES["edge-1"]["healthcheck"]["test"][1:]
    assert command[0] == "python"
    port = compose_nodes["edge-1"].port

    async def run(admin_port: int) -> int:
        env = {**os.environ, "TIERCDN_ADMIN_PORT": str(admin_port)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command[1:],
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await proc.wait()

    assert await run(port) == 0
    closed = compose_nodes["origin"]
    await closed.close()
    assert await run(closed.port) != 0
