"""The deployment files parse and agree with each other, with the settings and with the metric catalog.

No cluster, Docker or promtool is needed: the files are parsed with PyYAML/json and checked field by field;
PromQL gets a light syntax check (tests/deploy/promql.py). `kubectl kustomize` runs when kubectl is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from apps.observability.metrics import METRIC_FAMILIES
from tests.deploy import promql
from tests.fixtures.metrics import CATALOG

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCS = ROOT / "docs" / "deploy.md"
IMAGE = "ghcr.io/example/integration-hub"
#: The Celery queues: each has its worker Deployment, HPA and Compose service.
QUEUES = ("sync", "outbox", "default", "siem")
SCRATCH = "/tmp"  # noqa: S108 - the containers' writable scratch mount, not a file this test creates

# The label names of the catalog (/work/briefs/metrics.md, implemented in apps/observability/metrics.py),
# plus the ones Prometheus and the scrape configs add. Grouping by anything else would be a typo.
LABELS = frozenset(
    {
        "route", "method", "status", "tenant", "region", "channel", "outcome", "model", "kind", "connector",
        "stream", "result", "scope", "state", "queue", "task", "le", "job", "instance", "namespace", "pod",
        "component", "dependency", "feature", "direction", "reason", "mode", "action", "protocol",
        "locale", "rating",
    }
)  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
PROMETHEUS_BUILTINS = frozenset({"up"})


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        objects.extend(load_all(K8S / resource))
    return objects


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in k8s_objects() if obj["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in k8s_objects():
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def deployment(name: str) -> dict[str, Any]:
    matches = [d for d in of_kind("Deployment") if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"one Deployment {name} expected, found {len(matches)}"
    return matches[0]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def catalog_series() -> set[str]:
    """Every series name the catalog exposes: families, plus _bucket/_count/_sum of the histograms."""
    series = set(METRIC_FAMILIES)
    for name in METRIC_FAMILIES:
        if name.endswith("_seconds"):
            series.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return series


def recorded_names() -> set[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "recording.yml").read_text())
    return {rule["record"] for group in doc["groups"] for rule in group["rules"]}


def check_expr(expr: str, *, where: str) -> promql.Parsed:
    parsed = promql.parse(expr)
    allowed = catalog_series() | recorded_names() | PROMETHEUS_BUILTINS
    unknown = parsed.metrics - allowed
    assert not unknown, f"{where}: metrics not in the catalog or recording rules: {sorted(unknown)}"
    assert parsed.grouping_labels <= LABELS, f"{where}: unknown labels {parsed.grouping_labels - LABELS}"
    assert parsed.matcher_labels <= LABELS, f"{where}: unknown labels {parsed.matcher_labels - LABELS}"
    return parsed


# --- every file parses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_all(path), f"{path} is empty"


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_the_catalog_is_the_briefed_one() -> None:
    """The catalog the rules are checked against is the code's, and it has every family of the contract."""
    assert CATALOG <= METRIC_FAMILIES


# --- Kubernetes --------------------------------------------------------------------------------------------
def test_kustomization_lists_existing_files_and_everything_is_in_the_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, "every manifest in deploy/k8s is applied (extras/ holds the optional ones)"
    for obj in k8s_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == kustomization["namespace"] == "hub", obj["metadata"]
    assert kustomization["images"] == [{"name": IMAGE, "newTag": "0.1.0"}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out.stdout) if doc]
    assert kinds.count("Deployment") == len(QUEUES) + 2  # web, beat and a worker per queue
    assert kinds.count("HorizontalPodAutoscaler") == len(QUEUES) + 1  # web and each worker


@pytest.mark.parametrize("name", [name for name, _ in pod_specs()])
def test_workload_is_non_root_read_only_and_has_resources(name: str) -> None:
    spec = dict(pod_specs())[name]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        resources = container["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[part]), f"{name}/{container['name']} {part}"
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        image = container["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: image {image} not pinned"
        # A read-only root needs a writable /tmp (metrics files, beat state, scratch).
        if repo == IMAGE:
            assert any(m["mountPath"] == SCRATCH for m in container["volumeMounts"]), name


def test_hub_pods_get_config_and_secrets_that_exist() -> None:
    configmaps = {c["metadata"]["name"]: c for c in of_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    for name, spec in pod_specs():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
    secret = secrets["hub-secrets"]["stringData"]
    assert set(secret) >= {"DJANGO_SECRET_KEY", "HUB_MASTER_KEYS", "HUB_AUDIT_SIGNING_KEY", "DATABASE_URL"}
    assert all(f"REGION_{code.upper()}_DATABASE_URL" in secret for code in settings.HUB_REGIONS)
    assert all("change-me" in value for value in secret.values()), "the example holds placeholders only"
    assert "HUB_METRICS_TOKEN" in secret
    config = configmaps["hub-config"]["data"]
    assert not set(config) & set(secret), "a value is either configuration or a secret"
    assert config["DJANGO_SETTINGS_MODULE"] == "hub.settings.production"
    assert config["HUB_REGIONS"].split(",") == list(settings.HUB_REGIONS)


def test_web_probes_health_and_readiness() -> None:
    web = deployment("hub-web")
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    allowed = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in allowed, "Django answers 400 to a Host it does not allow"
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_web_service_and_disruption_budget_select_the_web_pods() -> None:
    labels = deployment("hub-web")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        objects = [o for o in of_kind(kind) if o["metadata"]["name"] == "hub-web"]
        assert len(objects) == 1
        selector = objects[0]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind


def test_one_worker_deployment_per_queue() -> None:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    queues = routed | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert queues == set(QUEUES)
    for queue in queues:
        (container,) = deployment(f"hub-worker-{queue}")["spec"]["template"]["spec"]["containers"]
        env = container_env(container)
        assert container["args"] == ["worker"]
        assert env["CELERY_QUEUES"] == queue
        assert int(env["CELERY_CONCURRENCY"]) >= 1
        assert container["ports"] == [{"name": "metrics", "containerPort": int(env["WORKER_METRICS_PORT"]),
                                       "protocol": "TCP"}]  # fmt: skip
        assert "livenessProbe" in container


def test_beat_is_a_single_recreated_pod() -> None:
    beat = deployment("hub-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert not [
        h for h in of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "hub-beat"
    ]


def test_migrations_job_runs_migrate_once() -> None:
    (job,) = of_kind("Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["backoffLimit"] >= 1


def test_autoscalers_target_existing_deployments() -> None:
    names = {d["metadata"]["name"] for d in of_kind("Deployment")}
    hpas = {h["metadata"]["name"]: h for h in of_kind("HorizontalPodAutoscaler")}
    assert set(hpas) == {"hub-web"} | {f"hub-worker-{queue}" for queue in QUEUES}
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in names, name
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (cpu,) = hpas["hub-web"]["spec"]["metrics"]
    assert cpu["type"] == "Resource" and cpu["resource"]["name"] == "cpu"
    for queue in QUEUES:
        (metric,) = hpas[f"hub-worker-{queue}"]["spec"]["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["name"] == "hub_celery_queue_depth"
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {"queue": queue}
        assert metric["external"]["target"]["type"] == "AverageValue"
        assert "hub_celery_queue_depth" in METRIC_FAMILIES
    adapter = yaml.safe_load((K8S / "extras" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == "hub_celery_queue_depth"
    assert rule["metricsQuery"].startswith("max("), "every web pod reports the same length: max, not sum"


# --- Prometheus rules --------------------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def doc_anchors() -> set[str]:
    headings = re.findall(r"^#+\s+(.+)$", DOCS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_is_complete_and_uses_catalog_metrics(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Hub[A-Za-z0-9]+", rule["alert"])
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    path, _, anchor = annotations["runbook"].partition("#")
    assert path == "docs/deploy.md" and anchor in doc_anchors(), annotations["runbook"]
    assert f"`{rule['alert']}`" in DOCS.read_text(), "the alert table in docs/deploy.md lists every alert"
    check_expr(rule["expr"], where=rule["alert"])


def test_the_briefed_alerts_exist() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert "histogram_quantile(0.95" in rules["HubChatLatencyHigh"]["expr"]
    assert "hub_chat_turn_duration_seconds_bucket" in rules["HubChatLatencyHigh"]["expr"]
    assert "> 1\n" in rules["HubChatLatencyHigh"]["expr"]
    assert 'status="5xx"' in rules["HubHttpErrorRateHigh"]["expr"]
    assert "fallback_ratio:rate1h" in rules["HubChatFallbackSpike"]["expr"]
    assert "hub_sync_lag_seconds" in rules["HubSyncLagOverSlo"]["expr"]
    assert "(hub_breaker_state) == 2" in rules["HubBreakerOpen"]["expr"]
    assert rules["HubBreakerOpen"]["for"] == "5m"
    assert "delta(hub_dead_letters[30m])" in rules["HubDeadLettersGrowing"]["expr"]
    assert "hub_celery_queue_depth" in rules["HubCeleryQueueBacklog"]["expr"]
    assert "hub_outbox_depth" in rules["HubOutboxBacklog"]["expr"]
    # Issue 15: dependency error rates, by dependency (postgres, redis, broker), and the Redis-less mode.
    assert "sum by (dependency) (rate(hub_dependency_errors_total" in rules["HubDependencyErrors"]["expr"]
    assert rules["HubDependencyDown"]["labels"]["severity"] == "critical"
    assert 'hub_degraded_total{dependency="redis"}' in rules["HubDegradedWithoutRedis"]["expr"]
    # Issue 21 (seed 004): a language's fallback share jumping, per tenant, languages not enabled left out.
    locale = rules["HubChatLocaleFallbackSpike"]["expr"]
    assert "tenant_locale:hub_chat_fallback_ratio:rate10m" in locale and "fallback_ratio:rate1h" in locale
    assert 'locale!="other"' in locale


def test_recording_rules_are_named_by_convention_and_use_catalog_metrics() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "recording.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            level, metric, operation = rule["record"].split(":")
            assert level and operation and metric.startswith("hub_"), rule["record"]
            parsed = check_expr(rule["expr"], where=rule["record"])
            assert parsed.metrics & catalog_series(), f"{rule['record']} reads no catalog metric"


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(hub_chat_turns_total[5m])",
        'hub_chat_turns_total{outcome="fallback}',
        "sum by (le) (rat(hub_chat_turns_total[5m]))",
        "max(hub_chat_turns_total]",
    ],
)
def test_the_promql_check_rejects_malformed_expressions(expr: str) -> None:
    with pytest.raises(promql.PromQLError):
        promql.parse(expr)


def test_the_promql_check_reports_unknown_metrics() -> None:
    with pytest.raises(AssertionError, match="hub_chat_turn_total"):
        check_expr("sum(rate(hub_chat_turn_total[5m]))", where="typo")


def test_prometheus_scrape_configs() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / Path(rule_file).name).is_file(), rule_file
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["hub-web"]["authorization"]["type"] == "Bearer"
    assert jobs["hub-web"]["authorization"]["credentials_file"] == "/run/secrets/hub_metrics_token"
    assert jobs["hub-web"]["metrics_path"] == "/metrics"
    (dns,) = jobs["hub-workers"]["dns_sd_configs"]
    compose = load_compose()
    assert set(dns["names"]) == {name for name in compose["services"] if name.startswith("worker-")}
    k8s = {job["job_name"]: job for job in yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text())["scrape_configs"]}  # fmt: skip # noqa: E501
    assert k8s["hub-web"]["authorization"]["type"] == "Bearer"
    rewrite = next(r for r in k8s["hub-web"]["relabel_configs"] if r.get("target_label") == "__address__")
    suffix = rewrite["replacement"].split(".", 1)[1].rsplit(":", 1)[0]
    allowed = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert f".{suffix}" in allowed, "the scraped pod DNS names must be allowed hosts"


# --- Grafana -----------------------------------------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "hub-dashboard.json").read_text())


def test_dashboard_is_current_with_its_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_dashboard", DEPLOY / "grafana" / "build_dashboard.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (DEPLOY / "grafana" / "hub-dashboard.json").read_text(), (
        "run python deploy/grafana/build_dashboard.py and commit the JSON"
    )


def test_dashboard_model() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("tenant", "region", "channel", "locale", "connector"):
        query = variables[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
        assert match and match.group(1) in METRIC_FAMILIES and match.group(2) == name, query
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_has_a_languages_row_filtered_by_the_locale_variable() -> None:
    """Issue 21 (seed 004): answer and fallback rate, feedback and latency p50/p99 per language."""
    panels = dashboard()["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Languages")
    end = next(i for i, p in enumerate(panels) if i > start and p["type"] == "row")
    row = {p["title"]: [t["expr"] for t in p["targets"]] for p in panels[start + 1 : end]}
    wanted = {"Answer rate by language", "Fallback rate by language", "Feedback up share by language"}
    assert wanted <= set(row)
    latency = row["Turn latency p50 / p99 by language"]
    assert [e.split(",")[0] for e in latency] == ["histogram_quantile(0.5", "histogram_quantile(0.99"]
    for title, exprs in row.items():
        for expr in exprs:
            assert 'locale=~"$locale"' in expr and re.search(r"by \([^)]*locale", expr), title
            check_expr(expr, where=title)
    assert "hub_chat_feedback_total" in " ".join(row["Feedback up share by language"])


def test_dashboard_panels_query_catalog_metrics_through_the_datasource_variable() -> None:
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= check_expr(target["expr"], where=panel["title"]).metrics
    titles = " | ".join(p["title"] for p in panels)
    wanted_titles = (
        "by outcome", "Fallback and handoff", "Turn latency", "Retrieval latency", "Tokens", "Cost",
        "Records", "Sync lag", "Vendor latency", "Vendor errors", "breakers", "Outbox", "Dead letters",
        "queue depth", "Task duration", "latency p95 by route",
    )  # fmt: skip
    for wanted in wanted_titles:
        assert wanted in titles, wanted
    families = {
        next((m.removesuffix(s) for s in HISTOGRAM_SUFFIXES if m.endswith(s)), m)
        for m in used
        if ":" not in m
    }
    recorded = {m.split(":")[1] for m in used if ":" in m}
    shown = families | {f for f in METRIC_FAMILIES if any(f.startswith(r) for r in recorded)}
    assert shown >= METRIC_FAMILIES, f"not on the dashboard: {sorted(METRIC_FAMILIES - shown)}"


# --- Compose -----------------------------------------------------------------------------------------------
def load_compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "compose" / "hub.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_compose_services() -> None:
    services = load_compose()["services"]
    hub = {name: s for name, s in services.items() if s.get("image", "").startswith("integration-hub:")}
    assert set(hub) == {"migrate", "web", "beat"} | {f"worker-{queue}" for queue in QUEUES}
    for name, service in hub.items():
        assert service["env_file"] == ["hub.env"], name
        assert service["read_only"] is True and SCRATCH in service["tmpfs"], name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
            assert set(service["deploy"]["resources"]) == {"limits", "reservations"}, name
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    for queue in QUEUES:
        assert services[f"worker-{queue}"]["environment"]["CELERY_QUEUES"] == queue
        assert "REDIS_URL" in services[f"worker-{queue}"]["environment"], "the merged environment is kept"
    for code in settings.HUB_REGIONS:
        assert f"REGION_{code.upper()}_DATABASE_URL" in services["web"]["environment"]
    for name in ("postgres-control", "postgres-eu", "postgres-us"):
        assert services[name]["image"] == "pgvector/pgvector:pg17"
        assert "pg_isready" in " ".join(services[name]["healthcheck"]["test"])
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    for name, service in services.items():
        if "image" in service and not service["image"].startswith("integration-hub:"):
            tag = service["image"].rpartition(":")[2]
            assert tag and tag != "latest", name


def test_compose_interpolates_only_variables_the_env_example_defines() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    example = env_example()
    for match in re.finditer(r"(?<!\$)\$\{(\w+)(:?[-?][^}]*)?\}", text):
        name, modifier = match.group(1), match.group(2) or ""
        if not modifier.startswith((":-", "-")):
            assert name in example, f"compose.yaml needs {name} but hub.env.example does not define it"
    assert "HUB_METRICS_TOKEN" in example, "the secret given to Prometheus"


def test_env_example_names_only_known_variables() -> None:
    known = settings_env_vars() | documented_process_vars()
    names = set(env_example()) | set(
        re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=", (DEPLOY / "compose" / "hub.env.example").read_text(), re.M)
    )
    assert names - known == set()
    assert {"DJANGO_SECRET_KEY", "HUB_MASTER_KEYS", "HUB_AUDIT_SIGNING_KEY", "DJANGO_ALLOWED_HOSTS"} <= names


# --- Dockerfile and entry point ----------------------------------------------------------------------------
def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert "pip install -r requirements.lock" in text
    assert "collectstatic --noinput" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert 'ENTRYPOINT ["/app/deploy/entrypoint.sh"]' in text
    assert "DJANGO_SETTINGS_MODULE=hub.settings.production" in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".hub", ".git"} <= set(ignore)


def test_entrypoint_roles_match_the_manifests() -> None:
    text = (DEPLOY / "entrypoint.sh").read_text()
    roles = set(re.findall(r"^\s{4}(\w+)\)$", text, re.M))
    assert roles == {"web", "worker", "beat", "migrate", "manage"}
    used = {
        tuple(c["args"])
        for _, spec in pod_specs()
        for c in spec["containers"]
        if c["image"].startswith(IMAGE)
    }
    used |= {tuple(s["command"]) for s in load_compose()["services"].values() if "command" in s and
             s.get("image", "").startswith("integration-hub:")}  # fmt: skip
    assert {args[0] for args in used} <= roles
    assert "gunicorn hub.wsgi --config /app/deploy/gunicorn.conf.py" in text
    assert "PROMETHEUS_MULTIPROC_DIR" in text, "each container starts with an empty metrics directory"


# --- docs/deploy.md and the settings ------------------------------------------------------------------------
_ENV_READ = re.compile(
    r"""(?:env_[a-z_]+\(\s*|os\.environ\.get\(\s*|os\.environ\[\s*|getenv\(\s*)["']([A-Z][A-Z0-9_]+)["']"""
    r"""|["']([A-Z][A-Z0-9_]+)["']\s+(?:not\s+)?in\s+os\.environ"""
)
_REGION_URL = re.compile(r"^REGION_[A-Z0-9]+_DATABASE_URL$")


def settings_env_vars() -> set[str]:
    """Every environment variable hub/settings/ reads (by name; the per-region URLs by their pattern)."""
    names: set[str] = set()
    for path in (ROOT / "hub" / "settings").glob("*.py"):
        for match in _ENV_READ.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def env_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Environment variables")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _first_column_names(text: str) -> set[str]:
    """The variable names in the first cell of each table row (defaults and prose are other cells)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", line.split("|")[1]))
    return names


def documented_vars() -> set[str]:
    return _first_column_names(env_section())


def documented_process_vars() -> set[str]:
    section = env_section()
    return _first_column_names(section[section.index("### Container and process variables") :])


def test_settings_env_vars_are_found() -> None:
    found = settings_env_vars()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "HUB_METRICS_TOKEN", "HUB_HOME"} <= found
    assert 'env_db(f"REGION_{_code.upper()}_DATABASE_URL")' in (ROOT / "hub/settings/base.py").read_text()


def test_docs_list_every_settings_env_var() -> None:
    missing = settings_env_vars() - documented_vars()
    assert not missing, f"docs/deploy.md does not document {sorted(missing)}"
    assert "`REGION_<CODE>_DATABASE_URL`" in env_section()


def test_docs_name_no_env_var_the_code_does_not_read() -> None:
    code = settings_env_vars()
    deploy_text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file())
    runtime_text = "\n".join(
        (ROOT / name).read_text() for name in ("manage.py", "celery_worker.py", "hub/wsgi.py")
    )
    for name in documented_vars() - code:
        if _REGION_URL.match(name):
            continue
        if name in documented_process_vars():
            assert name in deploy_text or name in runtime_text, f"{name} is documented but nothing reads it"
        else:
            # Variables named in the settings tables must be read by hub/settings (e.g. a renamed setting).
            assert name in {"DJANGO_SETTINGS_MODULE"}, (
                f"{name} is documented but hub/settings does not read it"
            )
            assert name in runtime_text
