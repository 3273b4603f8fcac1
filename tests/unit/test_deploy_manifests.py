"""The Kubernetes manifests parse and keep the hardening every service must have."""
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"


def _docs(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_kustomize_resource_exists_and_parses():
    for kustomization in K8S.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text()).get("resources", []):
            target = kustomization.parent / resource
            assert target.exists(), f"{kustomization}: missing {resource}"
            if target.is_file():
                assert _docs(target)


def test_deployments_are_hardened_and_probed():
    deployments = [d for f in K8S.rglob("*.yaml") for d in _docs(f) if d.get("kind") == "Deployment"]
    assert deployments
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert "grpc" in c["readinessProbe"] and "grpc" in c["livenessProbe"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
