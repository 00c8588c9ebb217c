#!/usr/bin/env python3
"""check_deploy.py DEPLOY_DIR — offline checks of the deployment files in deploy/: every YAML
document parses, and the fields a cluster depends on are what lfm2c serve answers (probe paths,
ports, the metrics the autoscaler and the inference gateway read, a drain timeout shorter than
the grace period, an API key). Exit 0 when all hold, else 1 with one line per problem."""
import pathlib
import re
import sys

import yaml

d = pathlib.Path(sys.argv[1])
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


docs = {}
for f in sorted((d / "k8s").glob("*.yaml")):
    for doc in yaml.safe_load_all(f.read_text()):
        if doc:
            docs.setdefault(doc["kind"], []).append(doc)
            need("apiVersion" in doc and "metadata" in doc, f"{f.name}: {doc['kind']} lacks apiVersion/metadata")

dep = docs.get("Deployment", [None])[0]
need(dep is not None, "no Deployment")
if dep:
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    args = c.get("args", [])
    port = c["ports"][0]["containerPort"]
    need(c["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness probe must be GET /ready")
    need(c["livenessProbe"]["httpGet"]["path"] == "/health", "liveness probe must be GET /health")
    need(dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
         "selector does not match the pod labels")
    need("--api-key-file" in args or "--api-key" in args, "the replica must require an API key")
    need("--drain-timeout" in args, "the replica must drain on SIGTERM (--drain-timeout)")
    if "--drain-timeout" in args:
        drain = int(args[args.index("--drain-timeout") + 1])
        need(drain < spec.get("terminationGracePeriodSeconds", 30),
             "--drain-timeout must be shorter than terminationGracePeriodSeconds")
    res = c["resources"]
    need("memory" in res["requests"] and "cpu" in res["requests"], "resource requests for cpu and memory")
    need(port == 8080, "container port 8080 (the image's --port)")

svc = docs.get("Service", [None])[0]
need(svc is not None and svc["spec"]["selector"] == {"app": "lfm2c"}, "Service selects app=lfm2c")

hpa = docs.get("HorizontalPodAutoscaler", [None])[0]
need(hpa is not None, "no HorizontalPodAutoscaler")
if hpa:
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    need("lfm2c_queue_depth" in names, "the autoscaler scales on lfm2c_queue_depth (queue depth)")
    need(hpa["spec"]["scaleTargetRef"]["name"] == (dep or {}).get("metadata", {}).get("name"), "HPA targets the Deployment")

pool = docs.get("InferencePool", [None])[0]
need(pool is not None, "no InferencePool")
if pool:
    need(pool["apiVersion"] == "inference.networking.k8s.io/v1", "InferencePool apiVersion")
    need(pool["spec"]["selector"]["matchLabels"] == {"app": "lfm2c"}, "InferencePool selects app=lfm2c")
    need([p["number"] for p in pool["spec"]["targetPorts"]] == [8080], "InferencePool targets port 8080")
    need("name" in pool["spec"]["endpointPickerRef"], "InferencePool names its endpoint picker")

# the image starts the server on 0.0.0.0 with metrics; the manifests pass the model and a key
df = (d / "Dockerfile").read_text()
need(re.search(r'ENTRYPOINT \[.*"serve".*"--host", "0.0.0.0".*"--metrics"', df) is not None,
     "Dockerfile ENTRYPOINT serves on 0.0.0.0 with --metrics")
need("/ready" in df, "Dockerfile HEALTHCHECK uses /ready")
# the image's build sees every top-level folder the build reads (CMakeLists.txt names them)
cml = (d.parent / "CMakeLists.txt").read_text()
for top in sorted(set(re.findall(r"\$\{CMAKE_SOURCE_DIR\}/([A-Za-z0-9_.-]+)/", cml))):
    need(re.search(rf"^COPY {re.escape(top)} {re.escape(top)}$", df, re.M) is not None,
         f"Dockerfile copies {top}/ (CMakeLists.txt reads it)")

hp = (d / "haproxy.cfg").read_text()
need("option httpchk GET /ready" in hp, "haproxy checks /ready")
need(re.search(r"^\s*stick on req\.hdr\(X-Session-Id\)", hp, re.M) and re.search(r"^\s*stick-table type string", hp, re.M),
     "haproxy sticks a session (X-Session-Id) to one replica")
need(re.search(r"^\s*balance roundrobin", hp, re.M), "haproxy spreads new sessions round-robin (a redispatch avoids the failed replica)")
need(re.search(r"retry-on .*503", hp) and "option redispatch" in hp, "haproxy retries 503s elsewhere")

for p in problems:
    print(f"deploy: {p}")
sys.exit(1 if problems else 0)
