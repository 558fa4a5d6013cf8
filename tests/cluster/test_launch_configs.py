"""The launch configs a user edits and runs: ``cluster/aws.yaml`` (``ray up``) and ``cluster/kuberay/rayjob.yaml``
(``kubectl apply``).

* aws.yaml is checked against the schema inside the installed Ray (``ray/autoscaler/ray-schema.json``) and by Ray's
  own validator, the two steps ``ray up`` runs before it touches AWS.
* KubeRay's CRDs may not be committed here (content fetched from other repositories is not), so the RayJob is checked
  in two parts: its pod templates against Kubernetes' own API models (the ``kubernetes`` package's generated
  ``V1PodTemplateSpec`` & co.: unknown keys and wrong basic types are errors), and the RayJob fields the sweep relies
  on by hand, the entry point parsed by the sweep's real argument parser (a renamed flag fails here).
* Nothing under cluster/ holds a literal password or token.

Every check is a function returning its errors, so the negative tests run the same code on broken copies.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.resources
import json
import re
import shlex
import string
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
AWS_YAML = CLUSTER / "aws.yaml"
RAYJOB_YAML = CLUSTER / "kuberay" / "rayjob.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
KNOWN_GOOD_RAY = PYPROJECT["tool"]["bap-sweeps"]["known-good"]["ray"]


def load_aws() -> dict[str, Any]:
    return yaml.safe_load(AWS_YAML.read_text())


def load_rayjob() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(RAYJOB_YAML.read_text()) if d is not None]
    assert len(docs) == 1, f"{RAYJOB_YAML} should hold one document (the RayJob), found {len(docs)}"
    return docs[0]


# --------------------------------------------------------------------------------------------- cluster/aws.yaml


def ray_schema() -> dict[str, Any]:
    """The cluster-launcher schema shipped inside the installed Ray (what ``ray up`` validates against)."""
    return json.loads(importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())


def schema_errors(cfg: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = ray_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<top level>'}: {e.message}"
                  for e in validator_cls(schema).iter_errors(cfg))


def ray_validator_errors(cfg: dict[str, Any]) -> list[str]:
    """Ray's own checks, as ``ray up`` runs them (before any cloud call): the config as written, then merged with the
    provider's defaults. ``ray.autoscaler._private.util`` is private API (present throughout Ray 2.x)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(copy.deepcopy(cfg))
        validate_config(prepare_config(copy.deepcopy(cfg)))
    except Exception as exc:  # jsonschema.ValidationError, ValueError, RuntimeError, KeyError: all mean "broken"
        return [f"{type(exc).__name__}: {str(exc).splitlines()[0]}"]
    return []


def all_setup_commands(cfg: dict[str, Any]) -> list[str]:
    return [*cfg.get("setup_commands", []), *cfg.get("head_setup_commands", []),
            *cfg.get("worker_setup_commands", [])]


def test_aws_yaml_matches_rays_schema():
    assert schema_errors(load_aws()) == []


def test_aws_yaml_passes_rays_validator():
    assert ray_validator_errors(load_aws()) == []


def _set(path: str, value: Any):
    def mutate(cfg):
        *parents, last = path.split("/")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


def _pop(path: str):
    def mutate(cfg):
        *parents, last = path.split("/")
        node = cfg
        for key in parents:
            node = node[key]
        del node[last]
    return mutate


# Broken copies the schema itself must refuse (and with it, Ray's validator).
SCHEMA_BREAKS = {
    "unknown top-level key": _set("max_worker", 4),
    "wrong type at the top level": _set("max_workers", "four"),
    "unknown node-type key": _set("available_node_types/gpu_worker/min_worker", 0),
    "node type without resources": _pop("available_node_types/gpu_worker/resources"),
    "fractional resource": _set("available_node_types/gpu_worker/resources/GPU", 0.5),
    "commands as a string": _set("setup_commands", "pip install -e ."),
    "unknown docker key": _set("docker/imag", "rayproject/ray:latest"),
}
# Broken copies that pass the schema, and that only Ray's validator refuses.
VALIDATOR_BREAKS = {
    "head node type not among the node types": _set("head_node_type", "ray.head.default"),
    "more min_workers than max_workers": _set("available_node_types/gpu_worker/min_workers", 99),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_BREAKS))
def test_broken_aws_yaml_fails_the_schema_and_rays_validator(name):
    cfg = load_aws()
    SCHEMA_BREAKS[name](cfg)
    assert schema_errors(cfg), f"{name}: the schema accepted a broken config"
    assert ray_validator_errors(cfg), f"{name}: Ray's validator accepted a broken config"


@pytest.mark.parametrize("name", sorted(VALIDATOR_BREAKS))
def test_broken_aws_yaml_fails_rays_validator(name):
    cfg = load_aws()
    VALIDATOR_BREAKS[name](cfg)
    assert schema_errors(cfg) == []  # the schema alone cannot tell...
    assert ray_validator_errors(cfg), f"{name}: Ray's validator accepted a broken config"  # ...Ray's validator can


def test_aws_head_runs_no_trials_and_gpu_workers_hold_a_decathlon_trial():
    from sweeps.config import load_preset

    cfg = load_aws()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "trials must not run on the head"
    gpu_types = {name: t for name, t in types.items() if name != cfg["head_node_type"] and t["resources"].get("GPU")}
    assert gpu_types, "no GPU worker type"
    preset = load_preset("decathlon")
    for name, t in gpu_types.items():
        assert 0 <= t.get("min_workers", 0) <= t["max_workers"] <= cfg["max_workers"], name
        assert t["max_workers"] >= 1, f"{name} can never start"
        assert t["resources"]["CPU"] >= preset["cpus_per_trial"] and t["resources"]["GPU"] >= preset["gpus_per_trial"], (
            f"{name} cannot hold one trial of the decathlon preset")
    if all(t.get("min_workers", 0) == 0 for t in gpu_types.values()):
        # no GPU node until a trial asks for one: the submit line must skip the driver's resource check
        assert "--no-check-resources" in AWS_YAML.read_text()


def test_aws_keeps_token_auth_on_and_the_dashboard_on_localhost():
    cfg = load_aws()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts, f"{key} starts no Ray"
        for command in starts:
            assert re.search(r"\bRAY_AUTH_MODE=token\b", command), f"{key}: token auth is not on: {command}"
    head_start = next(c for c in cfg["head_start_ray_commands"] if "ray start" in c)
    assert re.search(r"--dashboard-host[= ](127\.0\.0\.1|localhost)\b", head_start), head_start
    assert "0.0.0.0" not in json.dumps(cfg), "aws.yaml binds something to every address"
    # the token ray start needs (with RAY_AUTH_MODE=token and no token, it refuses to start) reaches every node
    assert any(remote.endswith(".ray/auth_token") for remote in cfg["file_mounts"]), cfg["file_mounts"]


def test_aws_setup_installs_the_project_with_the_postgres_extra():
    cfg = load_aws()
    commands = all_setup_commands(cfg)
    install = re.compile(r"\bpip install\b.*?\s-e\s+(['\"]?)\.\[(?P<extras>[^\]]*)\]\1")
    found = [(i, c, m) for i, c in enumerate(commands) if (m := install.search(c))]
    assert found, f"no `pip install -e '.[...]'` among the setup commands: {commands}"
    index, command, match = found[0]
    assert "postgres" in {e.strip() for e in match["extras"].split(",")}, command
    assert "postgres" in PYPROJECT["project"]["optional-dependencies"], "pyproject.toml lost the postgres extra"
    # ... from the project's checkout: cloned by an earlier setup command, or synced by a file mount
    checkout = re.search(r"\bcd\s+(\S+)\s*&&", command)
    assert checkout, f"the install does not cd into the checkout: {command}"
    where = checkout[1]
    assert (any("git clone" in c and where in c for c in commands[:index])
            or where in cfg.get("file_mounts", {})), f"nothing puts the checkout at {where}"
    # ... keeping the image's Ray: the pin, the image and the Ray version this project was checked against agree
    pin = re.search(r"\bray\[[^\]]*\]==(\d+\.\d+\.\d+)", command)
    image = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py311-gpu", cfg["docker"]["image"])
    assert pin and image, (command, cfg["docker"]["image"])
    assert pin[1] == image[1] == KNOWN_GOOD_RAY


# --------------------------------------------------------------------------------------- cluster/kuberay/rayjob.yaml

# RayJob and RayCluster fields as of KubeRay 1.5.1 (the first with token authentication), hand-written from its
# ray.io/v1 API reference: a misspelt field, which the API server would drop (or refuse), fails here.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata", "clusterSelector",
    "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode",
    "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}
RAYCLUSTER_SPEC_FIELDS = {
    "authOptions", "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
    "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs",
}
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "resources", "labels", "rayStartParams", "serviceType"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "resources", "labels",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}
AUTOSCALER_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds", "upscalingMode", "version", "env",
    "envFrom", "volumeMounts",
}
# Kubernetes quantities: numbers or strings to the API server, typed str in the Python models.
QUANTITY_FIELDS = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests"),
                   ("V1EmptyDirVolumeSource", "sizeLimit")}


def k8s_models():
    import kubernetes.client  # the `dev` extra; its models are Kubernetes' OpenAPI schema, generated

    return kubernetes.client


_LIST = re.compile(r"^(?:List\[|list\[)(?P<item>.*)\]$")
_DICT = re.compile(r"^(?:Dict\[str, *|dict\(str, *)(?P<value>.*)[\])]$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "object": (object,),
    "datetime": (str,), "date": (str,), "bytes": (str,),
}


def _required_keys(cls: type) -> list[str]:
    """JSON keys a model requires (pydantic-generated clients say; older generated clients do not: none then)."""
    fields = getattr(cls, "model_fields", None) or {}
    return [cls.attribute_map.get(f.alias or name, f.alias or name) for name, f in fields.items() if f.is_required()]


def k8s_errors(value: Any, type_name: str, path: str, *, quantity: bool = False) -> list[str]:
    """``value`` (parsed YAML) against a type of the ``kubernetes`` client (``V1PodTemplateSpec``, ``List[V1EnvVar]``,
    ``str``, ...): unknown keys, wrong basic types and missing required fields, recursively."""
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list ({type_name}), got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in k8s_errors(item, m["item"], f"{path}[{i}]")]
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping ({type_name}), got {type(value).__name__}"]
        errors = [f"{path}: key {k!r} is not a string" for k in value if not isinstance(k, str)]
        return errors + [e for k, v in value.items() for e in k8s_errors(v, m["value"], f"{path}.{k}",
                                                                           quantity=quantity)]
    if type_name in _PRIMITIVES:
        if quantity:
            ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        elif type_name in ("bool", "object"):
            ok = isinstance(value, _PRIMITIVES[type_name])
        else:  # YAML's true/false are no numbers or strings here
            ok = isinstance(value, _PRIMITIVES[type_name]) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    cls = getattr(k8s_models(), type_name, None)
    if cls is None or not hasattr(cls, "attribute_map"):
        return [f"{path}: no Kubernetes model {type_name} in the installed client"]
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {type(value).__name__} {value!r}"]
    fields = {json_key: cls.openapi_types[attr] for attr, json_key in cls.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{path}.{key}: not a field of {type_name}")
        else:
            errors += k8s_errors(item, fields[key], f"{path}.{key}", quantity=(type_name, key) in QUANTITY_FIELDS)
    errors += [f"{path}: {type_name} requires {key!r}" for key in _required_keys(cls) if key not in value]
    return errors


def pod_templates(job: dict[str, Any]) -> dict[str, Any]:
    """Every pod template in the RayJob, by where it is."""
    cluster = job["spec"]["rayClusterSpec"]
    templates = {"spec.rayClusterSpec.headGroupSpec.template": cluster["headGroupSpec"]["template"]}
    for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
        templates[f"spec.rayClusterSpec.workerGroupSpecs[{i}].template"] = group["template"]
    if "submitterPodTemplate" in job["spec"]:
        templates["spec.submitterPodTemplate"] = job["spec"]["submitterPodTemplate"]
    return templates


def pod_schema_errors(job: dict[str, Any]) -> list[str]:
    errors = [e for path, t in pod_templates(job).items() for e in k8s_errors(t, "V1PodTemplateSpec", path)]
    autoscaler = job["spec"]["rayClusterSpec"].get("autoscalerOptions", {})
    for key, type_name in (("env", "List[V1EnvVar]"), ("envFrom", "List[V1EnvFromSource]"),
                           ("volumeMounts", "List[V1VolumeMount]"), ("resources", "V1ResourceRequirements"),
                           ("securityContext", "V1SecurityContext")):
        if key in autoscaler:
            errors += k8s_errors(autoscaler[key], type_name, f"spec.rayClusterSpec.autoscalerOptions.{key}")
    return errors


def ray_container(template: dict[str, Any]) -> dict[str, Any]:
    return template["spec"]["containers"][0]  # KubeRay's convention: the first container runs Ray


def env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def rayjob_field_errors(job: dict[str, Any]) -> list[str]:
    """The RayJob's own fields the sweep relies on (KubeRay's CRD is not vendored: checked by hand)."""
    errors = []
    if job.get("apiVersion") != "ray.io/v1" or job.get("kind") != "RayJob":
        errors.append(f"not a ray.io/v1 RayJob: {job.get('apiVersion')}/{job.get('kind')}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", str(job.get("metadata", {}).get("name", ""))):
        errors.append("metadata.name must be a short DNS label (it names the submitter Job and the cluster)")
    spec = job.get("spec", {})
    errors += [f"spec.{k}: not a RayJob field" for k in sorted(set(spec) - RAYJOB_SPEC_FIELDS)]
    if spec.get("shutdownAfterJobFinishes") is not True:
        errors.append("spec.shutdownAfterJobFinishes must be true (GPU pods are released when the sweep ends)")
    if not isinstance(spec.get("ttlSecondsAfterFinished", 0), int) or spec.get("ttlSecondsAfterFinished", 0) < 0:
        errors.append("spec.ttlSecondsAfterFinished must be a whole number of seconds")
    if not isinstance(spec.get("entrypoint"), str):
        errors.append("spec.entrypoint must be a string")
    if "runtimeEnvYAML" in spec and not isinstance(yaml.safe_load(spec["runtimeEnvYAML"]), dict):
        errors.append("spec.runtimeEnvYAML must be a YAML mapping in a string")
    cluster = spec.get("rayClusterSpec", {})
    errors += [f"spec.rayClusterSpec.{k}: not a RayCluster field" for k in sorted(set(cluster) - RAYCLUSTER_SPEC_FIELDS)]
    errors += [f"spec.rayClusterSpec.autoscalerOptions.{k}: not an autoscaler option"
               for k in sorted(set(cluster.get("autoscalerOptions", {})) - AUTOSCALER_FIELDS)]
    if cluster.get("rayVersion") != KNOWN_GOOD_RAY:
        errors.append(f"rayVersion {cluster.get('rayVersion')!r} is not the Ray this project runs ({KNOWN_GOOD_RAY})")
    if cluster.get("authOptions", {}).get("mode") != "token":
        errors.append("spec.rayClusterSpec.authOptions.mode must be token (Ray token authentication stays on)")
    head = cluster.get("headGroupSpec", {})
    errors += [f"headGroupSpec.{k}: not a head group field" for k in sorted(set(head) - HEAD_GROUP_FIELDS)]
    groups = cluster.get("workerGroupSpecs", [])
    for where, params in [("headGroupSpec", head.get("rayStartParams", {}))] + [
            (f"workerGroupSpecs[{i}]", g.get("rayStartParams", {})) for i, g in enumerate(groups)]:
        errors += [f"{where}.rayStartParams.{k}: values must be strings, got {v!r}"
                   for k, v in params.items() if not isinstance(v, str)]
    if head.get("rayStartParams", {}).get("num-cpus") != "0":
        errors.append('headGroupSpec.rayStartParams.num-cpus must be "0": no trials on the head')
    gpu_groups = 0
    for i, group in enumerate(groups):
        errors += [f"workerGroupSpecs[{i}].{k}: not a worker group field" for k in sorted(set(group) - WORKER_GROUP_FIELDS)]
        sizes = [group.get(k) for k in ("minReplicas", "replicas", "maxReplicas")]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes) or not sizes[0] <= sizes[1] <= sizes[2]:
            errors.append(f"workerGroupSpecs[{i}]: needs whole minReplicas <= replicas <= maxReplicas, got {sizes}")
        limits = ray_container(group["template"]).get("resources", {}).get("limits", {})
        with contextlib.suppress(TypeError, ValueError):
            gpu_groups += float(limits.get("nvidia.com/gpu", 0)) >= 1
    if not gpu_groups:
        errors.append("no worker group asks for a GPU (resources.limits nvidia.com/gpu)")
    images = {path: ray_container(t).get("image") for path, t in pod_templates(job).items()}
    if len(set(images.values())) != 1:
        errors.append(f"head, workers and submitter must run the same image: {images}")
    return errors


# What the secret's URLs look like, for the shell's $VARIABLES in the entry point.
SERVICE_URLS = {"MLFLOW_TRACKING_URI": "http://mlflow.invalid:5000",
                "OPTUNA_STORAGE": "postgresql://optuna@postgres.invalid:5432/optuna"}


def entrypoint_errors(job: dict[str, Any]) -> list[str]:
    """The entry point runs sweeps/decathlon.py with flags the project's own parser accepts and values it resolves,
    its $VARIABLES set where the shell expands them, its paths on the volume every pod shares."""
    from sweeps import cli
    from sweeps import config as C

    entrypoint = job["spec"]["entrypoint"]
    argv = shlex.split(entrypoint)
    if argv[:2] != ["python", "sweeps/decathlon.py"]:
        return [f"the entry point must run `python sweeps/decathlon.py ...`, got {argv[:2]}"]
    errors = []
    # K8sJobMode expands $VARIABLES in the submitter's shell; HTTPMode in the head's: both must have them.
    templates = pod_templates(job)
    head = ray_container(templates["spec.rayClusterSpec.headGroupSpec.template"])
    submitter = templates.get("spec.submitterPodTemplate")
    for var in sorted(set(re.findall(r"\$\{?(\w+)\}?", entrypoint))):
        for name, container in (("head", head), ("submitter", submitter and ray_container(submitter))):
            if container is None or var not in env_names(container):
                errors.append(f"${var} in the entry point is not set on the {name}")
    values = [string.Template(a).safe_substitute(SERVICE_URLS) for a in argv[2:]]
    parser = cli.build_parser()

    def refuse(message):
        raise ValueError(message)

    parser.error = refuse  # argparse would print and exit
    try:
        args = parser.parse_args(values)
    except ValueError as exc:
        return errors + [f"sweeps.cli refuses the entry point's flags: {exc}"]
    with mock.patch.object(C, "check_data_root", lambda root: Path(root)):  # the data lives on the cluster
        try:
            cfg, _ = cli.config_from_args(values)
        except C.ConfigError as exc:
            return errors + [f"the entry point's configuration is invalid: {exc}"]
    if (cfg.tracking_uri, cfg.optuna_storage) != (SERVICE_URLS["MLFLOW_TRACKING_URI"], SERVICE_URLS["OPTUNA_STORAGE"]):
        errors.append("the entry point must take --tracking-uri $MLFLOW_TRACKING_URI "
                      "--optuna-storage $OPTUNA_STORAGE (the services, from the secret)")
    if args.preset != "decathlon":
        errors.append(f"the entry point runs preset {args.preset!r}, not decathlon")
    groups = job["spec"]["rayClusterSpec"].get("workerGroupSpecs", [])
    if cfg.check_resources and all(g.get("minReplicas", 0) == 0 for g in groups):
        errors.append("workers start on demand (minReplicas 0): the entry point needs --no-check-resources")
    # the paths every trial reads and writes must be on the volume all the pods share
    shared = shared_mount_paths(job)
    for flag, path in (("--storage-path", cfg.storage_path), ("--data-root", cfg.data_root),
                       ("--cache-dir", cfg.cache_dir)):
        if path is None or not any(Path(path).is_relative_to(m) for m in shared):
            errors.append(f"{flag} {path} is not on the shared volume (mounted at {sorted(shared) or 'nowhere'})")
    return errors


def shared_mount_paths(job: dict[str, Any]) -> set[str]:
    """Paths where the same PersistentVolumeClaim is mounted in the head's and every worker's Ray container."""
    per_pod = []
    for path, template in pod_templates(job).items():
        if path == "spec.submitterPodTemplate":
            continue
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in template["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
        per_pod.append({(m["mountPath"], claims[m["name"]])
                        for m in ray_container(template).get("volumeMounts", []) if m["name"] in claims})
    common = set.intersection(*per_pod) if per_pod else set()
    return {mount for mount, _ in common}


def shared_volume_errors(job: dict[str, Any]) -> list[str]:
    errors = []
    for path, template in pod_templates(job).items():
        volumes = {v["name"] for v in template["spec"].get("volumes", [])}
        for container in template["spec"]["containers"]:
            errors += [f"{path}: container {container['name']} mounts {m['name']!r}, which no volume provides"
                       for m in container.get("volumeMounts", []) if m["name"] not in volumes]
    if not shared_mount_paths(job):
        errors.append("no PersistentVolumeClaim is mounted at the same path on the head and every worker")
    return errors


SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|API_?KEY", re.I)
URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:(?P<password>[^\s/@'\"]+)@")


def secret_env_errors(job: dict[str, Any]) -> list[str]:
    """Secrets reach the pods only through secretKeyRef; no env value carries credentials."""
    containers = {f"{path}.{c['name']}": c for path, t in pod_templates(job).items() for c in t["spec"]["containers"]}
    containers["autoscalerOptions"] = job["spec"]["rayClusterSpec"].get("autoscalerOptions", {})
    errors = []
    for where, container in containers.items():
        for env in container.get("env", []):
            if SECRET_NAME.search(env["name"]) and ("value" in env or "secretKeyRef" not in env.get("valueFrom", {})):
                errors.append(f"{where}: {env['name']} must come from a secretKeyRef, not a literal value")
            if URL_CREDENTIALS.search(str(env.get("value", ""))):
                errors.append(f"{where}: {env['name']} holds a URL with a password")
    return errors


RAYJOB_CHECKS = {
    "pod schema": pod_schema_errors,
    "RayJob fields": rayjob_field_errors,
    "entry point": entrypoint_errors,
    "shared volume": shared_volume_errors,
    "secret env": secret_env_errors,
}


@pytest.mark.parametrize("check", sorted(RAYJOB_CHECKS))
def test_rayjob_passes(check):
    assert RAYJOB_CHECKS[check](load_rayjob()) == []


def _head(job):
    return ray_container(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])


def _worker(job):
    return ray_container(job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"])


def _replace_in_entrypoint(old, new):
    def mutate(job):
        assert old in job["spec"]["entrypoint"]
        job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace(old, new)
    return mutate


# (which check must catch it, how to break a copy of the manifest)
RAYJOB_BREAKS = {
    "unknown container key": ("pod schema", lambda j: _head(j).__setitem__("imagePullPolicyy", "Always")),
    "port as a string": ("pod schema", lambda j: _head(j)["ports"][0].__setitem__("containerPort", "6379")),
    "env as a mapping": ("pod schema", lambda j: _worker(j).__setitem__("env", {"BAP_CACHE_DIR": "/shared/cache"})),
    "unknown pod-spec key": ("pod schema", lambda j: j["spec"]["submitterPodTemplate"]["spec"].__setitem__(
        "restartPolicyy", "Never")),
    "container without a name": ("pod schema", lambda j: _worker(j).pop("name")),
    "volume mount path as a list": ("pod schema", lambda j: _worker(j)["volumeMounts"][0].__setitem__(
        "mountPath", ["/shared"])),
    "wrong kind": ("RayJob fields", lambda j: j.__setitem__("kind", "RayCluster")),
    "cluster kept after the job": ("RayJob fields", lambda j: j["spec"].__setitem__("shutdownAfterJobFinishes", False)),
    "misspelt RayJob field": ("RayJob fields", lambda j: j["spec"].__setitem__(
        "shutdownAfterJobFinish", j["spec"].pop("shutdownAfterJobFinishes"))),
    "head takes trials": ("RayJob fields", lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"][
        "rayStartParams"].__setitem__("num-cpus", "4")),
    "rayStartParams value not a string": ("RayJob fields", lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"][
        "rayStartParams"].__setitem__("num-cpus", 0)),
    "token auth off": ("RayJob fields", lambda j: j["spec"]["rayClusterSpec"].pop("authOptions")),
    "no GPU worker": ("RayJob fields", lambda j: [_worker(j)["resources"][k].pop("nvidia.com/gpu")
                                                 for k in ("limits", "requests")]),
    "renamed flag": ("entry point", _replace_in_entrypoint("--tracking-uri", "--tracking-url")),
    "bad flag value": ("entry point", _replace_in_entrypoint("--preset decathlon", "--preset decathlon --budgets 2")),
    "other entry script": ("entry point", _replace_in_entrypoint("sweeps/decathlon.py", "sweeps/other.py")),
    "unset variable": ("entry point", _replace_in_entrypoint("$OPTUNA_STORAGE", "$OPTUNA_URL")),
    "results off the shared volume": ("entry point", _replace_in_entrypoint("/shared/ray_results", "/tmp/results")),
    "worker without the claim": ("shared volume", lambda j: _worker(j).__setitem__(
        "volumeMounts", [m for m in _worker(j)["volumeMounts"] if m["name"] != "shared"])),
    "literal password": ("secret env", lambda j: _head(j)["env"].append({"name": "PGPASSWORD", "value": "hunter2"})),
    "password in a URL": ("secret env", lambda j: _head(j)["env"].append(
        {"name": "DB_URL", "value": "postgresql://optuna:hunter2@db/optuna"})),
}


@pytest.mark.parametrize("name", sorted(RAYJOB_BREAKS))
def test_broken_rayjob_fails(name):
    check, mutate = RAYJOB_BREAKS[name]
    job = copy.deepcopy(load_rayjob())  # the env list is a YAML alias shared by head and workers: break a copy
    mutate(job)
    assert RAYJOB_CHECKS[check](job), f"{name}: the {check} check accepted a broken manifest"


# ------------------------------------------------------------------------------------------- no secrets in cluster/

_KEY = r"(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|token|secret|api[_-]?key)[A-Za-z0-9_.-]*)"
_VALUE = r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;#)}\]]+)"
KEY_VALUE = re.compile(_KEY + r"[\"']?\s*(?P<op>:|=)\s*" + _VALUE + r"(?P<rest>.*)$", re.I)


def _is_reference(value: str) -> bool:
    """Not a literal secret: an environment/command reference, an env variable's name, a path, a placeholder."""
    bare = value.strip("\"'")
    return (bare.startswith(("$", "/", "~", "./", "<", "{")) or bare.lower() in ("", "null", "none", "~")
            or re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", bare) is not None)


def literal_secrets(text: str, python: bool = False) -> list[str]:
    """Lines assigning a literal to a password/token/secret-like key (``password: x``, ``TOKEN=x``,
    ``"password": "x"``), and URLs with a password. In Python only quoted literals count (``password: str`` is a
    type, ``token=token`` a variable)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in KEY_VALUE.finditer(line):
            value, rest = m["value"], m["rest"].strip()
            quoted = value[:1] in "\"'"
            if m["op"] == ":" and not quoted and rest and rest[0] not in "#,}]":
                continue  # prose ("Secrets: none in this file") or an expression, not a key: value
            if python and not quoted:
                continue
            if not _is_reference(value):
                found.append(f"line {number}: {m['key']}{m['op']} {value}")
        for m in URL_CREDENTIALS.finditer(line):
            if not _is_reference(m["password"]):
                found.append(f"line {number}: a URL with a password")
    return found


def test_no_literal_secrets_under_cluster():
    files = [p for p in sorted(CLUSTER.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    assert AWS_YAML in files and RAYJOB_YAML in files
    found = {}
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if hits := literal_secrets(text, python=path.suffix == ".py"):
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}


@pytest.mark.parametrize("line", [
    "password: hunter2",
    "  db_password: 's3cret'",
    "    - {name: X, token: abc123}",
    "RAY_AUTH_TOKEN=abc123 ray job submit",
    "export PGPASSWORD='hunter2'",
    "storage: postgresql://optuna:hunter2@db:5432/optuna",
    '"api_key": "AKIA0000"',
])
def test_the_secret_scan_finds_literals(line):
    assert literal_secrets(line)


@pytest.mark.parametrize("line", [
    "password: $PGPASSWORD",
    "token: ${RAY_AUTH_TOKEN}",
    "RAY_AUTH_TOKEN=$(kubectl get secret x -o jsonpath='{.data.auth_token}' | base64 -d)",
    '--from-literal=pgpassword="$PGPASSWORD"',
    "storage: postgresql://optuna@db:5432/optuna",
    '"~/.ray/auth_token": "~/.ray/auth_token"',
    "# Secrets: none in this file. Ray's token comes from a file",
    "valueFrom: {secretKeyRef: {name: bap-sweeps-services, key: pgpassword}}",
    "RAY_AUTH_MODE=token ray start --head",
])
def test_the_secret_scan_lets_references_pass(line):
    assert literal_secrets(line) == []


def test_the_secret_scan_reads_python_literals_only():
    assert literal_secrets('password = "hunter2"', python=True)
    assert literal_secrets('connect(password="hunter2")', python=True)
    assert literal_secrets("password: str", python=True) == []
    assert literal_secrets("connect(token=token)", python=True) == []
    assert literal_secrets('PASSWORD_ENV = "BAP_POSTGRES_PASSWORD"', python=True) == []
