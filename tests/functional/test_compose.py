"""docker-compose.yml, the Dockerfile, docker/ and the lock files checked without an engine.

CI has no Docker engine (scripts/compose-smoke runs the stack for real where
there is one), so the compose file is checked against the code it runs:

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
  image's healthcheck (docker/healthcheck.py) finds, in a /proc tree, the
  admin port the real settings give each node and probes a real listener;
- the Dockerfile's example commands parse with the real CLIs, its base image
  is a pinned ``BASE_IMAGE`` argument, and it installs requirements/runtime.lock;
- requirements/*.lock pin every dependency pyproject.toml names, at versions
  its specifiers allow, so a stale lock fails here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import importlib
import importlib.util
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
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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
from tests.helpers import shell_commands, url_of

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
TIERCDN = ("origin", "regional", "edge-1", "edge-2")
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
PROMETHEUS = yaml.safe_load((REPO / "docker/prometheus.yml").read_text())
PROVISIONING = REPO / "docker/grafana/provisioning"
DASHBOARD = json.loads((REPO / "docker/grafana/dashboards/tiercdn.json").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
HEALTHCHECK_PATH = "/usr/local/lib/tiercdn/healthcheck.py"


def _load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "docker/healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_healthcheck()


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
    return split_command(SERVICES[service]["command"])


def split_command(command: str | list[str]) -> list[list[str]]:
    """The ``tiercdn*`` simple commands of a command line (a string or an argv)."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    return [c for c in shell_commands(argv) if c[c[0] == "exec" :][0].startswith("tiercdn")]


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
    assert all(SERVICES[s]["build"]["context"] == "." for s in TIERCDN)


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
def test_compose_healthchecks_find_the_admin_port(service):
    """Each tier runs the image's healthcheck, which finds the port its settings listen on."""
    check = SERVICES[service]["healthcheck"]
    assert check["test"] == ["CMD", "python", HEALTHCHECK_PATH]
    settings = settings_of(service)
    assert int(environment(service)["TIERCDN_ADMIN_PORT"]) == settings.admin_port
    environ = {**dockerfile_env(), **environment(service)}
    assert healthcheck.admin_address(main_command(service), environ) == (
        "127.0.0.1",
        settings.admin_port,
    )


def test_compose_starts_tiers_once_their_parent_is_healthy():
    """The regional waits for a healthy origin, the edges for a healthy regional."""
    for service, parent in (("regional", "origin"), ("edge-1", "regional"), ("edge-2", "regional")):
        assert SERVICES[service]["depends_on"][parent]["condition"] == "service_healthy"
    for service in SERVICES:
        assert set(SERVICES[service].get("depends_on", {})) <= set(SERVICES)


# --- Dockerfile ---------------------------------------------------------------


def dockerfile_instructions() -> list[list[str]]:
    """The Dockerfile's instructions, continuation lines joined, split into words."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]


def dockerfile_env() -> dict[str, str]:
    """What the Dockerfile's ENV instructions set in every container of the image."""
    env: dict[str, str] = {}
    for line in dockerfile_instructions():
        if line[0] == "ENV":
            for item in shlex.split(" ".join(line[1:])):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last match wins)."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path.rstrip("/")).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def base_image_default() -> str:
    (arg,) = [line for line in dockerfile_instructions() if line[:1] == ["ARG"]]
    name, _, default = arg[1].partition("=")
    assert name == "BASE_IMAGE"
    return default


def test_dockerfile_builds_one_non_root_image_with_a_healthcheck():
    """FROM a pinned BASE_IMAGE, the locked dependencies then tiercdn, non-root, a HEALTHCHECK."""
    lines = dockerfile_instructions()
    assert lines[0] == ["ARG", f"BASE_IMAGE={base_image_default()}"]
    assert ["FROM", "${BASE_IMAGE}"] in lines
    # A version tag (a digest cannot be checked without the registry); compose passes the same.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base_image_default())
    assert SERVICES["origin"]["build"]["args"]["BASE_IMAGE"] == (
        f"${{BASE_IMAGE:-{base_image_default()}}}"
    )
    runs = [" ".join(line[1:]) for line in lines if line[0] == "RUN"]
    assert runs.index("pip install -r requirements/runtime.lock") < runs.index(
        "pip install --no-deps . && rm -rf /src"
    )
    users = [line[1] for line in lines if line[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
    (check,) = [line for line in lines if line[0] == "HEALTHCHECK"]
    assert json.loads(" ".join(check[check.index("CMD") + 1 :])) == ["python", HEALTHCHECK_PATH]
    copies = [line[1:] for line in lines if line[0] == "COPY"]
    assert ["docker/healthcheck.py", HEALTHCHECK_PATH] in copies
    for line in copies:
        for source in line[:-1]:
            assert (REPO / source).exists() and not dockerignored(source), source
    assert dockerignored("tests") and dockerignored("docker/prometheus.yml")
    assert dockerignored("requirements/dev.lock")


def dockerfile_examples() -> list[list[str]]:
    """The ``docker ...`` command lines of the Dockerfile's header comment, split."""
    header = DOCKERFILE.split("\nARG ", 1)[0]
    lines = [line.lstrip("#").split("  # ")[0].strip() for line in header.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("docker ")]


def test_dockerfile_examples_run_real_cli_invocations():
    """Each example container runs a command its CLI accepts, on the names the others use."""
    examples = dockerfile_examples()
    assert examples[0] == ["docker", "build", "-t", "tiercdn", "."]
    runs = [argv for argv in examples if argv[:2] == ["docker", "run"]]
    assert len(runs) == 3
    names: dict[str, ServiceSettings] = {}
    for argv in runs:
        image = 2  # the first word that is neither an option nor an option's value
        while argv[image].startswith("-"):
            image += 2 if argv[image] in ("--network", "--name", "-p") else 1
        assert argv[image] == "tiercdn", argv
        options = argv[2:image]
        assert "--init" in options and options[options.index("--network") + 1] == "tiercdn"
        commands = split_command(argv[image + 1 :])
        env = dockerfile_env()
        for command in commands:
            parse(command[1:] if command[0] == "exec" else command, env)
        server = commands[-1][1:] if commands[-1][0] == "exec" else commands[-1]
        settings = parse(server, env)
        assert isinstance(settings, ServiceSettings)
        assert healthcheck.admin_address(server, env) == ("127.0.0.1", settings.admin_port)
        for upstream in getattr(settings, "upstream", ()):
            host, port = upstream.removeprefix("http://").split(":")
            assert names[host].port == int(port), upstream
        names[options[options.index("--name") + 1]] = settings
    edge = names["edge"]
    assert ["-p", f"{edge.port}:{edge.port}"] == runs[-1][runs[-1].index("-p") :][:2]


# --- the image's healthcheck ----------------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "argv"),
    [
        (["/usr/local/bin/python", "/usr/local/bin/tiercdn-edge", "--port", "1"],
         ["tiercdn-edge", "--port", "1"]),
        (["tiercdn-regional"], ["tiercdn-regional"]),
        (["/usr/bin/python3", "-m", "origin", "serve", "--port", "2"],
         ["tiercdn-origin", "serve", "--port", "2"]),
        (["python", "/usr/local/bin/tiercdn-origin", "sample", "--out", "/library/x"], None),
        (["sh", "-c", "ls /library || tiercdn-origin sample; exec tiercdn-origin serve"], None),
        (["/sbin/docker-init", "--", "tiercdn-edge"], None),
        (["python", "/usr/local/lib/tiercdn/healthcheck.py"], None),
        ([], None),
    ],
)  # fmt: skip
def test_healthcheck_recognises_node_processes(cmdline, argv):
    """Console scripts, ``python -m`` (as ``tiercdn up`` starts tiers) and serving origins only."""
    assert healthcheck.node_argv(cmdline) == argv


@pytest.mark.parametrize("program", ["tiercdn-edge", "tiercdn-regional", "tiercdn-origin"])
def test_healthcheck_reads_the_admin_port_as_settings_do(program, tmp_path):
    """Flag over env over --config file over the tier's default, as the real settings load."""
    config = tmp_path / "node.toml"
    config.write_text('admin-port = 9555\nadmin_host = "127.0.0.2"\n')
    serve = ["serve"] if program == "tiercdn-origin" else []
    cases: list[tuple[list[str], dict[str, str]]] = [
        ([], {}),
        (["--config", str(config)], {}),
        ([], {"TIERCDN_CONFIG": str(config), "TIERCDN_ADMIN_HOST": "0.0.0.0"}),
        ([f"--config={config}"], {"TIERCDN_ADMIN_PORT": "9666"}),
        (["--admin-port", "9777", "--config", str(config)], {"TIERCDN_ADMIN_PORT": "9666"}),
        (["--admin-port=9888", "--admin-host", "::"], {}),
        (["--admin-port", "0"], {}),
    ]
    for flags, env in cases:
        argv = [program, *serve, *flags]
        settings = parse(argv, env)
        host = "127.0.0.1" if settings.admin_host in ("0.0.0.0", "::") else settings.admin_host
        assert healthcheck.admin_address(argv, env) == (host, settings.admin_port), (flags, env)


def fake_proc(root: Path, processes: dict[int, tuple[list[str], dict[str, str]]]) -> Path:
    """A /proc tree with ``cmdline`` and ``environ`` files, NUL-separated as the kernel writes."""
    for pid, (cmdline, environ) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in cmdline))
        pairs = [f"{k}={v}".encode() + b"\0" for k, v in environ.items()]
        (root / str(pid) / "environ").write_bytes(b"".join(pairs))
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


async def run_healthcheck(proc: Path) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "docker/healthcheck.py"),
        "--proc",
        str(proc),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert out == b""
    assert process.returncode is not None
    return process.returncode, err.decode().splitlines()


# --- lock files -------------------------------------------------------------------


def lock(name: str) -> dict[str, Requirement]:
    """requirements/NAME.lock as canonical name → its pinned requirement (with any marker)."""
    pins: dict[str, Requirement] = {}
    for line in (REPO / "requirements" / f"{name}.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = req
    return pins


def pinned(req: Requirement) -> str:
    (spec,) = req.specifier
    return spec.version


@pytest.mark.parametrize(("name", "extras"), [("runtime", ()), ("dev", ("dev",))])
def test_locks_pin_every_dependency_of_pyproject(name, extras):
    """Each dependency pyproject.toml names is pinned at a version its specifier allows."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    pins = lock(name)
    for req in wanted:
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"requirements/{name}.lock lacks {req}: run requirements/compile"
        assert req.specifier.contains(pinned(pin), prereleases=True), (
            f"requirements/{name}.lock pins {req.name}=={pinned(pin)}, outside {req}:"
            " run requirements/compile"
        )
        if req.marker is not None:  # the lock keeps the marker (a universal lock)
            assert pin.marker is not None, f"{name}.lock: {req.name} lost its marker"
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    assert all(p.marker is None or isinstance(p.marker.evaluate(env), bool) for p in pins.values())


def test_locks_agree_and_are_what_the_image_and_bootstrap_install():
    """The image (runtime.lock) runs the versions CI tests (dev.lock); both installers use them."""
    runtime, dev = lock("runtime"), lock("dev")
    assert {n: pinned(r) for n, r in runtime.items()} == {n: pinned(dev[n]) for n in runtime}
    assert "tiercdn" not in dev
    bootstrap = (REPO / "scripts/bootstrap").read_text()
    assert "pip -r requirements/dev.lock" in bootstrap
    assert "-r requirements/runtime.lock" in bootstrap
    assert bootstrap.count("pip --no-deps -e .") == 2


# --- scripts/compose-smoke ----------------------------------------------------------


def test_compose_smoke_without_an_engine_says_what_to_do(tmp_path):
    """No engine reachable: one line on how to get one and pass a base image, exit 2."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.run(
        [str(REPO / "scripts/compose-smoke")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("compose-smoke: no Docker engine")
    assert "apt-get install docker.io" in line and "BASE_IMAGE=" in line


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


async def test_healthcheck_probes_every_node_it_finds(compose_nodes, tmp_path):
    """Healthy when every node in the /proc tree answers /healthz; one line per one that doesn't."""
    script = ["/usr/local/bin/python", "/usr/local/bin/tiercdn-edge"]
    edge_env = {"TIERCDN_ADMIN_PORT": str(compose_nodes["edge-1"].port), "PATH": "/usr/bin"}
    regional_argv = ["tiercdn-regional", "--admin-port", str(compose_nodes["regional"].port)]
    Process = tuple[list[str], dict[str, str]]
    closed = compose_nodes["origin"]
    closed_port = closed.port  # None once closed
    await closed.close()
    init: Process = (["/sbin/docker-init", "--", "tiercdn-edge"], {})
    healthy = {1: init, 7: ([*script, "--name", "edge-1"], edge_env), 8: (regional_argv, {})}
    assert await run_healthcheck(fake_proc(tmp_path / "up", healthy)) == (0, [])

    origin: Process = (["tiercdn-origin", "serve", f"--admin-port={closed_port}"], {})
    code, lines = await run_healthcheck(fake_proc(tmp_path / "down", {**healthy, 9: origin}))
    assert code == 1
    (line,) = lines
    assert line.startswith(f"unhealthy: tiercdn-origin (pid 9): http://127.0.0.1:{closed_port}/")

    garbled: Process = (["tiercdn-edge", "--admin-port", "lots"], {})
    code, lines = await run_healthcheck(fake_proc(tmp_path / "bad", {**healthy, 9: garbled}))
    assert (code, lines) == (
        1,
        ["unhealthy: tiercdn-edge (pid 9): admin port 'lots' is not a number"],
    )

    making_sample: dict[int, Process] = {
        1: (["tiercdn-origin", "sample", "--out", "/library/sample"], {})
    }
    assert await run_healthcheck(fake_proc(tmp_path / "none", making_sample)) == (
        1,
        ["unhealthy: no tiercdn node is running (yet)"],
    )
