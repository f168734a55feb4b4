#!/usr/bin/python3
"""Turns a rendered overlay of deploy/k8s into what Debian's podman 4.3 `kube play` runs
(scripts/kube_check.sh). podman plays Pods, Deployments, ConfigMaps and PersistentVolumeClaims
only, so, and nothing else changes:
- a StatefulSet becomes one Deployment per replica (podman runs one pod a Deployment), named as
  Kubernetes names the StatefulSet's pods, its volumeClaimTemplates claims of their own;
- a Secret volume becomes a hostPath to <secrets>/<secretName> (podman 4.3 has no Secret kind;
  the check writes the files there);
- $(VAR) in args is expanded from the container's fieldRef env (metadata.name), as Kubernetes does;
- pods use the host's network (no Services in podman), so ports must be free on loopback;
- Namespaces, Services and PodDisruptionBudgets are dropped (nothing in podman reads them).

usage: kube_for_podman.py RENDERED.yaml SECRETS_DIR [EXTRA.yaml ...] > PLAY.yaml
"""
import re
import sys

import yaml


def pod_spec_for_podman(spec, pod_name, secrets_dir):
    spec["hostNetwork"] = True
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            secret = volume.pop("secret")
            volume["hostPath"] = {"path": f"{secrets_dir}/{secret['secretName']}", "type": "Directory"}
    for container in spec.get("containers", []):
        container.pop("ports", None)  # podman maps no ports on the host's network
        env = {}
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if ref == "metadata.name":
                env[e["name"]] = pod_name
        container["args"] = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                             for a in container.get("args", [])]


def statefulset_as_deployments(sts, secrets_dir):
    out = []
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"].get("replicas", 1)):
        pod_name = f"{name}-{ordinal}"
        template = yaml.safe_load(yaml.safe_dump(sts["spec"]["template"]))
        volumes = template["spec"].setdefault("volumes", [])
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            claim_name = f"{claim['metadata']['name']}-{pod_name}"
            out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim_name}, "spec": claim["spec"]})
            volumes.append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}})
        pod_spec_for_podman(template["spec"], pod_name, secrets_dir)
        labels = dict(template["metadata"].get("labels", {}))
        out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": pod_name, "labels": labels},
                    "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}})
    return out


def main():
    rendered, secrets_dir, extras = sys.argv[1], sys.argv[2], sys.argv[3:]
    docs = []
    for path in [rendered] + extras:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    out = []
    for doc in docs:
        doc.get("metadata", {}).pop("namespace", None)
        kind = doc["kind"]
        if kind in ("Namespace", "Service", "PodDisruptionBudget"):
            continue
        if kind == "StatefulSet":
            out += statefulset_as_deployments(doc, secrets_dir)
            continue
        if kind == "Deployment":
            doc["spec"]["replicas"] = 1
            pod_spec_for_podman(doc["spec"]["template"]["spec"], doc["metadata"]["name"], secrets_dir)
        elif kind == "Pod":
            pod_spec_for_podman(doc["spec"], doc["metadata"]["name"], secrets_dir)
        out.append(doc)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
