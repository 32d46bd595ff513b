"""The Kubernetes manifests are valid objects and wire the queues the way the Celery app routes them."""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37"
# Custom resources (KEDA) and Kustomize files have no schema in kubernetes-validate; they are checked by hand below.
CUSTOM_KINDS = {"ScaledObject", "Kustomization"}


def _documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize(("name", "document"), [d for d in _documents() if d[1]["kind"] not in CUSTOM_KINDS],
                         ids=lambda value: value if isinstance(value, str) else value["metadata"]["name"])
def test_each_built_in_object_is_valid(name, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_example():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk


def _deployment(name: str) -> dict:
    return next(d for _, d in _documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


@pytest.mark.parametrize(("deployment", "queue"), [("assay-worker-gpu", "gpu"), ("assay-worker-cpu", "cpu")])
def test_each_worker_consumes_its_queue_and_keda_scales_it_on_that_queue(deployment, queue):
    command = _deployment(deployment)["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("-Q") + 1] == queue
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    scaler = next(d for _, d in _documents() if d["kind"] == "ScaledObject" and d["metadata"]["name"] == deployment)
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment
    assert [t["metadata"]["queueName"] for t in scaler["spec"]["triggers"]] == [queue]


def test_gpu_workers_run_one_process_per_gpu_on_the_gpu_pool():
    spec = _deployment("assay-worker-gpu")["spec"]["template"]["spec"]
    command = spec["containers"][0]["command"]
    assert command[command.index("-c") + 1] == "1"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
