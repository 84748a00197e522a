#!/usr/bin/python3
"""The deployment manifests say what meterd needs: deploy/kubernetes/ (kustomization, ConfigMap,
Deployment, PodDisruptionBudget, Secret template) and deploy/compose.yaml parse, and carry the
essentials — probe paths and ports, scrape annotations, the hardening, secrets only by
reference, a configuration that names only keys meterd knows and copies of the price and tier
tables identical to deploy/. Needs python3-yaml.

    tests/deploy/test_manifests.py          check
    tests/deploy/test_manifests.py --sync   first copy deploy/prices.ini and deploy/tiers.ini
                                            into deploy/kubernetes/configmap.yaml

When the built meterd is there ($METERD_BUILD/meterd, default build/meterd), the ConfigMap's
meterd.ini also passes `meterd check-config`."""
import configparser
import os
import re
import subprocess
import sys
import tempfile

import yaml

SOURCE = os.environ.get("METERD_SOURCE",
                        os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("METERD_BUILD", os.path.join(SOURCE, "build"))
DEPLOY = os.path.join(SOURCE, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
PORT = 9187
SECRET_ENV = {"PGPASSWORD": "pgpassword", "METERD_KAFKA_SASL_PASSWORD": "kafka-sasl-password"}
SECRETISH = re.compile(r"pass|secret|token|credential|private|(^|_)key$", re.I)
PLACEHOLDER = "REPLACE_ME"
TABLES = ("prices.ini", "tiers.ini")

failures = []
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        failures.append(what)
        print("FAIL:", what)
    return ok


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_all(path):
    return [d for d in yaml.safe_load_all(read(path)) if d is not None]


def sync_tables():
    """Rewrites the prices.ini and tiers.ini blocks of configmap.yaml from deploy/."""
    path = os.path.join(K8S, "configmap.yaml")
    lines = read(path).splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^  ([a-z.]+): \|\n$", lines[i])
        if m and m.group(1) in TABLES:
            out.append(lines[i])
            i += 1
            while i < len(lines) and (lines[i].startswith("    ") or lines[i] == "\n"):
                i += 1
            for line in read(os.path.join(DEPLOY, m.group(1))).splitlines(keepends=True):
                out.append("    " + line if line.strip() else "\n")
            continue
        out.append(lines[i])
        i += 1
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(out)
    print("synced %s from deploy/%s" % (path, " and deploy/".join(TABLES)))


def ini_keys(text):
    """section.key -> value of an INI text, in meterd's dialect (';'/'#' comments)."""
    cp = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"),
                                   inline_comment_prefixes=None, strict=True)
    cp.optionxform = str
    cp.read_string(text)
    return {"%s.%s" % (s, k): v for s in cp.sections() for k, v in cp.items(s, raw=True)}


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def check_objects(kust, objects):
    for name, doc in objects:
        check(isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= set(doc),
              "%s: apiVersion, kind and metadata" % name)
        check("namespace" not in doc.get("metadata", {}),
              "%s: namespace-agnostic (no metadata.namespace)" % name)
    check("namespace" not in kust, "kustomization.yaml sets no namespace")
    listed = set(kust.get("resources", []))
    for f in ("configmap.yaml", "deployment.yaml", "pdb.yaml"):
        check(f in listed, "kustomization.yaml lists %s" % f)
    for f in listed:
        check(os.path.exists(os.path.join(K8S, f)), "kustomization resource %s exists" % f)
    for f in listed:
        for d in load_all(os.path.join(K8S, f)):
            check(d.get("kind") != "Secret",
                  "kustomization.yaml applies no Secret (%s holds one)" % f)


def check_configmap(cm, mount_path):
    data = cm.get("data", {})
    for f in ("meterd.ini",) + TABLES:
        check(f in data, "ConfigMap has %s" % f)
    for f in TABLES:
        check(data.get(f) == read(os.path.join(DEPLOY, f)),
              "ConfigMap %s is identical to deploy/%s (run %s --sync)" % (f, f, sys.argv[0]))
    ini = data.get("meterd.ini", "")
    keys = ini_keys(ini)
    reference = ini_keys(read(os.path.join(DEPLOY, "meterd.ini")))
    for k in keys:
        if k.startswith(("kafka.consumer.", "kafka.producer.")):
            continue
        check(k in reference, "ConfigMap meterd.ini: %s is a key of deploy/meterd.ini" % k)
    check(keys.get("http.listen") == "0.0.0.0:%d" % PORT,
          "ConfigMap http.listen = 0.0.0.0:%d (reachable by kubelet and Prometheus)" % PORT)
    admin = keys.get("http.admin_listen", "")
    check(admin == "" or admin.startswith(("127.", "[::1]", "localhost")),
          "ConfigMap http.admin_listen stays on loopback")
    for k in ("meter.prices_file", "meter.tiers_file"):
        v = keys.get(k, "")
        check(os.path.dirname(v) == mount_path and os.path.basename(v) in data,
              "ConfigMap %s points at a file of the ConfigMap under %s" % (k, mount_path))
    for k, v in keys.items():
        if SECRETISH.search(k.split(".")[-1]) and not k.endswith("_file"):
            check(v == "", "ConfigMap meterd.ini: %s carries no secret" % k)
    check(not re.search(r"password\s*=|://[^/\s:@]+:[^@\s]+@", keys.get("postgres.dsn", ""), re.I),
          "ConfigMap postgres.dsn holds no password")
    return ini


def check_deployment(dep, cm_name, secret):
    spec = dep["spec"]
    tpl = spec["template"]
    pod = tpl["spec"]
    check(spec.get("replicas") == 2, "Deployment replicas 2")
    sel = spec["selector"]["matchLabels"]
    check(all(tpl["metadata"]["labels"].get(k) == v for k, v in sel.items()),
          "Deployment selector matches its pod labels")
    ann = tpl["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", "pod annotation prometheus.io/scrape \"true\"")
    check(ann.get("prometheus.io/port") == str(PORT), "pod annotation prometheus.io/port \"%d\"" % PORT)
    check(ann.get("prometheus.io/path", "/metrics") == "/metrics", "prometheus.io/path /metrics")
    check(pod.get("terminationGracePeriodSeconds") == 20,
          "terminationGracePeriodSeconds 20 (the 9 s drain plus a margin)")
    check(pod.get("automountServiceAccountToken") is False, "no service account token mounted")
    check(pod.get("enableServiceLinks") is False, "no service-link variables in the environment")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod runAsNonRoot")
    check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, "pod runAsUser non-zero")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp RuntimeDefault")

    containers = pod["containers"]
    check(len(containers) == 1, "one container")
    c = containers[0]
    ports = {p.get("name"): p for p in c.get("ports", [])}
    check(ports.get("http", {}).get("containerPort") == PORT, "container port http = %d" % PORT)

    def probe_port_ok(probe):
        port = probe["httpGet"]["port"]
        return port == PORT or (port in ports and ports[port]["containerPort"] == PORT)

    for kind, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"),
                       ("startupProbe", "/livez")):
        p = c.get(kind)
        if check(p and "httpGet" in p, "%s is an HTTP probe" % kind):
            check(p["httpGet"].get("path") == path, "%s path %s" % (kind, path))
            check(probe_port_ok(p), "%s on port %d" % (kind, PORT))
    sp = c.get("startupProbe", {})
    check(sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3) >= 120,
          "startupProbe allows at least 2 minutes (first migration)")

    res = c.get("resources", {})
    check("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}),
          "resources.requests cpu and memory")
    check("memory" in res.get("limits", {}), "resources.limits memory")

    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(sc.get("privileged", False) is False, "not privileged")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    check(not sc.get("capabilities", {}).get("add"), "no capabilities added")
    check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "container runAsNonRoot")
    check(sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
          "container seccomp RuntimeDefault")

    env = {e["name"]: e for e in c.get("env", [])}
    for name, key in SECRET_ENV.items():
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        if check(ref is not None, "%s comes from a secretKeyRef" % name):
            check(ref.get("name") == secret["metadata"]["name"],
                  "%s refers to the Secret of secret.example.yaml" % name)
            check(ref.get("key") == key and key in secret.get("stringData", {}),
                  "%s uses key %s of the Secret template" % (name, key))
    for name, e in env.items():
        if SECRETISH.search(name) and not name.endswith("_FILE"):
            check("value" not in e, "env %s has no literal value" % name)
    check(not c.get("envFrom"), "no envFrom (every variable named)")

    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cfg = [n for n, v in vols.items() if v.get("configMap", {}).get("name") == cm_name]
    mount_path = None
    if check(len(cfg) == 1 and cfg[0] in mounts, "the ConfigMap is mounted"):
        m = mounts[cfg[0]]
        mount_path = m["mountPath"]
        check(mount_path == "/etc/meterd", "ConfigMap mounted at /etc/meterd")
        check("subPath" not in m, "no subPath (kubelet updates the files)")
        check(m.get("readOnly") is True, "ConfigMap mounted read-only")
    return mount_path


def check_pdb(pdb, dep):
    sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(sel and all(labels.get(k) == v for k, v in sel.items()),
          "PodDisruptionBudget selects the Deployment's pods")
    spec = pdb["spec"]
    check(spec.get("maxUnavailable") == 1 or spec.get("minAvailable") == 1,
          "PodDisruptionBudget keeps one of two pods")


def check_secret_template(secret):
    check(secret.get("kind") == "Secret", "secret.example.yaml is a Secret")
    check("data" not in secret, "Secret template has no base64 data")
    for k, v in secret.get("stringData", {}).items():
        check(v == PLACEHOLDER, "Secret template %s is the placeholder %s" % (k, PLACEHOLDER))


def check_no_plaintext(path):
    """No password-looking assignment with a value anywhere but the template's placeholders."""
    for n, line in enumerate(read(path).splitlines(), 1):
        s = line.strip()
        if s.startswith(("#", ";")):
            continue
        m = re.match(r"^-?\s*\"?([A-Za-z0-9_.-]+)\"?\s*[:=]\s*(\S.*)?$", s)
        if not m or not m.group(2):
            continue
        k, v = m.group(1), m.group(2).strip().strip("\"'")
        if re.search(r"password|secret", k, re.I) and not re.search(r"_FILE$|_file$", k):
            check(v in (PLACEHOLDER, "|", ">") or v.startswith(("/", "{")),
                  "%s:%d: %s has no literal secret" % (os.path.relpath(path, SOURCE), n, k))


def check_config_with_meterd(ini):
    meterd = os.path.join(BUILD, "meterd")
    if not os.access(meterd, os.X_OK):
        print("skip: %s not built, ConfigMap meterd.ini not run through check-config" % meterd)
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METERD_", "PG"))}
    with tempfile.NamedTemporaryFile("w", suffix=".ini") as f:
        f.write(ini)
        f.flush()
        r = subprocess.run([meterd, "-c", f.name,
                            "--meter.prices_file=" + os.path.join(DEPLOY, "prices.ini"),
                            "--meter.tiers_file=" + os.path.join(DEPLOY, "tiers.ini"),
                            "check-config"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30)
    check(r.returncode == 0, "meterd check-config accepts the ConfigMap's meterd.ini: %s" %
          r.stderr.strip())


def check_compose():
    path = os.path.join(DEPLOY, "compose.yaml")
    doc = yaml.safe_load(read(path))
    svc = doc.get("services", {})
    for s in ("kafka", "kafka-init", "postgres", "meterd"):
        check(s in svc, "compose: service %s" % s)
    if not all(s in svc for s in ("kafka", "kafka-init", "postgres", "meterd")):
        return
    kenv = svc["kafka"].get("environment", {})
    check(str(kenv.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() == "false",
          "compose: Kafka auto-creation off")
    check("controller" in str(kenv.get("KAFKA_PROCESS_ROLES", "")), "compose: Kafka in KRaft mode")
    init = yaml.safe_dump(svc["kafka-init"])
    for t in ("usage.events", "usage.dlq", "meter.decisions", "budget.events"):
        check(t in init, "compose: kafka-init creates %s" % t)
    for s in ("kafka", "postgres", "meterd"):
        check("healthcheck" in svc[s], "compose: %s has a healthcheck" % s)
    dep = svc["meterd"].get("depends_on", {})
    check(dep.get("postgres", {}).get("condition") == "service_healthy",
          "compose: meterd waits for a healthy postgres")
    check(dep.get("kafka-init", {}).get("condition") == "service_completed_successfully",
          "compose: meterd waits for the topics")
    check(svc["kafka-init"].get("depends_on", {}).get("kafka", {}).get("condition") ==
          "service_healthy", "compose: kafka-init waits for a healthy kafka")
    build = svc["meterd"].get("build", {})
    check(os.path.normpath(os.path.join(DEPLOY, build.get("context", "."),
                                        build.get("dockerfile", ""))) ==
          os.path.join(DEPLOY, "Containerfile"), "compose: meterd built from deploy/Containerfile")
    check(svc["postgres"].get("image", "").split("/")[-1].startswith("postgres:15"),
          "compose: PostgreSQL 15")
    check(re.search(r"apache/kafka:3\.7", svc["kafka"].get("image", "")) is not None,
          "compose: apache/kafka 3.7")
    for s in ("postgres", "meterd"):
        env = svc[s].get("environment", {})
        for k, v in env.items():
            if SECRETISH.search(k) and not k.endswith("_FILE"):
                check(False, "compose: %s sets %s literally" % (s, k))
    check("POSTGRES_PASSWORD_FILE" in svc["postgres"].get("environment", {}),
          "compose: the PostgreSQL password comes from a secret file")
    check(svc["meterd"].get("read_only") is True, "compose: meterd read-only root")
    check("ALL" in svc["meterd"].get("cap_drop", []), "compose: meterd drops all capabilities")


def main():
    if "--sync" in sys.argv[1:]:
        sync_tables()
    files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
    objects = []
    for f in files:
        try:
            docs = load_all(os.path.join(K8S, f))
        except yaml.YAMLError as e:
            check(False, "%s parses: %s" % (f, e))
            continue
        check(bool(docs), "%s is not empty" % f)
        if f != "kustomization.yaml":
            objects += [(f, d) for d in docs]
        check_no_plaintext(os.path.join(K8S, f))
    kust = load_all(os.path.join(K8S, "kustomization.yaml"))[0]
    check_objects(kust, objects)
    kinds = by_kind(d for _, d in objects)
    for k in ("ConfigMap", "Deployment", "PodDisruptionBudget", "Secret"):
        check(len(kinds.get(k, [])) == 1, "exactly one %s" % k)
    if not failures:
        cm, dep = kinds["ConfigMap"][0], kinds["Deployment"][0]
        secret, pdb = kinds["Secret"][0], kinds["PodDisruptionBudget"][0]
        check_secret_template(secret)
        mount = check_deployment(dep, cm["metadata"]["name"], secret)
        ini = check_configmap(cm, mount)
        check_pdb(pdb, dep)
        check_config_with_meterd(ini)
    check_compose()
    check_no_plaintext(os.path.join(DEPLOY, "compose.yaml"))
    print("%d passed, %d failed" % (checks - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
