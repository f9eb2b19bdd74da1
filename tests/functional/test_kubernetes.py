"""deploy/kubernetes checked without a cluster: rendered, schema-validated, wired.

No cluster runs here or in CI, so the kustomization is checked against the code it runs:

- tests/kube.py renders it the way ``kubectl kustomize`` does (and where kubectl is
  installed, the two renders must be equal), and every object must match the
  Kubernetes API's own JSON schemas (the ``kubernetes-validate`` package, strict:
  no unknown fields) for the oldest and the newest version the manifests target;
- each container's command line, with its ``env`` (downward-API values and Secrets
  replaced by sample values, ``$(VAR)`` expanded as the kubelet does) and its
  ``--config`` file read from the ConfigMap mounted there, must build the tier's
  settings with the CLI's own argparse parser and settings dataclass, as
  tests/functional/test_compose.py does for docker-compose.yml;
- those effective settings then pin the rest: container ports, probes, scrape
  annotations, Services and their target ports, parents and peers by Service name
  (headless where the pods' own addresses are wanted), volumes at the paths the
  settings use, the autoscaler, the disruption budget and the drain.

The checks are functions of a ``Cluster`` (the rendered objects), so the last test can
break a copy of the render in the ways that matter and see each check fail.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from yarl import URL

import origin.__main__ as origin_cli
from edge.settings import EdgeSettings
from origin.settings import OriginSettings
from regional.settings import RegionalSettings
from shared.service.settings import CacheSettings, env_name, from_namespace, load, read_config
from tests.helpers import shell_commands
from tests.kube import KustomizeError, config_map_hash, objects_of, quantity, render

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy/kubernetes"
DASHBOARD = REPO / "docker/grafana/dashboards/tiercdn.json"
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
IMAGE = COMPOSE["services"]["origin"]["image"]  # what `docker compose build` tags
TIERS = {"origin": "Deployment", "regional": "StatefulSet", "edge": "Deployment"}
SETTINGS = {"origin": OriginSettings, "regional": RegionalSettings, "edge": EdgeSettings}
# The oldest Kubernetes the manifests target (kind, k3d and minikube ship newer) and the
# newest whose schemas kubernetes-validate bundles.
VERSIONS = ("1.29", kubernetes_validate.latest_version())
# What the downward API and Secrets give a pod, for the pods rendered here.
POD_IP = "10.244.1.7"
SECRET = "sample-token"
LABELS = {"app.kubernetes.io/name": "tiercdn"}


# --- reading the render -----------------------------------------------------------


def dockerfile_env() -> dict[str, str]:
    """What the Dockerfile's ENV instructions set in every container of the image."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: defined variables only, ``$$`` is a ``$``."""

    def one(match: re.Match[str]) -> str:
        return "$" if match[0] == "$$" else env.get(match[1], match[0])

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def simple_commands(argv: list[str]) -> list[list[str]]:
    """``argv``, or the simple commands of its ``sh -c SCRIPT`` (split at ; || && |)."""
    return [c[1:] if c[0] == "exec" else c for c in shell_commands(argv)]


def module_of(program: str) -> str:
    """``tiercdn-edge`` → ``edge`` (its console script is ``edge.__main__:main``)."""
    assert program in SCRIPTS, f"{program} is not a console script of pyproject.toml"
    return SCRIPTS[program].split(":")[0].removesuffix(".__main__")


def parse(argv: list[str], env: dict[str, str]) -> Any:
    """One command line through its CLI's real parser: settings for a server, else a
    Namespace. argparse and the settings dataclasses exit on a bad flag or value."""
    module = module_of(argv[0])
    try:
        if module == "origin":
            ns = origin_cli._parser().parse_args(argv[1:])
            return from_namespace(OriginSettings, ns, env) if ns.command == "serve" else ns
        defaults = importlib.import_module(f"{module}.app").DEFAULTS
        return load(SETTINGS[module], argv[1:], prog=argv[0], env=env, **defaults)
    except SystemExit as exc:
        pytest.fail(f"{shlex.join(argv)} is rejected by its CLI: {exc}")


def port_number(pod: Obj, port: int | str) -> int:
    """A probe's or a Service's port (a number, or a container port's name) as a number."""
    declared = {
        p.get("name", p["containerPort"]): p["containerPort"]
        for c in pod["spec"]["containers"]
        for p in c.get("ports", [])
    }
    if isinstance(port, str):
        assert port in declared, f"no container port named {port!r}"
        return int(declared[port])
    assert port in declared.values(), f"no container declares port {port}"
    return port


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def prestop_sleep(container: Obj) -> int:
    """The seconds a container's preStop hook sleeps before the kubelet's SIGTERM."""
    hook = container["lifecycle"]["preStop"]
    if "sleep" in hook:  # the built-in sleep action (Kubernetes 1.30+)
        return int(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


@dataclasses.dataclass(frozen=True)
class Node:
    """One tier's pod as the kubelet would start it."""

    tier: str
    workload: Obj
    pod: Obj  # the pod template
    container: Obj
    env: dict[str, str]  # the image's ENV, then the container's env
    argv: list[str]  # command + args, $(VAR) expanded
    settings: Any


class Cluster:
    """The rendered objects, looked up by kind and name."""

    def __init__(self, objects: list[Obj]) -> None:
        self.objects = objects
        self.by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}

    def get(self, kind: str, name: str) -> Obj:
        assert (kind, name) in self.by_key, f"no {kind} {name} in the render"
        return self.by_key[(kind, name)]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def workloads(self) -> list[Obj]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet")]

    @functools.cached_property
    def nodes(self) -> dict[str, Node]:
        return {tier: self._node(tier) for tier in TIERS}

    def _node(self, tier: str) -> Node:
        workload = self.get(TIERS[tier], tier)
        pod = workload["spec"]["template"]
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == tier]
        env = {**dockerfile_env(), **self.container_env(workload, container)}
        argv = self.argv(container, env)
        with tempfile.TemporaryDirectory() as tmp:
            local = self.localize_config(pod, container, argv, env, Path(tmp))
            settings = parse(local, env)
        assert isinstance(settings, SETTINGS[tier]), f"{tier} does not run a {tier} server"
        return Node(tier, workload, pod, container, env, argv, settings)

    def container_env(self, workload: Obj, container: Obj) -> dict[str, str]:
        """A container's env vars in order, with sample downward-API and Secret values."""
        suffix = "-0" if workload["kind"] == "StatefulSet" else "-5d8c7b9f4-x2x7q"
        fields = {"metadata.name": workload["metadata"]["name"] + suffix, "status.podIP": POD_IP}
        env: dict[str, str] = {}
        for var in container.get("env", []):
            source = var.get("valueFrom")
            if source is None:
                env[var["name"]] = expand(var.get("value", ""), env)
            elif "fieldRef" in source:
                env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in source:
                env[var["name"]] = SECRET
            else:
                ref = source["configMapKeyRef"]
                env[var["name"]] = self.get("ConfigMap", ref["name"])["data"][ref["key"]]
        return env

    @staticmethod
    def argv(container: Obj, env: dict[str, str]) -> list[str]:
        """command + args as the kubelet runs them (the image has no ENTRYPOINT)."""
        argv = [
            expand(str(a), env) for a in container.get("command", []) + container.get("args", [])
        ]
        unresolved = [a for a in argv if "$(" in a]
        assert not unresolved, f"{container['name']}: undefined variables in {unresolved}"
        return argv

    def mounted_file(self, pod: Obj, container: Obj, path: str) -> str:
        """The text of the file at ``path`` in the container: a key of a mounted ConfigMap."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            where = PurePosixPath(mount["mountPath"])
            if PurePosixPath(path).is_relative_to(where):
                volume = volumes[mount["name"]]
                assert "configMap" in volume, f"{path} is on {mount['name']}, not a ConfigMap"
                key = mount.get("subPath") or str(PurePosixPath(path).relative_to(where))
                data = self.get("ConfigMap", volume["configMap"]["name"])["data"]
                assert key in data, f"{path}: the ConfigMap has no key {key}"
                return str(data[key])
        raise AssertionError(f"{container['name']}: nothing is mounted at {path}")

    def localize_config(
        self, pod: Obj, container: Obj, argv: list[str], env: dict[str, str], tmp: Path
    ) -> list[str]:
        """``argv`` with its --config path replaced by a local copy of the mounted file."""
        argv = list(argv)
        for i, arg in enumerate(argv):
            if arg == "--config" or arg.startswith("--config="):
                at, path = (i + 1, argv[i + 1]) if arg == "--config" else (i, arg[9:])
                local = tmp / path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(self.mounted_file(pod, container, path))
                argv[at] = str(local) if at != i else f"--config={local}"
        assert "TIERCDN_CONFIG" not in env, "pass --config as a flag"
        return argv

    def service(self, name: str) -> Obj:
        assert "." not in name, f"{name}: a Service's short name works in any namespace"
        return self.get("Service", name)

    def selected(self, service: Obj) -> Node:
        """The tier whose pods a Service selects (exactly one)."""
        selector = service["spec"].get("selector", {})
        chosen = [n for n in self.nodes.values() if selects(selector, n.pod["metadata"]["labels"])]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)}"
        return chosen[0]

    def url_target(self, url: str) -> tuple[Node, int]:
        """The tier and container port behind ``http://SERVICE:PORT`` (a Service's port)."""
        parsed = URL(url)
        assert parsed.scheme == "http" and parsed.host and parsed.explicit_port, url
        service = self.service(parsed.host)
        node = self.selected(service)
        ports = [p for p in service["spec"]["ports"] if p["port"] == parsed.explicit_port]
        assert ports, f"{url}: Service {parsed.host} has no port {parsed.explicit_port}"
        return node, port_number(node.pod, ports[0].get("targetPort", ports[0]["port"]))

    def dns_target(self, name: str) -> tuple[Node, int]:
        """The tier behind ``SERVICE:PORT`` looked up as DNS: a headless Service's records
        are its ready pods' own addresses, so PORT is the pods' container port."""
        host, _, port = name.partition(":")
        service = self.service(host)
        assert service["spec"].get("clusterIP") == "None", f"{host} is not headless"
        node = self.selected(service)
        declared = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        assert declared, f"{name}: Service {host} declares no port {port}"
        assert port_number(node.pod, declared[0].get("targetPort", int(port))) == int(port)
        return node, int(port)


CLUSTER = Cluster(render(DEPLOY))

CLUSTER_CONFIG = next(
    o for o in CLUSTER.of_kind("ConfigMap") if o["metadata"]["name"].startswith("tiercdn-config-")
)


# --- the checks -------------------------------------------------------------------


def check_listeners(cluster: Cluster) -> None:
    """Both listeners bind 0.0.0.0; the container ports are exactly those two."""
    for node in cluster.nodes.values():
        settings = node.settings
        assert (settings.host, settings.admin_host) == ("0.0.0.0", "0.0.0.0"), node.tier
        declared = {p["name"]: p["containerPort"] for p in node.container["ports"]}
        assert declared == {"http": settings.port, "admin": settings.admin_port}, node.tier


def check_probes(cluster: Cluster) -> None:
    """Readiness and liveness ask the admin listener's /healthz."""
    for node in cluster.nodes.values():
        for probe in ("readinessProbe", "livenessProbe"):
            get = node.container[probe]["httpGet"]
            assert get["path"] == "/healthz", (node.tier, probe)
            assert port_number(node.pod, get["port"]) == node.settings.admin_port, (
                node.tier,
                probe,
            )


def check_scrape_annotations(cluster: Cluster) -> None:
    """Prometheus's pod annotations name the admin listener's /metrics."""
    for node in cluster.nodes.values():
        annotations = node.pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", node.tier
        assert annotations["prometheus.io/port"] == str(node.settings.admin_port), node.tier
        assert annotations["prometheus.io/path"] == "/metrics", node.tier


def check_services(cluster: Cluster) -> None:
    """Each Service selects one tier's pods and targets ports they declare; the public
    one (edge) exposes the player port only; a StatefulSet's governing Service is headless."""
    for service in cluster.of_kind("Service"):
        node = cluster.selected(service)
        for port in service["spec"]["ports"]:
            port_number(node.pod, port.get("targetPort", port["port"]))
    public = [
        s for s in cluster.of_kind("Service") if s["spec"].get("type") not in (None, "ClusterIP")
    ]
    assert [s["metadata"]["name"] for s in public] == ["edge"]
    edge = cluster.nodes["edge"]
    assert [port_number(edge.pod, p["targetPort"]) for p in public[0]["spec"]["ports"]] == [
        edge.settings.port
    ]
    for workload in cluster.of_kind("StatefulSet"):
        governing = cluster.service(workload["spec"]["serviceName"])
        assert governing["spec"].get("clusterIP") == "None"
        assert cluster.selected(governing).workload is workload


def check_tiers_point_at_each_other(cluster: Cluster) -> None:
    """The regionals' parent is the origin; the edges' are the regionals, one DNS record
    per pod, and their peers the other edges, each naming itself the way they name it."""
    origin, regional, edge = (cluster.nodes[t] for t in ("origin", "regional", "edge"))
    (parent,) = regional.settings.upstream
    assert cluster.url_target(parent) == (origin, origin.settings.port)
    assert regional.settings.upstream_dns == ""
    assert edge.settings.upstream == (), "the edges' parents are --upstream-dns's records only"
    assert cluster.dns_target(edge.settings.upstream_dns) == (regional, regional.settings.port)
    assert cluster.url_target(edge.settings.fallback) == (origin, origin.settings.port)
    peers, peers_port = cluster.dns_target(edge.settings.peers_dns)
    assert peers is edge and peers_port == edge.settings.port
    assert edge.settings.peer_url == f"http://{POD_IP}:{peers_port}"
    assert edge.settings.workers == "auto"
    for node in (regional, edge):  # each pod its own name in Cache-Status and Via
        assert node.settings.name == node.env["POD_NAME"], node.tier


def check_volumes(cluster: Cluster) -> None:
    """Mounts name volumes of the pod; the origin's library and the regionals' disk tier
    are persistent volumes mounted where the settings put them, with room for them."""
    for workload in cluster.workloads():
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, mount
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                cluster.get("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            if "configMap" in volume:
                cluster.get("ConfigMap", volume["configMap"]["name"])
    origin = cluster.nodes["origin"]
    library = mount_of(origin, origin.settings.library)
    assert library["mountPath"] == origin.settings.library
    claim = volume_of(origin, library["name"])["persistentVolumeClaim"]["claimName"]
    assert "ReadWriteOnce" in cluster.get("PersistentVolumeClaim", claim)["spec"]["accessModes"]
    assert origin.workload["spec"]["strategy"]["type"] == "Recreate", "one pod holds the claim"

    regional = cluster.nodes["regional"]
    settings: CacheSettings = regional.settings
    assert settings.disk_path, "the regionals keep a disk tier"
    disk = mount_of(regional, settings.disk_path)
    (template,) = [
        t
        for t in regional.workload["spec"]["volumeClaimTemplates"]
        if t["metadata"]["name"] == disk["name"]
    ]
    assert settings.disk_bytes <= quantity(template["spec"]["resources"]["requests"]["storage"])
    for node in cluster.nodes.values():
        limit = quantity(node.container["resources"]["limits"]["memory"])
        assert getattr(node.settings, "cache_bytes", 0) < limit, node.tier


def mount_of(node: Node, path: str) -> Obj:
    """The volume mount that holds ``path`` in a tier's container."""
    mounts = [
        m
        for m in node.container.get("volumeMounts", [])
        if PurePosixPath(path).is_relative_to(m["mountPath"])
    ]
    assert mounts, f"{node.tier}: nothing is mounted at {path}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


def volume_of(node: Node, name: str) -> Obj:
    (volume,) = [v for v in node.pod["spec"]["volumes"] if v["name"] == name]
    return volume


def check_origin_makes_the_sample(cluster: Cluster) -> None:
    """An empty library gets the sample title (init container) in the volume then served."""
    origin = cluster.nodes["origin"]
    (init,) = origin.pod["spec"]["initContainers"]
    assert init["image"] == origin.container["image"]
    argv = Cluster.argv(init, cluster.container_env(origin.workload, init))
    commands = [c for c in simple_commands(argv) if c[0].startswith("tiercdn")]
    (sample,) = commands
    ns = parse(sample, {})
    assert ns.command == "sample"
    library = origin.settings.library
    assert ns.out.parent == Path(library)
    assert f"ls {library}/*/manifest.mpd" in argv[2], "made only while the library is empty"
    (mount,) = [m for m in init["volumeMounts"] if m["mountPath"] == library]
    assert mount["name"] == mount_of(origin, library)["name"]


def check_scaling_and_drain(cluster: Cluster) -> None:
    """The autoscaler and the disruption budget act on the edge pods; a stopping cache
    pod sleeps past its peers' next lookup, then drains within its grace period."""
    edge = cluster.nodes["edge"]
    (hpa,) = cluster.of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert cluster.get(target["kind"], target["name"]) is edge.workload
    assert "replicas" not in edge.workload["spec"], "the autoscaler owns the replica count"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert quantity(edge.container["resources"]["requests"]["cpu"]) > 0, "CPU % needs requests"
    (pdb,) = cluster.of_kind("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], edge.pod["metadata"]["labels"])
    assert selects(edge.workload["spec"]["selector"]["matchLabels"], edge.pod["metadata"]["labels"])
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be possible"
    for node in (cluster.nodes["regional"], edge):
        sleep = prestop_sleep(node.container)
        grace = node.pod["spec"]["terminationGracePeriodSeconds"]
        assert edge.settings.dns_refresh < sleep < grace, node.tier


# --- tests --------------------------------------------------------------------------


def test_render_holds_the_three_tiers_on_one_image():
    """origin, regionals, edges and what they need; every container runs the compose image."""
    assert set(CLUSTER.by_key) == {
        ("PersistentVolumeClaim", "origin-library"),
        ("Deployment", "origin"),
        ("Service", "origin"),
        ("StatefulSet", "regional"),
        ("Service", "regional"),
        ("Service", "regional-headless"),
        ("Deployment", "edge"),
        ("Service", "edge"),
        ("Service", "edge-peers"),
        ("HorizontalPodAutoscaler", "edge"),
        ("PodDisruptionBudget", "edge"),
        ("ConfigMap", f"tiercdn-config-{config_map_hash(CLUSTER_CONFIG['data'])}"),
        ("ConfigMap", "tiercdn-grafana-dashboard"),
    }
    assert CLUSTER.nodes["regional"].workload["spec"]["replicas"] == 2
    assert CLUSTER.nodes["origin"].workload["spec"]["replicas"] == 1
    for workload in CLUSTER.workloads():
        spec = workload["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert (container["image"], container["imagePullPolicy"]) == (IMAGE, "IfNotPresent")
        assert selects(
            workload["spec"]["selector"]["matchLabels"],
            LABELS | {"app.kubernetes.io/component": workload["metadata"]["name"]},
        )
    assert IMAGE == "tiercdn:local"


def test_render_matches_kubectl_kustomize():
    """tests/kube.py renders what kubectl's own kustomize does (objects, names, hashes)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: the render is not compared with kustomize's")
    proc = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in objects_of(proc.stdout)}
    assert set(theirs) == set(CLUSTER.by_key)
    for key, obj in theirs.items():
        assert CLUSTER.by_key[key] == obj, key


def test_renderer_refuses_what_it_does_not_do(tmp_path):
    """A field the renderer ignores, or a file outside the folder, fails instead of passing."""
    (tmp_path / "a.toml").write_text("x = 1\n")
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("namePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(base)
    generator = {"configMapGenerator": [{"name": "c", "files": ["../a.toml"]}]}
    (base / "kustomization.yaml").write_text(yaml.safe_dump(generator))
    with pytest.raises(KustomizeError, match="outside"):
        render(base)
    # kustomize's own test vectors (api/hasher/hasher_test.go), and a key=path entry.
    assert config_map_hash({}) != config_map_hash({"one": ""}) == "9g67k2htb6"
    generator = {"configMapGenerator": [{"name": "c", "files": ["k.toml=a.toml"]}]}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(generator))
    (config_map,) = render(tmp_path)
    assert config_map["data"] == {"k.toml": "x = 1\n"}
    assert config_map["metadata"]["name"] == "c-" + config_map_hash({"k.toml": "x = 1\n"})


@pytest.mark.parametrize("version", VERSIONS)
def test_objects_match_the_kubernetes_schemas(version):
    """Every object validates, strictly (no unknown field), against the API's schemas."""
    for obj in CLUSTER.objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(exc.message)


@pytest.mark.parametrize("tier", TIERS)
def test_containers_run_real_cli_invocations(tier, tmp_path):
    """Each tier's command line, env and --config file build its settings with its CLI."""
    node = CLUSTER.nodes[tier]
    assert module_of(node.argv[0]) == tier
    path = next(a for a in node.argv if a.startswith("--config=")).removeprefix("--config=")
    local = tmp_path / f"{tier}.toml"
    local.write_text(CLUSTER.mounted_file(node.pod, node.container, path))
    values = read_config(SETTINGS[tier], str(local))
    assert values, f"{path} sets nothing"
    flags = {a[2:].partition("=")[0].replace("-", "_") for a in node.argv if a.startswith("--")}
    for name, value in values.items():  # the file's values hold where no flag is given
        if name not in flags and env_name(name) not in node.env:
            assert getattr(node.settings, name) == value, name


def test_config_files_are_all_used():
    """Each key of the settings ConfigMap is the --config of some tier."""
    used = {
        next(a for a in n.argv if a.startswith("--config=")).rsplit("/", 1)[-1]
        for n in CLUSTER.nodes.values()
    }
    assert set(CLUSTER_CONFIG["data"]) == used


def test_listeners_and_container_ports():
    check_listeners(CLUSTER)


def test_probes_ask_the_admin_healthz():
    check_probes(CLUSTER)


def test_prometheus_scrapes_the_admin_listener():
    check_scrape_annotations(CLUSTER)


def test_services_select_one_tier_and_target_its_ports():
    check_services(CLUSTER)


def test_tiers_point_at_each_other():
    check_tiers_point_at_each_other(CLUSTER)


def test_volumes_are_mounted_where_the_settings_use_them():
    check_volumes(CLUSTER)


def test_origin_makes_the_sample_into_its_library():
    check_origin_makes_the_sample(CLUSTER)


def test_edges_scale_and_drain_gracefully():
    check_scaling_and_drain(CLUSTER)


def test_grafana_dashboard_is_the_compose_dashboard():
    """The dashboard ConfigMap is docker/grafana/dashboards/tiercdn.json, byte for byte."""
    dashboard = CLUSTER.get("ConfigMap", "tiercdn-grafana-dashboard")
    assert dashboard["data"] == {"tiercdn.json": DASHBOARD.read_text()}
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


# --- the checks can fail --------------------------------------------------------------

Mutation = Callable[[list[Obj]], None]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    (obj,) = [o for o in objects if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    return obj


def pod_spec(objects: list[Obj], kind: str, name: str) -> Obj:
    spec: Obj = find(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def set_arg(kind: str, name: str, flag: str, value: str) -> Mutation:
    """Give ``--flag`` of the workload's first container another value."""

    def mutate(objects: list[Obj]) -> None:
        args = pod_spec(objects, kind, name)["containers"][0]["args"]
        (i,) = [i for i, a in enumerate(args) if a.startswith(f"--{flag}=")]
        args[i] = f"--{flag}={value}"

    return mutate


def edge_probe_path(objects: list[Obj]) -> None:
    pod_spec(objects, "Deployment", "edge")["containers"][0]["livenessProbe"]["httpGet"]["path"] = (
        "/health"
    )


def edge_scrape_port(objects: list[Obj]) -> None:
    template = find(objects, "Deployment", "edge")["spec"]["template"]
    template["metadata"]["annotations"]["prometheus.io/port"] = "8080"


def regional_target_port(objects: list[Obj]) -> None:
    find(objects, "Service", "regional")["spec"]["ports"][0]["targetPort"] = "proxy"


def peers_not_headless(objects: list[Obj]) -> None:
    del find(objects, "Service", "edge-peers")["spec"]["clusterIP"]


def pdb_selects_nothing(objects: list[Obj]) -> None:
    labels = find(objects, "PodDisruptionBudget", "edge")["spec"]["selector"]["matchLabels"]
    labels["app.kubernetes.io/component"] = "edges"


def long_prestop(objects: list[Obj]) -> None:
    edge = pod_spec(objects, "Deployment", "edge")["containers"][0]
    edge["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "60"]


def small_disk_claim(objects: list[Obj]) -> None:
    (claim,) = find(objects, "StatefulSet", "regional")["spec"]["volumeClaimTemplates"]
    claim["spec"]["resources"]["requests"]["storage"] = "1Gi"


def sample_outside_library(objects: list[Obj]) -> None:
    init = pod_spec(objects, "Deployment", "origin")["initContainers"][0]
    init["command"][2] = init["command"][2].replace("/library/sample", "/tmp/sample")


def edge_replicas(objects: list[Obj]) -> None:
    find(objects, "Deployment", "edge")["spec"]["replicas"] = 2


BREAKAGES = [
    # parents and peers
    (
        "peers on the wrong port",
        set_arg("Deployment", "edge", "peers-dns", "edge-peers:8081"),
        check_tiers_point_at_each_other,
    ),
    (
        "parents by a ClusterIP",
        set_arg("Deployment", "edge", "upstream-dns", "regional:8081"),
        check_tiers_point_at_each_other,
    ),
    (
        "parent's admin port",
        set_arg("StatefulSet", "regional", "upstream", "http://origin:9082"),
        check_tiers_point_at_each_other,
    ),
    (
        "peer URL's port",
        set_arg("Deployment", "edge", "peer-url", "http://$(POD_IP):9080"),
        check_tiers_point_at_each_other,
    ),
    ("peers not headless", peers_not_headless, check_tiers_point_at_each_other),
    # volumes
    (
        "disk tier off its volume",
        set_arg("StatefulSet", "regional", "disk-path", "/data/disk"),
        check_volumes,
    ),
    (
        "library off its volume",
        set_arg("Deployment", "origin", "library", "/srv/library"),
        check_volumes,
    ),
    ("disk tier over its claim", small_disk_claim, check_volumes),
    ("sample outside the library", sample_outside_library, check_origin_makes_the_sample),
    # listeners, probes, scraping, Services
    ("admin port moved", set_arg("Deployment", "edge", "admin-port", "9090"), check_probes),
    (
        "admin on loopback",
        set_arg("Deployment", "edge", "admin-host", "127.0.0.1"),
        check_listeners,
    ),
    ("probe path", edge_probe_path, check_probes),
    ("scrape port", edge_scrape_port, check_scrape_annotations),
    ("Service targets no port", regional_target_port, check_services),
    # the CLI refuses
    ("bad flag value", set_arg("Deployment", "edge", "workers", "lots"), check_listeners),
    (
        "config not mounted",
        set_arg("Deployment", "edge", "config", "/etc/tiercdn/edge.conf"),
        check_listeners,
    ),
    ("undefined variable", set_arg("Deployment", "edge", "name", "$(NODE_NAME)"), check_listeners),
    # scaling and drain
    ("PDB selects nothing", pdb_selects_nothing, check_scaling_and_drain),
    ("preStop outlasts the grace period", long_prestop, check_scaling_and_drain),
    ("replicas beside the autoscaler", edge_replicas, check_scaling_and_drain),
]

CHECKS = (
    check_listeners,
    check_probes,
    check_scrape_annotations,
    check_services,
    check_tiers_point_at_each_other,
    check_volumes,
    check_origin_makes_the_sample,
    check_scaling_and_drain,
)


def run_checks(cluster: Cluster) -> None:
    for check in CHECKS:
        check(cluster)


def test_checks_pass_on_a_copy_of_the_render():
    """The checks themselves, on an unbroken copy: what the next test breaks passes here."""
    run_checks(Cluster(copy.deepcopy(CLUSTER.objects)))


@pytest.mark.parametrize(("what", "mutate", "check"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_checks_catch_broken_wiring(what, mutate, check):
    """Each check fails on a copy of the render broken in a way it guards against."""
    objects = copy.deepcopy(CLUSTER.objects)
    mutate(objects)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check(Cluster(objects))
