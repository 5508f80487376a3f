"""deploy/: every manifest validates against the Kubernetes schemas (offline, kubernetes-validate's
bundled OpenAPI schemas, strict: unknown fields fail), every command in it parses with the real
command line, the counts agree with each other, and the probes' endpoint is served."""

from __future__ import annotations

import json
import re
import shlex
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import kubernetes_validate  # the test extra installs it, with PyYAML: a missing one fails, never skips
import pytest
import yaml

from support import REPO, ServerProcess

DEPLOY = REPO / "deploy"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported when this was written; native fields only
MANIFESTS = sorted(DEPLOY.rglob("*.yaml"))
# Kubeflow training-operator's TFJob (kubeflow.org/v1): its replica types and restart policies.
TFJOB_REPLICA_TYPES = {"Chief", "Master", "PS", "Worker", "Evaluator"}
TFJOB_RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}


def documents() -> Iterator[tuple[Path, dict]]:
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def pod_specs(doc: dict) -> Iterator[dict]:
    """The pod specs a workload runs (a TFJob's, one per replica type)."""
    if doc["kind"] == "TFJob":
        for spec in doc["spec"]["tfReplicaSpecs"].values():
            yield spec["template"]["spec"]
    elif doc["kind"] in ("StatefulSet", "Job", "Deployment"):
        yield doc["spec"]["template"]["spec"]


def containers() -> Iterator[tuple[str, dict, dict]]:
    for path, doc in documents():
        for spec in pod_specs(doc):
            for c in spec.get("containers", []):
                yield f"{path.relative_to(REPO)}:{doc['metadata']['name']}/{c['name']}", doc, c


def test_deploy_has_every_piece_the_cluster_needs():
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in documents())
    assert ("StatefulSet", "qs-ps") in kinds and ("StatefulSet", "qs-worker") in kinds
    assert ("Service", "qs-ps") in kinds and ("Service", "qs-worker") in kinds
    assert ("Job", "qs-loader") in kinds and ("Job", "qs-trainer") in kinds
    assert ("Secret", "qs-token") in kinds and ("TFJob", "qs-tfjob") in kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates_against_the_kubernetes_schemas(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if doc["kind"] == "TFJob":
            # No Kubernetes schema for a custom resource: check the TFJob's own shape, then each
            # replica's pod template as the Pod it becomes.
            assert doc["apiVersion"] == "kubeflow.org/v1"
            assert set(doc["spec"]) <= {"runPolicy", "tfReplicaSpecs", "successPolicy", "enableDynamicWorker"}
            for rtype, spec in doc["spec"]["tfReplicaSpecs"].items():
                assert rtype in TFJOB_REPLICA_TYPES and spec["restartPolicy"] in TFJOB_RESTART_POLICIES
                assert set(spec) <= {"replicas", "restartPolicy", "template"} and spec["replicas"] >= 1
                assert any(c["name"] == "tensorflow" for c in spec["template"]["spec"]["containers"]), \
                    "TFJob sets TF_CONFIG in the container named tensorflow"
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"tfjob-{rtype.lower()}"},
                       "spec": {**spec["template"]["spec"], "restartPolicy": spec["restartPolicy"]}}
                kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_broken_manifest():
    doc = yaml.safe_load((DEPLOY / "kubernetes" / "ps.yaml").read_text().split("---")[1])
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def command_lines(container: dict) -> list[list[str]]:
    """The argvs the container runs (each command of a shell script), with Kubernetes' $(VAR) and
    the shell's $VAR filled in."""
    argv = [re.sub(r"\$\((\w+)\)", r"$\1", a) for a in container["command"] + container.get("args", [])]
    if argv[:2] == ["sh", "-c"]:
        lines = [shlex.split(line, comments=True) for line in argv[2].replace("\\\n", " ").splitlines()]
        argvs = [line[1:] if line[0] == "exec" else line for line in lines if line]
        argvs = [[a for a in line if a not in (">", "2>&1", "&", "server=$!") and not a.startswith("/tmp/")]
                 for line in argvs if line[0] in ("exec", "queueserver", "python")]
    else:
        argvs = [argv]
    values = {"POD_NAMESPACE": "ml", "JOB_COMPLETION_INDEX": "1"}
    return [[re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), m.group(0)), a) for a in line] for line in argvs]


def command_line(container: dict) -> list[str]:
    """The container's main command (its first)."""
    return command_lines(container)[0]


def test_every_command_parses_with_the_real_command_line():
    from compute.cli import build_parser as compute_parser
    from compute.cli import config_from_args
    from pipeline.loader.cli import build_parser as loader_parser
    from queueserver.cli import build_parser as server_parser

    from queueserver.resolvers import trainer_args_from_tf_config

    where_kinds = {w: d["kind"] for w, d, _ in containers()}
    seen = set()
    for where, _, argv in ((w, d, argv) for w, d, c in containers() for argv in command_lines(c)):
        if argv[0] == "queueserver":
            server_parser().parse_args(argv[1:])
            seen.add("serve")
        elif argv[:3] == ["python", "-m", "pipeline"]:
            loader_parser().parse_args(argv[3:])
            seen.add("load")
        elif argv[:3] == ["python", "-m", "compute"]:
            args = compute_parser().parse_args(argv[3:])
            if "TFJob" in where_kinds[where]:  # the operator's TF_CONFIG names the cluster and the task
                cluster = {"ps": ["p0:2222", "p1:2222"], "worker": ["w0:2222", "w1:2222", "w2:2222"]}
                tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
                trainer_args_from_tf_config(args, "train", {"TF_CONFIG": tf_config})
                assert (args.target, args.task) == ("w1:2222", 1)
            config_from_args(args)  # the trainer's own validation too
            seen.add("train")
        else:
            pytest.fail(f"{where}: unexpected command {argv}")
    assert seen == {"serve", "load", "train"}


def test_counts_ports_tokens_and_probes_agree():
    docs = [doc for _, doc in documents()]
    sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    replicas = {name.removeprefix("qs-"): s["spec"]["replicas"] for name, s in sets.items()}
    for name, s in sets.items():
        c = s["spec"]["template"]["spec"]["containers"][0]
        argv = command_line(c)
        assert argv[argv.index("--jobs") + 1] == ",".join(f"{j}={n}" for j, n in sorted(replicas.items()))
        assert s["spec"]["serviceName"] == name and s["spec"]["podManagementPolicy"] == "Parallel"
        service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == name)
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"] == s["spec"]["template"]["metadata"]["labels"]
    trainer = next(d for d in docs if d["metadata"]["name"] == "qs-trainer")
    assert trainer["spec"]["completions"] == replicas["worker"]   # trainer N talks to worker task N
    for where, doc, c in containers():
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], where
        env = {e["name"]: e.get("valueFrom", {}) for e in c.get("env", [])}
        assert env["QUEUESERVER_TOKEN"] == {"secretKeyRef": {"name": "qs-token", "key": "token"}}, where
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in c:
                assert c[probe]["httpGet"]["path"] == "/healthz", where
        if command_line(c)[0] == "queueserver":
            assert "readinessProbe" in c and "livenessProbe" in c or doc["kind"] == "TFJob", where
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports[c["readinessProbe"]["httpGet"]["port"]] == 2222, where


def test_the_probes_endpoint_answers_without_the_token_and_nothing_else_does():
    """Kubelet's probes carry no token: /healthz answers them; status still needs it."""
    server = ServerProcess("--token", "s3cret")
    try:
        with urllib.request.urlopen(f"{server.target}/healthz", timeout=10) as reply:
            assert reply.status == 200 and json.loads(reply.read())["ok"] is True
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.target}/status", timeout=10)
        assert info.value.code == 401
    finally:
        server.stop()


def test_dockerfile_installs_what_the_manifests_run():
    text = (DEPLOY / "Dockerfile").read_text()
    images = {c["image"] for _, _, c in containers()}
    from queueserver._version import __version__

    assert images == {f"queueserver:{__version__}"}
    for package in ("queueserver", "pipeline", "compute"):
        assert f"COPY {package} {package}" in text
