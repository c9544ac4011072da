//! The Helm chart in `helm/identityd`, through the real Helm library (helm-python-sdk, Helm
//! v4's Go SDK) and the Kubernetes API schemas (kubernetes-validate): it lints clean,
//! renders objects that validate under several value sets, refuses bad values, and what it
//! renders really runs: the migration job's command and the server container's command
//! and environment, taken from the rendered objects, start the real binary on PostgreSQL.
//! The deployment guide's Istio and Envoy snippets are checked against the rendered
//! Services. `tests/helm/chart.py` is the thin adapter to the Python packages.

use crate::binary::RunningBinary;
use crate::support::*;
use identityd::api::pb;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/identityd");
/// The oldest Kubernetes the chart supports (Chart.yaml) and the newest schemas at hand.
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const RELEASE: &str = "identityd";
const NAMESPACE: &str = "identity";
const DB_PASSWORD: &str = "s3cret-db-password";
const TOKEN: &str = "idt_api_Q8ypKZ3x7mWn2RtV5bLc9HdJ4fGs6AeYu1NkPo0Xi2T";

/// What the adapter says of one render.
struct Rendered {
    lint: Vec<String>,
    error: Option<String>,
    invalid: Vec<String>,
    unknown_kinds: Vec<String>,
    notes: String,
    /// (template, object) in template order.
    objects: Vec<(String, Value)>,
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(_, o)| o["kind"] == kind)
            .map(|(_, o)| o)
            .collect()
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} rendered"))
    }

    fn has(&self, kind: &str) -> bool {
        !self.all(kind).is_empty()
    }

    /// Rendered cleanly: lint, templates and every object's schema.
    fn assert_valid(&self) {
        assert!(self.error.is_none(), "render failed: {:?}", self.error);
        assert!(self.lint.is_empty(), "lint: {:?}", self.lint);
        assert!(
            self.invalid.is_empty(),
            "invalid objects: {:#?}",
            self.invalid
        );
    }
}

fn python() -> String {
    std::env::var("IDENTITYD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn adapter(args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helm/chart.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "tests/helm/chart.py failed (pip install helm-python-sdk kubernetes-validate; \
         .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("adapter JSON")
}

fn render(values: &Value) -> Rendered {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).expect("values");
    let mut args = vec![
        "render",
        CHART,
        file.to_str().expect("path"),
        RELEASE,
        NAMESPACE,
    ];
    args.extend(KUBE_VERSIONS);
    let out = adapter(&args);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    };
    Rendered {
        lint: strings(&out["lint"]),
        error: out["error"].as_str().map(str::to_owned),
        invalid: strings(&out["invalid"]),
        unknown_kinds: strings(&out["unknown_kinds"]),
        notes: out["notes"].as_str().unwrap_or_default().to_owned(),
        objects: out["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| {
                (
                    o["template"].as_str().expect("template").to_owned(),
                    o["object"].clone(),
                )
            })
            .collect(),
    }
}

/// The least a release needs: a database and a master key.
fn minimal_values() -> Value {
    json!({
        "database": {"url": format!("postgres://identityd:{DB_PASSWORD}@db.example:5432/identityd")},
        "masterKey": TEST_MASTER_KEY,
        "bootstrap": {"apiToken": TOKEN},
    })
}

/// `base` with `patch` merged in, objects key by key.
fn merged(mut base: Value, patch: Value) -> Value {
    fn merge(into: &mut Value, patch: Value) {
        match (into, patch) {
            (Value::Object(into), Value::Object(patch)) => {
                for (k, v) in patch {
                    merge(into.entry(k).or_insert(Value::Null), v);
                }
            }
            (into, patch) => *into = patch,
        }
    }
    merge(&mut base, patch);
    base
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("port {name}"))
}

fn service_port(service: &Value, name: &str) -> Option<u64> {
    service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["port"].as_u64())
}

/// Non-root, read-only, no privilege escalation, no capabilities, no API token.
fn assert_locked_down(workload: &Value, container_name: &str) {
    let pod = &workload["spec"]["template"]["spec"];
    let name = &workload["metadata"]["name"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert!(
        pod["securityContext"]["runAsUser"].as_u64() > Some(0),
        "{name}"
    );
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    let security = &container(workload, container_name)["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(security["runAsNonRoot"], true, "{name}");
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
}

/// Every env entry of a container that is not a secret reference, as text.
fn plain_env(container: &Value) -> String {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["valueFrom"]["secretKeyRef"].is_null())
        .map(Value::to_string)
        .collect()
}

#[test]
fn default_values_render_a_valid_release() {
    let r = render(&minimal_values());
    r.assert_valid();
    assert!(r.unknown_kinds.is_empty(), "{:?}", r.unknown_kinds);
    let kinds: Vec<&str> = r
        .objects
        .iter()
        .map(|(_, o)| o["kind"].as_str().expect("kind"))
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "Job",
        "PodDisruptionBudget",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    for optional in ["HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"] {
        assert!(!r.has(optional), "{optional} is off by default");
    }

    let deployment = r.get("Deployment", "identityd");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_locked_down(deployment, "identityd");
    let server = container(deployment, "identityd");
    assert_eq!(server["args"], json!(["serve"]));
    let grpc = container_port(server, "grpc");
    let http = container_port(server, "http");
    assert_eq!((grpc, http), (50051, 9090));

    // Probes: gRPC health on the gRPC port; liveness never follows the database.
    assert_eq!(
        server["readinessProbe"]["grpc"],
        json!({"port": grpc, "service": ""})
    );
    for probe in ["livenessProbe", "startupProbe"] {
        assert_eq!(
            server[probe]["grpc"],
            json!({"port": grpc, "service": identityd::server::LIVENESS_SERVICE}),
            "{probe}"
        );
    }
    // Graceful termination: out of the Service first, then SIGTERM drains.
    assert_eq!(server["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
    assert!(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64() > Some(5)
    );
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );

    // The ConfigMap's listen addresses are the container's ports; the Service's too.
    let config = &r.get("ConfigMap", "identityd")["data"];
    assert_eq!(config["IDENTITYD_LISTEN"], format!("0.0.0.0:{grpc}"));
    assert_eq!(config["IDENTITYD_HTTP_LISTEN"], format!("0.0.0.0:{http}"));
    assert_eq!(config["IDENTITYD_NO_MIGRATE"], "true");
    let service = r.get("Service", "identityd");
    assert_eq!(service_port(service, "grpc"), Some(grpc));
    assert_eq!(service_port(service, "http"), Some(http));
    let headless = r.get("Service", "identityd-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(service_port(headless, "grpc"), Some(grpc));
    // The Services and the PodDisruptionBudget select the server's pods, never the
    // migration job's: a Job has no scale subresource, so a PDB over its pod would
    // block every eviction while it exists.
    let server_pods = &deployment["spec"]["template"]["metadata"]["labels"];
    let job_pods = &r.get("Job", "identityd-migrate")["spec"]["template"]["metadata"]["labels"];
    let pdb = r.get("PodDisruptionBudget", "identityd");
    for selector in [
        &service["spec"]["selector"],
        &headless["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
        &deployment["spec"]["selector"]["matchLabels"],
    ] {
        let selector = selector.as_object().expect("selector");
        assert!(
            selector.iter().all(|(k, v)| &server_pods[k] == v),
            "{selector:?}"
        );
        assert!(
            !selector.iter().all(|(k, v)| &job_pods[k] == v),
            "{selector:?}"
        );
    }
    // An Istio sidecar would keep the job's pod from ever completing.
    assert_eq!(
        r.get("Job", "identityd-migrate")["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "false"
    );

    // Secrets only in Secrets: no ConfigMap and no plain env value holds one.
    let secret = &r.get("Secret", "identityd")["stringData"];
    assert!(
        secret["database-url"]
            .as_str()
            .is_some_and(|u| u.contains(DB_PASSWORD))
    );
    assert_eq!(secret["master-key"], TEST_MASTER_KEY);
    assert_eq!(secret["bootstrap-api-token"], TOKEN);
    let exposed = r
        .all("ConfigMap")
        .iter()
        .map(|c| c.to_string())
        .chain([plain_env(server), r.notes.clone()])
        .collect::<String>();
    for secret in [DB_PASSWORD, TEST_MASTER_KEY, TOKEN] {
        assert!(!exposed.contains(secret), "a secret outside the Secret");
    }
    let refs: Vec<String> = server["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(refs, ["identityd", "identityd", "identityd"]);

    // Migrations: a hook Job before install and upgrade, not on rollback, with the URL
    // from a hook Secret created before it and gone after.
    let job = r.get("Job", "identityd-migrate");
    let hooks = &job["metadata"]["annotations"];
    assert_eq!(hooks["helm.sh/hook"], "pre-install,pre-upgrade");
    assert_eq!(
        hooks["helm.sh/hook-delete-policy"],
        "before-hook-creation,hook-succeeded"
    );
    assert_locked_down(job, "migrate");
    let migrate = container(job, "migrate");
    assert_eq!(migrate["args"], json!(["migrate"]));
    assert_eq!(
        migrate["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "identityd-migrations"
    );
    let job_secret = r.get("Secret", "identityd-migrations");
    assert_eq!(
        job_secret["metadata"]["annotations"]["helm.sh/hook"],
        hooks["helm.sh/hook"]
    );
    let weight = |o: &Value| -> i64 {
        o["metadata"]["annotations"]["helm.sh/hook-weight"]
            .as_str()
            .and_then(|w| w.parse().ok())
            .expect("hook weight")
    };
    assert!(weight(job_secret) < weight(job));
    assert_eq!(
        job_secret["stringData"]["database-url"],
        secret["database-url"]
    );
    assert!(
        job_secret["stringData"]["master-key"].is_null(),
        "the job needs only the URL"
    );

    // NOTES: how to reach it and where the first admin's token is.
    for needle in [
        "identityd.identity.svc.cluster.local:50051",
        "kubectl -n identity port-forward service/identityd 50051:50051",
        "get secret identityd -o jsonpath='{.data.bootstrap-api-token}'",
    ] {
        assert!(
            r.notes.contains(needle),
            "NOTES lacks {needle}:\n{}",
            r.notes
        );
    }

    // Replicas as asked.
    let five = render(&merged(minimal_values(), json!({"replicaCount": 5})));
    five.assert_valid();
    assert_eq!(five.get("Deployment", "identityd")["spec"]["replicas"], 5);
}

/// Every optional part on, with TLS, mTLS, documents and a Secret the operator manages.
fn everything_values() -> Value {
    json!({
        "replicaCount": 3,
        "existingSecret": {"name": "identityd-credentials",
                           "keys": {"databaseUrl": "url", "masterKey": "key", "bootstrapApiToken": "admin"}},
        "autoscaling": {"enabled": true, "minReplicas": 3, "maxReplicas": 12},
        "networkPolicy": {
            "enabled": true,
            "grpcFrom": [{"namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}}],
            "httpFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "database": {"port": 6432, "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
        },
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
        "tls": {"enabled": true, "secretName": "identityd-tls", "clientCASecretName": "mesh-ca"},
        "scopeCatalog": "  # indented, as the server allows\nread_orders orders:read\n",
        "routePolicy": "default deny\nGET /orders scope read_orders\n",
        "serviceAccount": {"create": false, "name": "identityd-workload"},
        "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
        "podAnnotations": {"sidecar.istio.io/inject": "true"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "auth", "effect": "NoSchedule"}],
        "service": {"type": "ClusterIP", "headless": false, "annotations": {"a": "b"}},
    })
}

#[test]
fn every_optional_part_renders_valid_objects() {
    let r = render(&everything_values());
    r.assert_valid();
    // No schema for the Prometheus Operator's CRD here: checked by hand below.
    assert_eq!(r.unknown_kinds, ["ServiceMonitor"]);

    // The operator's Secret, under its own key names; the chart makes none.
    assert!(!r.has("Secret"), "no chart Secret with existingSecret");
    let deployment = r.get("Deployment", "identityd");
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the autoscaler owns replicas"
    );
    let server = container(deployment, "identityd");
    let refs: Vec<(String, String)> = server["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            Some((
                r["name"].as_str()?.to_owned(),
                r["key"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let theirs = |key: &str| ("identityd-credentials".to_owned(), key.to_owned());
    assert_eq!(refs, [theirs("url"), theirs("key"), theirs("admin")]);
    let migrate = container(r.get("Job", "identityd-migrate"), "migrate");
    assert_eq!(
        migrate["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "identityd-credentials", "key": "url"})
    );
    let job_pod = &r.get("Job", "identityd-migrate")["spec"]["template"]["spec"];
    assert_eq!(job_pod["serviceAccountName"], "identityd-workload");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "identityd-workload"
    );
    assert!(!r.has("ServiceAccount"));

    // TLS: kubelet's gRPC probe has no TLS, so the probes use the operator port.
    assert_eq!(
        server["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    assert_eq!(
        server["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert!(server["readinessProbe"]["grpc"].is_null());
    let config = &r.get("ConfigMap", "identityd")["data"];
    let mounts: BTreeMap<String, String> = server["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().expect("name").to_owned(),
                m["mountPath"].as_str().expect("path").to_owned(),
            )
        })
        .collect();
    for (variable, volume) in [
        ("IDENTITYD_TLS_CERT", "tls"),
        ("IDENTITYD_TLS_KEY", "tls"),
        ("IDENTITYD_TLS_CLIENT_CA", "client-ca"),
        ("IDENTITYD_SCOPE_CATALOG", "documents"),
        ("IDENTITYD_ROUTE_POLICY", "documents"),
    ] {
        let path = config[variable]
            .as_str()
            .unwrap_or_else(|| panic!("{variable}"));
        assert!(
            path.starts_with(&format!("{}/", mounts[volume])),
            "{variable}: {path}"
        );
    }
    let documents = &r.get("ConfigMap", "identityd-documents")["data"];
    assert_eq!(
        documents["scope_catalog.txt"],
        "  # indented, as the server allows\nread_orders orders:read\n"
    );
    assert_eq!(
        documents["route_policy.txt"],
        "default deny\nGET /orders scope read_orders\n"
    );

    let hpa = r.get("HorizontalPodAutoscaler", "identityd");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "identityd");
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(3), json!(12))
    );

    // The job runs before the release's NetworkPolicy exists: it has a hook policy of its
    // own, to DNS and the database, and the server's policy does not select it.
    let job_policy = r.get("NetworkPolicy", "identityd-migrate");
    assert_eq!(
        job_policy["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    let job_pods = &r.get("Job", "identityd-migrate")["spec"]["template"]["metadata"]["labels"];
    let selects = |policy: &Value| {
        policy["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .expect("podSelector")
            .iter()
            .all(|(k, v)| &job_pods[k] == v)
    };
    assert!(selects(job_policy));
    assert!(!selects(r.get("NetworkPolicy", "identityd")));
    assert_eq!(job_policy["spec"]["egress"][1]["ports"][0]["port"], 6432);
    assert!(
        job_policy["spec"]["ingress"].is_null(),
        "no ingress to the job"
    );
    let policy = &r.get("NetworkPolicy", "identityd")["spec"];
    assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy["ingress"][0]["ports"][0]["port"], 50051);
    assert_eq!(
        policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["istio-injection"],
        "enabled"
    );
    assert_eq!(policy["ingress"][1]["ports"][0]["port"], 9090);
    assert_eq!(policy["egress"][1]["ports"][0]["port"], 6432);
    assert_eq!(
        policy["egress"][1]["to"][0]["ipBlock"]["cidr"],
        "10.20.0.0/16"
    );

    // The ServiceMonitor selects the Service and scrapes a port it has.
    let monitor = r.get("ServiceMonitor", "identityd");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let service = r.get("Service", "identityd");
    assert!(
        !r.all("Service")
            .iter()
            .any(|s| s["metadata"]["name"] == "identityd-headless")
    );
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("labels")
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "selector {k}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert!(service_port(service, endpoint["port"].as_str().expect("port")).is_some());
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    assert!(r.notes.contains("(TLS)"), "{}", r.notes);
    assert!(r.notes.contains("key admin"), "{}", r.notes);

    // Bootstrap off: nothing to fetch, and the server is told not to bootstrap.
    let off = render(&merged(
        minimal_values(),
        json!({"bootstrap": {"enabled": false, "apiToken": ""}}),
    ));
    off.assert_valid();
    assert!(off.get("Secret", "identityd")["stringData"]["bootstrap-api-token"].is_null());
    assert_eq!(
        off.get("ConfigMap", "identityd")["data"]["IDENTITYD_NO_BOOTSTRAP"],
        "true"
    );
    assert!(
        off.notes.contains("identityd admin bootstrap"),
        "{}",
        off.notes
    );
    // No migration job: the replicas migrate as they start.
    let no_job = render(&merged(
        minimal_values(),
        json!({"migrations": {"job": false}}),
    ));
    no_job.assert_valid();
    assert!(!no_job.has("Job"));
    assert!(no_job.get("ConfigMap", "identityd")["data"]["IDENTITYD_NO_MIGRATE"].is_null());
    assert!(
        no_job.all("Secret").len() == 1,
        "no hook Secret without the job"
    );
    // A generated first-admin token has the shape the server accepts.
    let generated = render(&merged(
        minimal_values(),
        json!({"bootstrap": {"apiToken": ""}}),
    ));
    generated.assert_valid();
    let token = generated.get("Secret", "identityd")["stringData"]["bootstrap-api-token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(
        identityd::domain::secret::SecretKind::ApiToken.matches_shape(&token),
        "generated token has the API-token shape"
    );
}

#[test]
fn bad_values_fail_before_anything_renders() {
    let cases: [(Value, &str); 22] = [
        (json!({"replicaCount": -1}), "/replicaCount"),
        (
            json!({"config": {"guessingLimits": {"accountFailures": 0}}}),
            "/config/guessingLimits/accountFailures",
        ),
        (
            json!({"config": {"auditRetentionDays": -1}}),
            "/config/auditRetentionDays",
        ),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicas": 3}), "replicas"),
        (
            json!({"config": {"cacheTtlSecs": 0}}),
            "/config/cacheTtlSecs",
        ),
        (json!({"config": {"logFormat": "xml"}}), "/config/logFormat"),
        (
            json!({"config": {"accessTokenTtlSecs": 5}}),
            "/config/accessTokenTtlSecs",
        ),
        (
            json!({"config": {"extAuthz": {"headerPrefix": "x-envoy-user"}}}),
            "/config/extAuthz/headerPrefix",
        ),
        (json!({"masterKey": "too-short"}), "/masterKey"),
        (
            json!({"database": {"url": "mysql://db/x"}}),
            "/database/url",
        ),
        (
            json!({"bootstrap": {"apiToken": "hunter2"}}),
            "/bootstrap/apiToken",
        ),
        (json!({"ports": {"grpc": 70000}}), "/ports/grpc"),
        (json!({"database": {"url": ""}}), "database.url is required"),
        (json!({"masterKey": ""}), "masterKey is required"),
        (
            json!({"tls": {"enabled": true}}),
            "tls.enabled needs tls.secretName",
        ),
        (
            json!({"autoscaling": {"enabled": true, "minReplicas": 5, "maxReplicas": 2}}),
            "minReplicas must not exceed",
        ),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"podDisruptionBudget": {"maxUnavailable": 0}}),
            "/podDisruptionBudget/maxUnavailable",
        ),
        (
            json!({"podDisruptionBudget": {"maxUnavailable": "0%"}}),
            "/podDisruptionBudget/maxUnavailable",
        ),
        (
            json!({"preStopSleepSeconds": 30}),
            "preStopSleepSeconds must be shorter",
        ),
        (
            json!({"existingSecret": {"name": "mine"}}),
            "bootstrap.apiToken is not used with existingSecret.name",
        ),
    ];
    for (patch, needle) in cases {
        let r = render(&merged(minimal_values(), patch.clone()));
        let error = r.error.unwrap_or_else(|| panic!("{patch} rendered"));
        assert!(error.contains(needle), "{patch}: {error}");
        assert!(r.objects.is_empty(), "{patch}: nothing rendered");
        assert!(
            !error.contains(DB_PASSWORD) && !error.contains(TEST_MASTER_KEY),
            "{error}"
        );
    }
}

/// Names with a suffix stay within Kubernetes' 63 characters, however long the base.
#[test]
fn long_names_stay_within_limits() {
    let long = "i".repeat(63);
    let r = render(&merged(
        minimal_values(),
        json!({"fullnameOverride": long, "scopeCatalog": "read_orders orders:read\n",
               "networkPolicy": {"enabled": true}}),
    ));
    r.assert_valid();
    for (_, object) in &r.objects {
        let name = object["metadata"]["name"].as_str().expect("name");
        assert!(name.len() <= 63, "{} {name}", object["kind"]);
    }
    assert_eq!(r.objects.len(), 12, "every suffixed object rendered");
}

/// A pod's environment as the kubelet builds it: the ConfigMaps of `envFrom`, then `env`,
/// with secret references resolved from the rendered Secrets.
fn pod_env(r: &Rendered, container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("configMapRef");
        for (k, v) in r.get("ConfigMap", name)["data"].as_object().expect("data") {
            env.insert(k.clone(), v.as_str().expect("string").to_owned());
        }
    }
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().expect("name").to_owned();
        let value = match entry["value"].as_str() {
            Some(v) => v.to_owned(),
            None => {
                let reference = &entry["valueFrom"]["secretKeyRef"];
                let secret = r.get("Secret", reference["name"].as_str().expect("secret"));
                secret["stringData"][reference["key"].as_str().expect("key")]
                    .as_str()
                    .expect("secret value")
                    .to_owned()
            }
        };
        env.insert(name, value);
    }
    env
}

/// Writes the ConfigMap volumes of a pod under `root` and points the environment's paths
/// there, as the kubelet's mounts would.
fn mount_config_maps(
    r: &Rendered,
    workload: &Value,
    root: &Path,
    env: &mut BTreeMap<String, String>,
) {
    let pod = &workload["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("volume of the mount");
        let config_map = volume["configMap"]["name"]
            .as_str()
            .expect("ConfigMap volume");
        let mount_path = mount["mountPath"].as_str().expect("mountPath");
        let dir = root.join(mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("mount dir");
        for (file, text) in r.get("ConfigMap", config_map)["data"]
            .as_object()
            .expect("data")
        {
            std::fs::write(dir.join(file), text.as_str().expect("text")).expect("write");
        }
        for value in env.values_mut() {
            if let Some(rest) = value.strip_prefix(mount_path) {
                *value = format!("{}{rest}", dir.display());
            }
        }
    }
}

/// A container's `args`: the image's entrypoint is the binary.
fn command_args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect()
}

fn run(args: &[&str], env: &BTreeMap<String, String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("run identityd")
}

/// The release as Kubernetes would run it, minus Kubernetes: the rendered Job, then the
/// rendered server container, with the rendered environment, on a real PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_release_runs_on_postgresql() {
    let db = TestDb::new(Backend::Postgres).await;
    let catalog = include_str!("../../src/defaults/scope_catalog.txt");
    let policy = include_str!("../../src/defaults/route_policy.txt");
    let r = render(&json!({
        "database": {"url": db.url},
        "masterKey": TEST_MASTER_KEY,
        "bootstrap": {"apiToken": TOKEN},
        "scopeCatalog": catalog,
        "routePolicy": policy,
        // Cheap hashing for the test; the point is that every setting parses.
        "config": {"argon2": {"memoryKib": 64, "iterations": 1}, "logFormat": "json", "cacheCapacity": 2_000_000},
    }));
    r.assert_valid();
    let deployment = r.get("Deployment", "identityd");
    let server = container(deployment, "identityd");
    let mounts = tempfile::tempdir().expect("mount root");
    let mut server_env = pod_env(&r, server);
    mount_config_maps(&r, deployment, mounts.path(), &mut server_env);
    let args = command_args(server);
    assert_eq!(args, ["serve"]);

    // Before the migration job: the server refuses the empty database.
    let early = run(&args, &server_env);
    assert!(!early.status.success());
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(stderr.contains("run `identityd migrate` first"), "{stderr}");

    let job = container(r.get("Job", "identityd-migrate"), "migrate");
    let migrated = run(&command_args(job), &pod_env(&r, job));
    assert!(migrated.status.success(), "{migrated:?}");

    // Two replicas of the server container, as rendered, started together on loopback
    // ports of their own: both serve, and exactly one creates the first admin.
    let env: Vec<(&str, &str)> = server_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (running, other) = std::thread::scope(|scope| {
        let start =
            || scope.spawn(|| RunningBinary::start_replica(&["--log-format", "text"], &env));
        let (a, b) = (start(), start());
        (a.join().expect("replica a"), b.join().expect("replica b"))
    });
    let url = format!("http://{}", running.address);
    let wait = std::time::Duration::from_secs(10);
    for service in ["", identityd::server::LIVENESS_SERVICE] {
        assert_eq!(
            await_health(&url, service, ServingStatus::Serving, wait).await,
            ServingStatus::Serving,
            "probe service {service:?}"
        );
    }
    let ready = Command::new("curl")
        .args(["-s", &format!("http://{}/readyz", running.http_address)])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&ready.stdout).trim(), "ready");

    // The first admin's token is the one in the rendered Secret.
    let mut identity = pb::identity_client::IdentityClient::connect(url)
        .await
        .expect("connect");
    let verdict = identity
        .check_permission(pb::CheckPermissionRequest {
            authorization: basic("admin", TOKEN),
            permissions: vec!["users:read".into()],
            ..Default::default()
        })
        .await
        .expect("check")
        .into_inner();
    assert_verdict(&verdict, 200, "ok");
    let logs = [running.stop(), other.stop()];
    let created = logs
        .iter()
        .filter(|log| log.contains("created the first admin with the API token given"))
        .count();
    assert_eq!(created, 1, "{logs:#?}");
    for secret in [TOKEN, TEST_MASTER_KEY] {
        assert!(!logs.concat().contains(secret), "a secret in the log");
    }
}

/// The guide's Istio and Envoy snippets point at what the chart renders and the server
/// serves.
#[test]
fn the_guide_matches_the_chart() {
    let r = render(&minimal_values());
    let service = r.get("Service", "identityd");
    let grpc = service_port(service, "grpc").expect("grpc port");
    let host = format!("identityd.{NAMESPACE}.svc.cluster.local");
    let headless = format!("identityd-headless.{NAMESPACE}.svc.cluster.local");
    assert!(
        r.has("Service") && r.get("Service", "identityd-headless")["spec"]["clusterIP"] == "None"
    );

    let guide = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/identityd/README.md");
    let blocks = adapter(&["yaml-blocks", guide]);
    let documents: Vec<&Value> = blocks
        .as_array()
        .expect("blocks")
        .iter()
        .flat_map(|b| b.as_array().expect("documents"))
        .collect();
    let find = |pointer: &str| -> Vec<&Value> {
        documents
            .iter()
            .filter_map(|d| d.pointer(pointer))
            .collect()
    };

    // Istio: the provider names the Service and its gRPC port; the policy uses it.
    let providers = find("/meshConfig/extensionProviders");
    assert_eq!(providers.len(), 1, "one Istio mesh config");
    let provider = &providers[0][0];
    let ext = &provider["envoyExtAuthzGrpc"];
    assert_eq!(ext["service"], host.as_str());
    assert_eq!(ext["port"], grpc);
    assert_eq!(ext["failOpen"], false);
    let policies: Vec<&&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "AuthorizationPolicy")
        .collect();
    assert!(!policies.is_empty(), "an AuthorizationPolicy");
    for policy in policies {
        assert_eq!(policy["apiVersion"], "security.istio.io/v1");
        assert_eq!(policy["spec"]["action"], "CUSTOM");
        assert_eq!(policy["spec"]["provider"]["name"], provider["name"]);
        // Without rules a CUSTOM policy never matches, and nothing is checked.
        assert!(
            policy["spec"]["rules"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        );
        assert!(
            !policy["spec"]["selector"].is_null(),
            "scoped to workloads, not identityd"
        );
    }

    // Envoy: the ext_authz filter's cluster is the headless Service over HTTP/2.
    let filters = find("/http_filters");
    assert_eq!(filters.len(), 1, "one Envoy filter chain");
    let filter = &filters[0][0];
    assert_eq!(filter["name"], "envoy.filters.http.ext_authz");
    let config = &filter["typed_config"];
    assert_eq!(config["failure_mode_allow"], false);
    assert_eq!(config["transport_api_version"], "V3");
    let cluster_name = &config["grpc_service"]["envoy_grpc"]["cluster_name"];
    let clusters = find("/clusters");
    let cluster = clusters
        .iter()
        .flat_map(|c| c.as_array().expect("clusters"))
        .find(|c| &c["name"] == cluster_name)
        .expect("the filter's cluster is defined");
    let endpoint = cluster
        .pointer("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .expect("socket address");
    assert_eq!(endpoint["address"], headless.as_str());
    assert_eq!(endpoint["port_value"], grpc);
    assert_eq!(cluster["type"], "STRICT_DNS");
    assert!(
        cluster
            .pointer("/typed_extension_protocol_options/envoy.extensions.upstreams.http.v3.HttpProtocolOptions/explicit_http_config/http2_protocol_options")
            .is_some(),
        "gRPC needs HTTP/2 upstream"
    );

    // The identity headers the guide tells upstreams to trust are the server's.
    let text = std::fs::read_to_string(guide).expect("guide");
    let prefix = r.get("ConfigMap", "identityd")["data"]["IDENTITYD_EXT_AUTHZ_HEADER_PREFIX"]
        .as_str()
        .expect("prefix")
        .to_owned();
    assert_eq!(
        prefix,
        identityd::api::ext_authz::ExtAuthzConfig::default().ext_authz_header_prefix
    );
    for header in ["id", "kind", "name", "scopes", "credential-id"] {
        assert!(
            text.contains(&format!("`{prefix}{header}`")),
            "guide names {prefix}{header}"
        );
    }
}

/// The image runs as the user the chart expects, with the ports the chart probes.
#[test]
fn the_dockerfile_matches_the_chart() {
    let dockerfile = include_str!("../../Dockerfile");
    let r = render(&minimal_values());
    let deployment = r.get("Deployment", "identityd");
    let uid = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        .as_u64()
        .expect("uid");
    let runtime = dockerfile
        .rsplit("\nFROM ")
        .next()
        .expect("a runtime stage");
    assert!(
        runtime.contains(&format!("\nUSER {uid}:{uid}\n")),
        "numeric non-root user"
    );
    let server = container(deployment, "identityd");
    let (grpc, http) = (
        container_port(server, "grpc"),
        container_port(server, "http"),
    );
    assert!(runtime.contains(&format!("\nEXPOSE {grpc} {http}\n")));
    assert!(runtime.contains(&format!("IDENTITYD_LISTEN=0.0.0.0:{grpc}")));
    assert!(runtime.contains(&format!("IDENTITYD_HTTP_LISTEN=0.0.0.0:{http}")));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/identityd\"]"));
    assert!(runtime.contains("CMD [\"serve\"]"));
    // The image's build is the one CI checks: locked dependencies, release profile.
    assert!(dockerfile.contains("cargo build --release --locked --bin identityd"));
}
