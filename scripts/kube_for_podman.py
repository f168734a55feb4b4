#!/usr/bin/python3
"""Turns a rendered overlay of deploy/k8s into what Debian's podman 4.3 `kube play` runs
(scripts/kube_check.sh). podman plays Pods, Deployments, ConfigMaps and PersistentVolumeClaims
only, so, and nothing else changes:
- a StatefulSet becomes one Deployment per replica (podman runs one pod a Deployment), named as
  Kubernetes names the StatefulSet's pods, its volumeClaimTemplates claims of their own;
- an emptyDir is named after its pod (podman 4.3 shares one of a name among all pods);
- a Secret volume becomes a hostPath to <secrets>/<secretName> (podman 4.3 has no Secret kind;
  the check writes the files there);
- $(VAR) in args is expanded from the container's fieldRef env (metadata.name), as Kubernetes does;
- a probe's named port becomes its number (the ports are dropped: nothing is published);
- pods use the host's network (no Services in podman), so ports must be free on loopback;
- Namespaces, Services and PodDisruptionBudgets are dropped (nothing in podman reads them).

With --pod-network (the cluster overlay: replicas that all listen on the same ports) the pods
keep a network of their own instead, podman's kube network, whose DNS (aardvark-dns) answers
each pod's name with its address, and the names are made to match Kubernetes':
- every workload becomes a plain Pod (restartPolicy Always): a StatefulSet's replicas named
  <statefulset>-<ordinal> as Kubernetes names them, a Deployment named after the Service that
  selects it (a Deployment's replicas: one pod), so a Service's name resolves to its pod;
- in ConfigMaps, a stable per-pod name of a headless Service
  (<pod>.<service>.<namespace>.svc.cluster.local, HAProxy's backends in overlays/cluster) and a
  Service's name (<service>.<namespace>.svc.cluster.local) become the pod's name, all that
  podman's DNS knows. Nothing else in a ConfigMap changes.

usage: kube_for_podman.py [--pod-network] RENDERED.yaml SECRETS_DIR [EXTRA.yaml ...] > PLAY.yaml
"""
import re
import sys

import yaml


def named_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}


def pod_spec_for_podman(spec, pod_name, secrets_dir, host_network=True):
    if host_network:
        spec["hostNetwork"] = True
    # podman 4.3 makes an emptyDir a volume named as the pod's volume, one for every pod that
    # names it alike (every pod's `tmp`): prefixed with the pod's name, each pod has its own.
    renamed = {}
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            renamed[volume["name"]] = volume["name"] = f"{pod_name}-{volume['name']}"
    for container in spec.get("containers", []):
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            secret = volume.pop("secret")
            volume["hostPath"] = {"path": f"{secrets_dir}/{secret['secretName']}", "type": "Directory"}
    for container in spec.get("containers", []):
        ports = named_ports(container)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            for handler in container.get(probe, {}).values():
                if isinstance(handler, dict) and isinstance(handler.get("port"), str):
                    handler["port"] = ports.get(handler["port"], handler["port"])
        container.pop("ports", None)  # nothing is published: host network, or pod to pod by name
        env = {}
        for e in container.get("env", []):
            ref = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if ref == "metadata.name":
                env[e["name"]] = pod_name
        container["args"] = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                             for a in container.get("args", [])]


def copy(obj):
    return yaml.safe_load(yaml.safe_dump(obj))


def statefulset_for_podman(sts, secrets_dir, pod_network):
    out = []
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"].get("replicas", 1)):
        pod_name = f"{name}-{ordinal}"
        template = copy(sts["spec"]["template"])
        volumes = template["spec"].setdefault("volumes", [])
        for claim in sts["spec"].get("volumeClaimTemplates", []):
            claim_name = f"{claim['metadata']['name']}-{pod_name}"
            out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim_name}, "spec": claim["spec"]})
            volumes.append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}})
        pod_spec_for_podman(template["spec"], pod_name, secrets_dir, host_network=not pod_network)
        labels = dict(template["metadata"].get("labels", {}))
        if pod_network:
            out.append(as_pod(template, pod_name))
        else:
            out.append({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": pod_name, "labels": labels},
                        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}})
    return out


def as_pod(template, name):
    spec = template["spec"]
    spec["restartPolicy"] = "Always"
    metadata = {"name": name, "labels": dict(template["metadata"].get("labels", {}))}
    if template["metadata"].get("annotations"):
        metadata["annotations"] = template["metadata"]["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def service_selecting(services, labels):
    for svc in services:
        selector = svc.get("spec", {}).get("selector") or {}
        if svc["spec"].get("clusterIP") != "None" and selector and \
                all(labels.get(k) == v for k, v in selector.items()):
            return svc["metadata"]["name"]
    return None


def cluster_names_to_pod_names(text, statefulsets, services):
    """<pod>.<headless>.<ns>.svc.cluster.local -> <pod>; <service>.<ns>.svc.cluster.local -> <service>."""
    for sts in statefulsets:
        headless = sts["spec"].get("serviceName")
        if headless:
            text = re.sub(r"\b([a-z0-9-]+)\." + re.escape(headless) + r"\.[a-z0-9-]+\.svc\.cluster\.local\b",
                          r"\1", text)
    for svc in services:
        text = re.sub(r"\b" + re.escape(svc["metadata"]["name"]) + r"\.[a-z0-9-]+\.svc\.cluster\.local\b",
                      svc["metadata"]["name"], text)
    return text


def main():
    argv = sys.argv[1:]
    pod_network = "--pod-network" in argv
    argv = [a for a in argv if a != "--pod-network"]
    if len(argv) < 2:
        sys.exit(__doc__)
    rendered, secrets_dir, extras = argv[0], argv[1], argv[2:]
    docs = []
    for path in [rendered] + extras:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    services = [d for d in docs if d["kind"] == "Service"]
    statefulsets = [d for d in docs if d["kind"] == "StatefulSet"]
    out = []
    for doc in docs:
        doc.get("metadata", {}).pop("namespace", None)
        kind = doc["kind"]
        if kind in ("Namespace", "Service", "PodDisruptionBudget"):
            continue
        if kind == "StatefulSet":
            out += statefulset_for_podman(doc, secrets_dir, pod_network)
            continue
        if kind == "ConfigMap" and pod_network:
            doc["data"] = {k: cluster_names_to_pod_names(v, statefulsets, services)
                           for k, v in doc.get("data", {}).items()}
        if kind == "Deployment":
            template = doc["spec"]["template"]
            if pod_network:
                name = service_selecting(services, template["metadata"].get("labels", {})) or doc["metadata"]["name"]
                pod_spec_for_podman(template["spec"], name, secrets_dir, host_network=False)
                doc = as_pod(template, name)
            else:
                doc["spec"]["replicas"] = 1
                pod_spec_for_podman(template["spec"], doc["metadata"]["name"], secrets_dir)
        elif kind == "Pod":
            pod_spec_for_podman(doc["spec"], doc["metadata"]["name"], secrets_dir, host_network=not pod_network)
        out.append(doc)
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
