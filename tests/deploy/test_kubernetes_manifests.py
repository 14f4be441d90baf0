"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas, offline
(kubernetes-validate bundles them), and the kustomization builds (when kubectl is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests promise to work with, and the newest bundled.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_schemas(path, version):
    docs = documents(path.read_text())
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_the_daemonset_keeps_the_promises_of_the_docs():
    (ds,) = documents((DEPLOY / "daemonset.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["hostPID"] is True
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["SYS_PTRACE", "DAC_READ_SEARCH"],
    }
    assert container["securityContext"]["privileged"] is False
    spool = next(v for v in pod["volumes"] if v["name"] == "spool")
    assert spool["hostPath"]["path"] == "/var/lib/ecoreport"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert container["livenessProbe"]
    # The token is a mounted Secret file, never an environment value.
    assert all("TOKEN" not in env["name"] for env in container["env"])
    (rbac_role, _binding) = documents((DEPLOY / "rbac.yaml").read_text())
    assert rbac_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}
    ]


def test_the_configmap_is_a_config_the_agent_accepts(tmp_path):
    from ecoreport_agent.config import resolve

    (cm,) = documents((DEPLOY / "configmap.yaml").read_text())
    conf = tmp_path / "agent.conf"
    conf.write_text(cm["data"]["agent.conf"])
    settings = resolve({}, environ={}, config_path=str(conf))
    assert settings.kubernetes is True
    assert settings.token_file == "/etc/ecoreport/token/token"


def test_kubectl_kustomize_builds_valid_resources(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization build is checked where it is")
    copy = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY, copy)
    (copy / "secrets" / "token").write_text("test-token\n")
    built = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    docs = documents(built.stdout)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Namespace",
        "Secret",
        "ServiceAccount",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["metadata"]["name"] == "ecoreport-agent-token"
