"""A small kustomize, enough for deploy/kubernetes, and Kubernetes quantities.

``render(folder)`` builds a kustomization the way ``kubectl kustomize`` does, for the
fields deploy/kubernetes uses and no others (any other field fails loudly, so the
kustomization stays as simple as this): ``resources`` (YAML files of objects, or
folders holding a kustomization, the way overlays include a base), and
``configMapGenerator`` entries with ``files`` (``KEY=PATH`` or ``PATH``) and
``options`` (``labels``, ``annotations``, ``disableNameSuffixHash``), under
``generatorOptions``. A generated ConfigMap's name gets kustomize's content hash
suffix, and references to it from pod templates (volumes, projected volumes,
``env``, ``envFrom``) are renamed the same way. Like kustomize's default load
restrictor, a file must lie inside its kustomization's folder; a folder resource
may lie anywhere. The result is compared with ``kubectl kustomize`` where kubectl is
installed (tests/functional/test_kubernetes.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

__all__ = ["KustomizeError", "config_map_hash", "objects_of", "quantity", "render"]

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_FIELDS = {"apiVersion", "kind", "resources", "configMapGenerator", "generatorOptions"}
_GENERATOR_FIELDS = {"name", "files", "options"}
_OPTIONS = {"labels", "annotations", "disableNameSuffixHash"}
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


class KustomizeError(Exception):
    """Something this renderer does not do, or kustomize would refuse."""


def render(folder: Path) -> list[Obj]:
    """The objects of the kustomization in ``folder``, generated ConfigMaps included."""
    objects, renames = _build(folder.resolve())
    for obj in objects:
        _rename_config_maps(obj, renames)
    return objects


def objects_of(text: str) -> list[Obj]:
    """The objects of a multi-document YAML text (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _build(folder: Path) -> tuple[list[Obj], dict[str, str]]:
    found = [folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()]
    if len(found) != 1:
        raise KustomizeError(f"{folder}: {len(found)} kustomization files")
    path = found[0]
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - _FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not do: {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind {spec['kind']}")
    objects: list[Obj] = []
    renames: dict[str, str] = {}
    for entry in spec.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            more, more_renames = _build(target)
            objects += more
            renames.update(more_renames)
        else:
            objects += objects_of(_inside(folder, entry).read_text())
    defaults = spec.get("generatorOptions", {})
    for generator in spec.get("configMapGenerator", []):
        config_map = _generate(folder, generator, defaults)
        renames[generator["name"]] = config_map["metadata"]["name"]
        objects.append(config_map)
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{folder}: {key} twice")
        seen.add(key)
    return objects, renames


def _inside(folder: Path, entry: str) -> Path:
    """``folder/entry``, which kustomize's default load restrictor keeps inside ``folder``."""
    path = (folder / entry).resolve()
    if not path.is_relative_to(folder):
        raise KustomizeError(f"{entry} is outside {folder} (kustomize refuses it)")
    return path


def _generate(folder: Path, generator: Obj, defaults: Obj) -> Obj:
    unknown = set(generator) - _GENERATOR_FIELDS
    options = {**defaults, **generator.get("options", {})}
    if unknown or set(options) - _OPTIONS:
        raise KustomizeError(f"configMapGenerator {generator['name']}: {unknown or options}")
    data: dict[str, str] = {}
    for entry in generator["files"]:
        key, _, source = entry.rpartition("=") if "=" in entry else ("", "", entry)
        data[key or Path(source).name] = _inside(folder, source).read_text()
    metadata: Obj = {"name": generator["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    if options.get("annotations"):
        metadata["annotations"] = dict(options["annotations"])
    config_map: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    config_map["data"] = data
    if not options.get("disableNameSuffixHash"):
        metadata["name"] += "-" + config_map_hash(data)
    return config_map


def config_map_hash(data: dict[str, str]) -> str:
    """kustomize's name suffix for a ConfigMap of ``data`` (sigs.k8s.io/kustomize/api/hasher).

    The SHA-256 of Go's ``json.Marshal`` of ``{"data", "kind", "name"}`` (keys sorted,
    ``<``, ``>``, ``&`` escaped), its first 10 hex digits with 0, 1, 3, a, e made letters.
    kustomize looks the name up as one field called ``metadata/name``, which no object
    has, so the name it hashes is always "" (checked against kubectl kustomize)."""
    text = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _pod_specs(obj: Obj) -> Iterator[Obj]:
    if obj["kind"] == "Pod":
        yield obj["spec"]
    elif obj["kind"] in _WORKLOADS:
        yield obj["spec"]["template"]["spec"]
    elif obj["kind"] == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _rename_config_maps(obj: Obj, renames: dict[str, str]) -> None:
    """Point pod templates' references at the generated (hash-suffixed) names."""

    def rename(ref: Obj | None) -> None:
        if ref and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]

    for spec in _pod_specs(obj):
        for volume in spec.get("volumes", []):
            rename(volume.get("configMap"))
            for source in volume.get("projected", {}).get("sources", []):
                rename(source.get("configMap"))
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            for env in container.get("env", []):
                rename(env.get("valueFrom", {}).get("configMapKeyRef"))
            for env_from in container.get("envFrom", []):
                rename(env_from.get("configMapRef"))


_QUANTITY = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX: dict[str | None, Decimal] = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    "m": Decimal("0.001"),
    None: Decimal(1),
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (``512Mi``, ``250m``, ``2``) as a number of units."""
    match = _QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    return Decimal(match[1]) * _SUFFIX[match[2]]
