"""The deployment files: the Dockerfile, the Kubernetes manifests and the Vault setup script.

No Docker and no cluster here: the files are parsed and checked for what the deployment relies on,
then the image's entrypoint command line and the Vault setup script are run for real, against the
OpenBao dev server and the stand-in bruin.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from ruamel.yaml import YAML

from bruin_materialize import __version__
from bruin_materialize.errors import ExitCode
from bruin_materialize.settings import OPTIONS
from testsupport import skips
from testsupport.package import source_copy

if TYPE_CHECKING:
    from testsupport.harness import KV, BaoServer, FakeBruin

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MANIFESTS = REPO / "deploy" / "kubernetes" / "base"
OVERLAY = REPO / "deploy" / "kubernetes" / "overlays" / "example"
VAULT_SETUP = REPO / "deploy" / "kubernetes" / "vault-setup.sh"
# Every variable the tool reads: each setting's own and its fallbacks (settings.OPTIONS), the Vault
# CLI's tokens (last in the order of credentials), and the standard places (cache, runtime, home).
TOOL_VARIABLES = {name for option in OPTIONS for name in (option.variable, *option.fallbacks) if name} | {
    "VAULT_TOKEN", "BAO_TOKEN", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "HOME", "PATH"}

VENV = "/opt/bruin-materialize/venv"
COMMAND = "bruin-materialize"  # the console script pyproject.toml declares, in the venv's bin/
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where bruin reads its Kubernetes token
PASSWORD = "deploy-Secret-Passw0rd"

# Any PEM certificate will do: Vault only parses the cluster CA when the auth method is configured.
CLUSTER_CA = """\
-----BEGIN CERTIFICATE-----
MIIBkjCCATegAwIBAgIUdn8r0itlB8bscVDclN3dWHCtTAQwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZXhhbXBsZS1jbHVzdGVyLWNhMCAXDTI2MTEyODE5MDc1MFoY
DzIxMjYxMTA0MTkwNzUwWjAdMRswGQYDVQQDDBJleGFtcGxlLWNsdXN0ZXItY2Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS/kpIZclpZpUvT5XbWqXp9SKm07O2b
Ft/i30eYR+Zg/cCc3pA1LcmW+BvMOPtUVBo+0iJl3qP3Ms/HIuKYukpno1MwUTAd
BgNVHQ4EFgQU6ij8hc6qsnyEZMVbr6i32kADmvcwHwYDVR0jBBgwFoAU6ij8hc6q
snyEZMVbr6i32kADmvcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG
AiEAqJoDDoWCzuoLlfzWUcZ98Du3X9qptffKfmcjNQTjNlMCIQDXjJudve2/q60g
KtEN4hISpEN0TzoKEGnCo4qxIKXkJQ==
-----END CERTIFICATE-----
"""


# --- reading the Dockerfile ----------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comment lines dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines even inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (global ARGs before the first FROM are left out)."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def instruction_args(name: str, stage: int = -1) -> list[str]:
    """A stage's instructions named `name`: by default the last stage's, the image that runs."""
    return [args for keyword, args in stages()[stage] if keyword == name]


def exec_form(name: str) -> list[str]:
    """The last ENTRYPOINT or CMD, which must be in exec (JSON array) form."""
    value = json.loads(instruction_args(name)[-1])
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction_args("ENV"):
        for pair in shlex.split(args):
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {args!r}: use the NAME=VALUE form"
            env[name] = value
    return env


def dockerfile_arg_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "ARG":
            name, _, value = args.partition("=")
            defaults[name] = value or defaults.get(name, "")
    return defaults


def substitute_args(value: str, args: Mapping[str, str]) -> str:
    for name, default in args.items():
        value = value.replace(f"${{{name}}}", default).replace(f"${name}", default)
    return value


# --- reading the manifests -----------------------------------------------------------------------


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    """The base's objects (its kustomization.yaml lists them)."""
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in YAML(typ="safe", pure=True).load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path.name, doc


def manifest(kind: str) -> dict[str, Any]:
    [doc] = [doc for _, doc in manifests() if doc["kind"] == kind]
    return doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    return template["spec"] if template else None


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in containers(spec) if c["name"] == name]
    return found


def volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any]
    [found] = [v for v in spec["volumes"] if v["name"] == name]
    return found


def mount_holding(spec: dict[str, Any], ctr: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's volume mount under which `path` lies, and its volume (deepest mount wins)."""
    candidates = [m for m in ctr.get("volumeMounts", [])
                  if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert candidates, f"{ctr['name']}: nothing is mounted at {path}"
    mount = max(candidates, key=lambda m: len(m["mountPath"]))
    return mount, volume(spec, mount["name"])


def is_memory_volume(vol: dict[str, Any]) -> bool:
    return bool(vol.get("emptyDir", {}).get("medium") == "Memory")


def env_of(ctr: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in ctr.get("env", [])}


def flag_value(argv: Sequence[str], flag: str) -> str:
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    values += [arg.partition("=")[2] for arg in argv if arg.startswith(flag + "=")]
    assert len(values) == 1, f"{flag} given {len(values)} times in {argv}"
    return values[0]


# --- the Dockerfile ------------------------------------------------------------------------------


def test_entrypoint_is_the_installed_command_under_tini() -> None:
    assert exec_form("ENTRYPOINT") == ["tini", "--", COMMAND]
    assert exec_form("CMD") == ["exec", "."]
    assert dockerfile_env()["PATH"].split(":")[:2] == [f"{VENV}/bin", "$PATH"]
    assert any("tini" in run.split() for run in instruction_args("RUN")), "tini is not installed"
    assert f'{COMMAND} = "bruin_materialize.cli:entrypoint"' in (REPO / "pyproject.toml").read_text()


def test_pycurl_is_installed_from_its_wheel() -> None:
    """The wheel bundles libcurl and OpenSSL: no compiler in the build stage, no libcurl at run time.
    A platform without a wheel must fail the build, not try to compile against a missing libcurl."""
    build, _ = stages()
    [venv_run] = [args for keyword, args in build if keyword == "RUN" and "-m venv" in args]
    assert "--only-binary pycurl" in venv_run
    pins = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert len([line for line in pins if line.startswith("pycurl==")]) == 1


def test_the_package_is_installed_in_a_build_stage_and_only_the_venv_kept() -> None:
    build, runtime = stages()
    build_runs = [args for keyword, args in build if keyword == "RUN"]
    [venv_run] = [run for run in build_runs if "-m venv" in run]
    assert f"python3 -m venv {VENV}" in venv_run and "-r requirements.txt" in venv_run
    [install] = [run for run in build_runs if "--no-deps ." in run]
    assert f"{VENV}/bin/pip install --no-cache-dir" in install
    assert f"{VENV}/bin/pip uninstall --yes --disable-pip-version-check pip setuptools" in install
    # Run time: the venv from the build stage, python3 and tini; no python3-venv, pip or sources.
    assert [args for keyword, args in runtime if keyword == "COPY"] == [f"--from=build {VENV} {VENV}"]
    runtime_runs = " ".join(args for keyword, args in runtime if keyword == "RUN")
    assert "python3-venv" not in runtime_runs and "pip" not in runtime_runs


def test_base_is_bruins_image_at_a_published_tag() -> None:
    assert [f for f in instruction_args("FROM", 0)] == ["ghcr.io/bruin-data/bruin:${BRUIN_VERSION} AS build"]
    assert instruction_args("FROM") == ["ghcr.io/bruin-data/bruin:${BRUIN_VERSION}"]
    # A release tag as bruin publishes them, never a moving one.
    assert re.fullmatch(r"v\d+\.\d+\.\d+", dockerfile_arg_defaults()["BRUIN_VERSION"])
    assert "https://github.com/bruin-data/bruin/releases" in DOCKERFILE.read_text()  # how to find the current one


def test_the_images_bruin_is_the_one_the_schema_snapshot_comes_from() -> None:
    import hashlib

    from bruin_materialize.schema import SNAPSHOT, SNAPSHOT_FROM

    version = dockerfile_arg_defaults()["BRUIN_VERSION"]
    assert version == "v0.11.731"
    provenance = SNAPSHOT.with_suffix(".md").read_text(encoding="utf-8")
    assert f"bruin **{version}** (commit a74787b)" in provenance and "not recorded" not in provenance
    assert SNAPSHOT_FROM.startswith(f"bruin {version},")
    assert f"sha256: `{hashlib.sha256(SNAPSHOT.read_bytes()).hexdigest()}`" in provenance
    shared = REPO.parent / "shared" / "bruin" / "connections-schema.json"  # what that bruin printed, if beside us
    if shared.is_file():
        assert SNAPSHOT.read_bytes() == shared.read_bytes()


def test_runs_as_a_non_root_numeric_user() -> None:
    user = substitute_args(instruction_args("USER")[-1], dockerfile_arg_defaults())
    uid, _, gid = user.partition(":")
    # Numeric: Kubernetes' runAsNonRoot can only check a numeric user.
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user


def test_copies_the_program_only() -> None:
    sources = {source for args in instruction_args("COPY", 0) for source in shlex.split(args)[:-1]}
    assert sources == {"requirements.txt", "pyproject.toml", "README.md", "LICENSE", "bruin_materialize/",
                       "templates/"}
    # The build context holds the same, and no tests, .venv, .git or demo secrets.
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {p[1:].rstrip("/") for p in patterns if p.startswith("!")} == {s.rstrip("/") for s in sources}


def test_environment_names_the_bruin_binary_and_a_tmpfs_runtime_dir() -> None:
    env = dockerfile_env()
    assert env["BRUIN_BIN"] == "/home/bruin/.local/bin/bruin"
    assert env["BRUIN_MATERIALIZE_RUNTIME_DIR"] == "/dev/shm"
    assert {"BRUIN_BIN", "BRUIN_MATERIALIZE_RUNTIME_DIR"} <= TOOL_VARIABLES


# --- the manifests -------------------------------------------------------------------------------


def test_manifests_parse_and_name_their_kinds() -> None:
    kinds = sorted(doc["kind"] for _, doc in manifests())
    assert kinds == ["CronJob", "Job", "ServiceAccount"]
    assert all(doc.get("apiVersion") and doc.get("metadata", {}).get("name") for _, doc in manifests())


def test_the_base_lists_every_manifest() -> None:
    kustomization = YAML(typ="safe", pure=True).load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted({name for name, _ in manifests()})


@pytest.fixture(scope="session")
def overlay() -> list[dict[str, Any]]:
    """The example overlay as `kubectl kustomize` renders it (offline): what a team applies."""
    skips.require(skips.kubectl())
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    proc = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True,
                          timeout=120)
    return [doc for doc in YAML(typ="safe", pure=True).load_all(proc.stdout) if doc is not None]


def test_overlay_renders_a_strictly_valid_deployment(overlay: list[dict[str, Any]]) -> None:
    if os.environ.get("CI"):  # scripts/lint installed it (requirements-lint.txt) before the tests run
        import kubernetes_validate
    else:
        kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="in requirements-lint.txt")

    assert sorted(doc["kind"] for doc in overlay) == ["CronJob", "Job", "NetworkPolicy", "ServiceAccount"]
    for doc in overlay:
        kubernetes_validate.validate(doc, "1.34.0", strict=True)  # raises on an unknown or mistyped field
    with pytest.raises(kubernetes_validate.ValidationError):  # and it does judge
        kubernetes_validate.validate({**overlay[0], "bogus": 1}, "1.34.0", strict=True)


def test_overlay_sets_namespace_images_and_vault_address(overlay: list[dict[str, Any]]) -> None:
    assert {doc["metadata"].get("namespace") for doc in overlay} == {"data"}  # explicit, never `default`
    specs = [pod_spec(doc) for doc in overlay if doc["kind"] in ("Job", "CronJob")]
    images = {ctr["image"] for spec in specs if spec for ctr in containers(spec)}
    assert images and all(image.startswith("registry.example.com/") for image in images)
    base_images = {ctr["image"] for _, spec in pod_specs() for ctr in containers(spec)}
    assert not images & base_images  # every one replaced by the overlay
    hosts = {env_of(ctr)["BRUIN_VAULT_HOST"] for spec in specs if spec for ctr in containers(spec)
             if "BRUIN_VAULT_HOST" in env_of(ctr)}
    assert hosts == {"https://vault.vault.svc.cluster.local:8200"}
    # the rest of each container's environment survives the patch
    assert all("BRUIN_VAULT_ROLE" in env_of(ctr) for spec in specs if spec for ctr in containers(spec)
               if "BRUIN_VAULT_HOST" in env_of(ctr))


def test_every_container_has_cpu_and_memory_limits() -> None:
    for where, spec in pod_specs():
        for ctr in containers(spec):
            assert {"cpu", "memory"} <= set(ctr["resources"]["limits"]), (where, ctr["name"])
            assert {"cpu", "memory"} <= set(ctr["resources"]["requests"]), (where, ctr["name"])


def test_network_policy_allows_only_dns_vault_and_the_warehouses(overlay: list[dict[str, Any]]) -> None:
    [policy] = [doc for doc in overlay if doc["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    pods = [doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
            for doc in overlay if doc["kind"] in ("Job", "CronJob")]
    selector = spec["podSelector"]["matchLabels"]
    assert all(selector.items() <= pod["metadata"]["labels"].items() for pod in pods)  # it covers every run
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    ports = sorted((p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 5432), ("TCP", 8200), ("UDP", 53)]
    assert all(rule["to"] for rule in spec["egress"])  # no rule open to everywhere
    vault_port = {p["port"] for rule in spec["egress"] for p in rule["ports"]
                  if any("namespaceSelector" in peer and "podSelector" not in peer for peer in rule["to"])}
    assert vault_port == {8200}


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(f"{name}:{doc['kind']}", pod_spec(doc)) for name, doc in manifests()]
    return [(where, spec) for where, spec in specs if spec is not None]


@pytest.mark.parametrize(("where", "spec"), pod_specs(), ids=[where for where, _ in pod_specs()])
def test_every_container_is_locked_down(where: str, spec: dict[str, Any]) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
    assert containers(spec), where
    for ctr in containers(spec):
        sc = ctr["securityContext"]
        assert sc["runAsNonRoot"] is True, ctr["name"]
        assert sc["readOnlyRootFilesystem"] is True, ctr["name"]
        assert sc["allowPrivilegeEscalation"] is False, ctr["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, ctr["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, ctr["name"]
        assert "privileged" not in sc and "runAsUser" not in sc, ctr["name"]  # the pod's user for all


@pytest.mark.parametrize(("where", "spec"), pod_specs(), ids=[where for where, _ in pod_specs()])
def test_vault_login_uses_the_service_account_with_a_vault_only_token(where: str, spec: dict[str, Any]) -> None:
    account = manifest("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"], where
    assert spec["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    logging_in = [ctr for ctr in containers(spec) if "BRUIN_VAULT_ROLE" in env_of(ctr)]
    assert logging_in, where
    for ctr in containers(spec):
        mounts = {m["mountPath"]: m for m in ctr.get("volumeMounts", [])}
        if ctr not in logging_in:
            assert TOKEN_DIR not in mounts, f"{ctr['name']} does not log in: it needs no token"
            continue
        mount = mounts[TOKEN_DIR]
        assert mount["readOnly"] is True
        [source] = volume(spec, mount["name"])["projected"]["sources"]
        assert source["serviceAccountToken"]["path"] == "token"
        assert source["serviceAccountToken"]["audience"] == "vault"


def test_env_names_in_manifests_are_read_by_the_tool() -> None:
    for _, spec in pod_specs():
        for ctr in containers(spec):
            for name in env_of(ctr):
                assert name in TOOL_VARIABLES, f"{ctr['name']}: {name} is not a setting of the tool"


def test_cronjob_runs_the_image_entrypoint_on_a_memory_runtime_dir() -> None:
    spec = pod_spec(manifest("CronJob"))
    assert spec is not None
    [ctr] = spec["containers"]
    assert "command" not in ctr, "the image's entrypoint must run"
    assert ctr["args"][:2] == ["exec", "--"], "bruin's arguments must not be taken for the tool's options"
    env = env_of(ctr)
    assert {"BRUIN_VAULT_HOST", "BRUIN_VAULT_MOUNT_PATH", "BRUIN_VAULT_PATH", "BRUIN_VAULT_ROLE"} <= set(env)
    runtime = env.get("BRUIN_MATERIALIZE_RUNTIME_DIR", dockerfile_env()["BRUIN_MATERIALIZE_RUNTIME_DIR"])
    mount, vol = mount_holding(spec, ctr, runtime)
    assert is_memory_volume(vol) and not mount.get("readOnly")
    cache_mount, cache_volume = mount_holding(spec, ctr, env["XDG_CACHE_HOME"])
    assert "emptyDir" in cache_volume and not cache_mount.get("readOnly")


def test_init_container_renders_where_the_unmodified_bruin_reads() -> None:
    spec = pod_spec(manifest("Job"))
    assert spec is not None
    [init] = spec["initContainers"]
    [bruin] = spec["containers"]
    render_argv = init["args"]
    bruin_argv = [*bruin["command"], *bruin.get("args", [])]
    assert render_argv[0] == "render"
    assert bruin_argv[:2] == ["bruin", "run"]
    output = flag_value(render_argv, "--output")
    assert flag_value(bruin_argv, "--config-file") == output
    assert flag_value(render_argv, "--environment") == flag_value(bruin_argv, "--environment")
    init_mount, init_volume = mount_holding(spec, init, output)
    bruin_mount, bruin_volume = mount_holding(spec, bruin, output)
    assert init_volume is bruin_volume and is_memory_volume(init_volume)
    # bruin writes a .gitignore beside the file: its mount must be writable too.
    assert not init_mount.get("readOnly") and not bruin_mount.get("readOnly")
    assert init_mount["mountPath"] == bruin_mount["mountPath"]
    # The 0600 file is readable by bruin because both run as the pod's one user.
    assert spec["securityContext"]["runAsUser"] and spec["securityContext"]["fsGroup"]
    # bruin gets the file, not Vault: no Vault settings, no secrets backend.
    assert not [name for name in env_of(bruin) if name.startswith(("BRUIN_VAULT_", "VAULT_", "BAO_"))]
    assert "BRUIN_SECRETS_BACKEND" not in env_of(bruin) and "--secrets-backend" not in bruin_argv


def test_init_container_runs_the_tool_of_the_image() -> None:
    """Only `args`: the image's entrypoint runs, no image paths repeated in the manifest."""
    spec = pod_spec(manifest("Job"))
    assert spec is not None
    [init] = spec["initContainers"]
    assert "command" not in init and init["args"][0] == "render"


# --- retries: podFailurePolicy ---------------------------------------------------------------------


def job_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec


def pod_failure_policy_errors(spec: dict[str, Any]) -> list[str]:
    """The API server's checks of a Job's podFailurePolicy (pkg/apis/batch/validation, validatePodFailurePolicy*),
    which kubernetes-validate's schemas do not make: kubectl apply would refuse the Job."""
    template = spec["template"]["spec"]
    names = {c["name"] for c in containers(template)}
    errors = [] if template.get("restartPolicy") == "Never" else ["restartPolicy must be Never"]
    rules = spec["podFailurePolicy"]["rules"]
    errors += ["more than 20 rules"] if len(rules) > 20 else []
    for i, rule in enumerate(rules):
        on_codes, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if rule.get("action") not in ("Count", "FailJob", "Ignore"):  # FailIndex needs backoffLimitPerIndex
            errors.append(f"rule {i}: action {rule.get('action')!r}")
        if (on_codes is None) == (not on_conditions):
            errors.append(f"rule {i}: exactly one of onExitCodes and onPodConditions")
        for pattern in on_conditions or ():
            if pattern.get("status") not in ("True", "False", "Unknown") or not pattern.get("type"):
                errors.append(f"rule {i}: condition pattern {pattern}")
        if on_codes is not None:
            values = on_codes.get("values") or []
            if on_codes.get("operator") not in ("In", "NotIn"):
                errors.append(f"rule {i}: operator")
            if "containerName" in on_codes and on_codes["containerName"] not in names:
                errors.append(f"rule {i}: containerName must be one of {sorted(names)}")
            if not 1 <= len(values) <= 255 or values != sorted(set(values)):
                errors.append(f"rule {i}: values must be 1 to 255, ordered and unique")
            if on_codes.get("operator") == "In" and 0 in values:
                errors.append(f"rule {i}: 0 is not allowed with In")
    return errors


def failure_action(spec: dict[str, Any], container_name: str, exit_code: int) -> str:
    """What the Job controller does when `container_name` fails with `exit_code`: the first matching rule,
    else Count (the API's rules for a pod whose one failed container is that one)."""
    for rule in spec["podFailurePolicy"]["rules"]:
        codes = rule.get("onExitCodes")
        if codes is None or codes.get("containerName", container_name) != container_name:
            continue
        if (exit_code in codes["values"]) == (codes["operator"] == "In"):
            return str(rule["action"])
    return "Count"


@pytest.mark.parametrize(("kind", "tool"), [("CronJob", "bruin"), ("Job", "materialize")])
def test_jobs_retry_only_what_a_retry_can_fix(kind: str, tool: str) -> None:
    spec = job_spec(manifest(kind))
    assert pod_failure_policy_errors(spec) == []
    assert 1 <= spec["backoffLimit"] <= 3
    # Disruptions (eviction, preemption, drain) first: never counted, whatever the exit code.
    first = spec["podFailurePolicy"]["rules"][0]
    assert first == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    # With several containers, every exit-code rule names its container (a code means something for one).
    if len(containers(spec["template"]["spec"])) > 1:
        assert all("containerName" in r["onExitCodes"] for r in spec["podFailurePolicy"]["rules"][1:])
    assert failure_action(spec, tool, ExitCode.USAGE) == "FailJob"
    assert failure_action(spec, tool, ExitCode.INVALID) == "FailJob"
    assert failure_action(spec, tool, ExitCode.VAULT) == "Count"
    assert failure_action(spec, "bruin", 1) == "FailJob"  # bruin's own failure: no rerun behind anyone's back


def test_the_policy_check_catches_what_the_api_server_refuses() -> None:
    spec = job_spec(manifest("Job"))
    broken = json.loads(json.dumps(spec))
    broken["template"]["spec"]["restartPolicy"] = "OnFailure"
    broken["podFailurePolicy"]["rules"][1]["onExitCodes"].update(containerName="nope", values=[4, 2, 0])
    assert pod_failure_policy_errors(broken) == [
        "restartPolicy must be Never", "rule 1: containerName must be one of ['bruin', 'materialize']",
        "rule 1: values must be 1 to 255, ordered and unique", "rule 1: 0 is not allowed with In"]


# --- the recipes in docs/deployment.md ------------------------------------------------------------


def doc_yaml_blocks() -> list[Any]:
    text = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return [YAML(typ="safe", pure=True).load(block) for block in blocks]


def test_vault_agent_injector_recipe_hands_over_a_token_file_first() -> None:
    [annotations] = [b["metadata"]["annotations"] for b in doc_yaml_blocks()
                     if isinstance(b, dict) and "vault.hashicorp.com/agent-inject" in b.get("metadata", {}).get(
                         "annotations", {})]
    # The agent's init container must run before this one and leave its token in the shared volume;
    # no sidecar, whose volume would outlive the need.
    assert annotations["vault.hashicorp.com/agent-init-first"] == "true"
    assert annotations["vault.hashicorp.com/agent-inject-token"] == "true"
    assert annotations["vault.hashicorp.com/agent-pre-populate-only"] == "true"
    assert annotations["vault.hashicorp.com/role"] == "bruin-materialize"
    # automountServiceAccountToken is off in the manifests: the agent gets their projected volume.
    spec = pod_spec(manifest("Job"))
    assert spec is not None
    volume(spec, annotations["vault.hashicorp.com/agent-service-account-token-volume-name"])
    [env] = [b["env"] for b in doc_yaml_blocks() if isinstance(b, dict) and "env" in b]
    assert env == [{"name": "BRUIN_VAULT_TOKEN_FILE", "value": "/vault/secrets/token"}]
    assert "BRUIN_VAULT_TOKEN_FILE" in TOOL_VARIABLES


# --- running the image's entrypoint --------------------------------------------------------------


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`pip install .` as the image's build stage does it, into a prefix: PATH and PYTHONPATH to run the
    installed `bruin-materialize` (its dependencies are this interpreter's)."""
    prefix = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--prefix", str(prefix), str(source_copy(prefix))], check=True, capture_output=True,
                   cwd=prefix)
    [site] = prefix.glob("lib/python*/site-packages")
    assert (prefix / "bin" / COMMAND).is_file()
    return {"PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(site)}


def entrypoint_argv(args: Sequence[str]) -> list[str]:
    """The image's ENTRYPOINT + arguments. tini is left out: it only forwards signals and reaps
    children, and is not installed here."""
    argv = exec_form("ENTRYPOINT")
    if argv[0] == "tini":
        argv = argv[argv.index("--") + 1:]
    return argv + list(args)


def run_entrypoint(bruin_args: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(entrypoint_argv(bruin_args), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    sys.stdout.write(proc.stdout)  # echoed so that the leak guard scans it
    sys.stderr.write(proc.stderr)
    return proc


@pytest.fixture
def image_env(vault_env: dict[str, str], kv2: KV, fake_bruin: FakeBruin, installed: dict[str, str],
              tmp_path: Path) -> dict[str, str]:
    """The environment the image gives its entrypoint, pointed at the test server, the installed
    command and the fake bruin."""
    kv2.put("bruin/production", "pg", {"type": "postgres",
                                       "details": {"host": "db", "port": 5432, "password": PASSWORD}})
    env = dict(os.environ)
    env.update(dockerfile_env())
    env.update(installed)
    env.update({"BRUIN_BIN": str(fake_bruin.bin), "BRUIN_VAULT_MOUNT_PATH": kv2.mount,
                "BRUIN_VAULT_PATH": "bruin/production"})
    return env


@pytest.fixture
def shm_cleanup() -> Iterator[list[Path]]:
    """Directories exec left in /dev/shm (it becomes bruin, so it cannot remove them itself)."""
    made: list[Path] = []
    yield made
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


needs_tmpfs_shm = pytest.mark.skipif(skips.tmpfs_shm() is not None, reason=skips.tmpfs_shm() or "")


@needs_tmpfs_shm
def test_image_entrypoint_with_default_cmd_becomes_bruin_run(image_env: dict[str, str], fake_bruin: FakeBruin,
                                                             tmp_path: Path, shm_cleanup: list[Path]) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc = run_entrypoint(exec_form("CMD"), image_env, workspace)
    record = fake_bruin.record()
    config_file = Path(record["config_file"])
    shm_cleanup.append(config_file.parent)
    assert proc.returncode == 0, proc.stderr
    assert record["argv"] == ["run", "--config-file", str(config_file), "."]
    assert record["cwd"] == str(workspace)
    assert config_file.parent.parent == Path("/dev/shm")
    [pg] = record["config"]["environments"]["default"]["connections"]["postgres"]
    assert pg == {"name": "pg", "host": "db", "port": 5432, "password": PASSWORD}
    assert not [k for k in record["env"] if k.startswith(("BRUIN_VAULT_", "VAULT_", "BAO_"))]


@needs_tmpfs_shm
def test_cronjob_container_as_the_image_runs_it(image_env: dict[str, str], fake_bruin: FakeBruin, tmp_path: Path,
                                               shm_cleanup: list[Path]) -> None:
    """The CronJob's args and env on the image's entrypoint; Vault and paths swapped for the test's."""
    spec = pod_spec(manifest("CronJob"))
    assert spec is not None
    [ctr] = spec["containers"]
    env = {**image_env, **env_of(ctr)}
    env.update({name: image_env[name] for name in ("BRUIN_VAULT_HOST", "BRUIN_VAULT_MOUNT_PATH", "BRUIN_VAULT_PATH")})
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    # The test server has no Kubernetes login: a token, which wins over the manifest's role.
    assert env["BRUIN_VAULT_TOKEN"] and env["BRUIN_VAULT_ROLE"]
    proc = run_entrypoint(ctr["args"], env, tmp_path)
    record = fake_bruin.record()
    config_file = Path(record["config_file"])
    shm_cleanup.append(config_file.parent)
    assert proc.returncode == 0, proc.stderr
    assert record["argv"] == ["run", "--config-file", str(config_file), *ctr["args"][2:]]
    assert record["environment"] == flag_value(ctr["args"], "--environment")
    [pg] = record["config"]["environments"][record["environment"]]["connections"]["postgres"]
    assert pg["password"] == PASSWORD
    assert config_file.parent.parent == Path(env["BRUIN_MATERIALIZE_RUNTIME_DIR"])


def test_init_container_args_on_the_image_entrypoint(image_env: dict[str, str], tmp_path: Path) -> None:
    """The init container's args, with the output moved into tmp_path, on the installed command: the
    file bruin's container reads, its header naming this version and the schema it was checked against."""
    spec = pod_spec(manifest("Job"))
    assert spec is not None
    [init] = spec["initContainers"]
    output = tmp_path / "bruin-config" / "run" / "bruin.yml"
    args = [str(output) if arg == flag_value(init["args"], "--output") else arg for arg in init["args"]]
    env = {**image_env, **{k: v for k, v in env_of(init).items() if k == "XDG_CACHE_HOME"}}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = run_entrypoint(args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = output.read_text().splitlines()
    assert lines[0].startswith(f"# bruin config rendered by bruin-materialize {__version__} from ")
    assert lines[1].startswith('# Checked against "`') and "internal connections`, sha256 " in lines[1]
    assert YAML(typ="safe", pure=True).load(output.read_text())["default_environment"] == "production"


# --- the Vault setup script ----------------------------------------------------------------------


def find_bao() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    found = str(beside_python) if os.access(beside_python, os.X_OK) else shutil.which("bao")
    if not found:
        pytest.fail("the OpenBao CLI `bao` is not installed (requirements-dev.txt)", pytrace=False)
    return found


def run_vault_setup(server: BaoServer, settings: Mapping[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_text(CLUSTER_CA)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update({"HOME": str(tmp_path), "VAULT_CLI": find_bao(), "BAO_ADDR": server.addr, "BAO_TOKEN": server.root_token,
                "VAULT_IN_CLUSTER": "false", "KUBERNETES_CA_CERT_FILE": str(ca_file),
                "KUBERNETES_HOST": "https://127.0.0.1:6443"})  # stored only: nothing logs in here
    env.update(settings)
    proc = subprocess.run(["bash", str(VAULT_SETUP)], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc


def test_vault_setup_policy_is_enough_for_the_tool(bao_server: BaoServer, kv: KV, vault_env: dict[str, str],
                                                   run_cli: Any, schema_path: Path, tmp_path: Path) -> None:
    """The script's policy lets the tool list and read the connections (subfolders too), and the role
    binds it to the manifests' service account. Run twice: it must be idempotent."""
    kv.put("bruin/production", "pg", {"type": "postgres", "details": {"host": "db", "password": PASSWORD}})
    kv.put("bruin/production/team", "wh", {"type": "postgres", "details": {"host": "wh", "password": PASSWORD}})
    kv.put("bruin/staging", "other", {"type": "postgres", "details": {"host": "no"}})
    account = manifest("ServiceAccount")["metadata"]["name"]
    suffix = kv.mount  # unique per test: the auth mount, role and policy do not collide with other tests
    settings = {"MOUNT": kv.mount, "SECRET_PATH": "bruin/production", "KV_VERSION": str(kv.version),
                "NAMESPACE": "data", "K8S_AUTH_MOUNT": f"k8s-{suffix}", "POLICY": f"read-{suffix}",
                "ROLE": "bruin-materialize", "SERVICE_ACCOUNT": account}
    for _ in range(2):
        proc = run_vault_setup(bao_server, settings, tmp_path)
        assert proc.returncode == 0, proc.stderr
    client = bao_server.client
    role = client.read(f"auth/k8s-{suffix}/role/bruin-materialize")["data"]  # type: ignore[index]  # a dict here
    assert role["bound_service_account_names"] == [account]
    assert role["bound_service_account_namespaces"] == ["data"]
    assert role["token_policies"] == [f"read-{suffix}"] and role["audience"] == "vault"
    policy = client.sys.read_policy(f"read-{suffix}")["data"]["rules"]  # type: ignore[no-untyped-call]  # untyped in types-hvac
    token = bao_server.token(policy)
    proc = run_cli("check", "--recursive", "--schema", str(schema_path),
                   env={"BRUIN_VAULT_TOKEN": token, "BRUIN_VAULT_MOUNT_PATH": kv.mount,
                        "BRUIN_VAULT_PATH": "bruin/production"})
    assert proc.returncode == 0, proc.stderr
    # Read access stops at the folder: the staging secrets are out of reach.
    proc = run_cli("check", "--schema", str(schema_path),
                   env={"BRUIN_VAULT_TOKEN": token, "BRUIN_VAULT_MOUNT_PATH": kv.mount,
                        "BRUIN_VAULT_PATH": "bruin/staging"})
    assert proc.returncode == 3, proc.stderr


def test_init_container_resolves_relative_paths_against_the_bruin_containers_project() -> None:
    """The init container has no checkout and runs in /: its project root must be the bruin container's."""
    spec = pod_spec(manifest("Job"))
    assert spec is not None
    [init] = spec["initContainers"]
    [bruin] = spec["containers"]
    project = [*bruin["command"], *bruin.get("args", [])][-1]  # `bruin run ... /workspace`
    assert project == "/workspace"
    assert env_of(init)["BRUIN_MATERIALIZE_PROJECT_ROOT"] == project


def test_a_project_root_of_slash_with_relative_paths_is_a_warning(kv2: KV, vault_env: dict[str, str], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   schema_path: Path) -> None:
    from bruin_materialize.cli import main

    kv2.put("bruin", "lake", {"type": "duckdb", "details": {"path": "data/lake.db"}})
    kv2.put("bruin", "abs", {"type": "duckdb", "details": {"path": "/srv/abs.db"}})
    monkeypatch.setenv("BRUIN_MATERIALIZE_SCHEMA", str(schema_path))
    argv = ["render", "-o", str(tmp_path / "out.yml"), "--mount-path", kv2.mount, "--path", "bruin", "--no-base"]
    assert main([*argv, "--project-root", "/"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("materialize: warning:") and "tmpfs" not in line]
    assert warnings == [
        "materialize: warning: 1 relative path in the secrets made absolute against the project root /, the "
        "filesystem's root; is that the project? Set BRUIN_MATERIALIZE_PROJECT_ROOT to the project's path where "
        "bruin runs (e.g. /workspace)"]
    assert YAML(typ="safe").load((tmp_path / "out.yml").read_text())["environments"]["default"]["connections"][
        "duckdb"][1]["path"] == "/data/lake.db"
    assert main([*argv, "--project-root", "/workspace"]) == 0
    assert "BRUIN_MATERIALIZE_PROJECT_ROOT" not in capsys.readouterr().err
