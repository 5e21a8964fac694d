//! The operator's kit in `manifests/monitoring/`: the alert rules, the
//! prometheus-operator overlay and the Grafana dashboard.
//!
//! The plain tests check the files against each other, the book's runbook
//! pages (`docs/src/runbooks/`) and the
//! metrics the server registers. The ignored one,
//! `dashboard_queries_answer_from_a_real_prometheus`, starts a real
//! Prometheus (the `prometheus` binary: `$PROMETHEUS`, else from `PATH`)
//! scraping a real `persistence-webhook serve` under a short load of mixed
//! reviews and evaluates every panel's queries through Prometheus's HTTP
//! API. `.ci/run` runs it with
//! `cargo test --locked --test monitoring -- --ignored`; without a
//! Prometheus it fails, loudly.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{Spawned, Volume};
use serde_json::Value;
use serde_yaml::Value as Yaml;

/// Where each runbook_url points, up to the page's path in the repository.
const RUNBOOK_BASE: &str = "https://github.com/OWNER/persistence-webhook/blob/main/";

/// The folder of the book that holds one runbook page per alert.
const RUNBOOKS: &str = "docs/src/runbooks";

/// Metrics the rules or the dashboard read that this server does not
/// register itself: `up` (Prometheus) and kube-state-metrics.
const FROM_ELSEWHERE: &[&str] = &["up", "kube_deployment_status_replicas_available"];

/// Registered in the in-cluster certificate mode only: checked against
/// `serve::metrics(true)`, not scraped from the file-mode server of
/// the Prometheus test.
const IN_CLUSTER_ONLY: &[&str] = &["persistence_webhook_ca_expiry_timestamp_seconds"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("manifests/monitoring/dashboard.json"))
        .expect("dashboard.json is JSON")
}

/// Every alerting rule of rules.yaml.
fn alerts() -> Vec<Yaml> {
    let rules = yaml("manifests/monitoring/rules.yaml");
    let groups = rules["groups"].as_sequence().expect("groups");
    let all: Vec<Yaml> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect();
    assert!(all.iter().all(|r| r["alert"].is_string()), "only alerts");
    all
}

/// (panel title, refId, expr, legendFormat) of every query in the dashboard.
fn panel_queries() -> Vec<(String, String, String, String)> {
    let dash = dashboard();
    let panels = dash["panels"].as_array().expect("panels");
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("a panel title");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let field = |k: &str| {
                t[k].as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without {k}"))
                    .to_owned()
            };
            out.push((
                title.to_owned(),
                field("refId"),
                field("expr"),
                field("legendFormat"),
            ));
        }
    }
    out
}

/// The names `persistence_webhook_*` (and the few others) a PromQL text reads.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while let Some(at) = promql[i..].find("persistence_webhook_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(promql[start..end].to_owned());
        i = end;
    }
    for other in ["up{", "kube_deployment_status_replicas_available"] {
        if promql.contains(other) {
            names.insert(other.trim_end_matches('{').to_owned());
        }
    }
    names
}

#[test]
fn the_prometheus_rule_says_what_rules_yaml_says() {
    let plain = yaml("manifests/monitoring/rules.yaml");
    let crd = yaml("manifests/monitoring/prometheus-operator/prometheusrule.yaml");
    assert_eq!(crd["kind"], Yaml::from("PrometheusRule"));
    assert_eq!(
        crd["spec"], plain,
        "prometheusrule.yaml's spec differs from rules.yaml: regenerate it (the command is in its header)"
    );
}

#[test]
fn every_alert_has_a_severity_its_annotations_and_a_promtool_test() {
    let alerts = alerts();
    assert!(alerts.len() >= 11, "{} alerts", alerts.len());
    let tests = std::fs::read_dir(repo("manifests/monitoring/tests"))
        .expect("manifests/monitoring/tests")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("a test file"))
        .collect::<String>();
    for rule in &alerts {
        let name = rule["alert"].as_str().expect("a name");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: {key} {text:?}");
        }
        // The promtool tests exercise it.
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name}: no promtool test"
        );
    }
}

/// Each alert has one page of the book, `docs/src/runbooks/<name, lowercase>.md`,
/// headed by the alert's name and listed in the book's SUMMARY.md, and its
/// `runbook_url` names exactly that page's path in the repository.
#[test]
fn every_alert_has_its_runbook_page_and_its_runbook_url_names_it() {
    let summary = read("docs/src/SUMMARY.md");
    let index = read(&format!("{RUNBOOKS}/README.md"));
    let mut pages = BTreeSet::new();
    for rule in &alerts() {
        let name = rule["alert"].as_str().expect("a name");
        let page = format!("{RUNBOOKS}/{}.md", name.to_lowercase());
        let text = std::fs::read_to_string(repo(&page))
            .unwrap_or_else(|e| panic!("{name}: no runbook page {page}: {e}"));
        assert_eq!(
            text.lines().next(),
            Some(format!("# {name}").as_str()),
            "{name}: {page} does not start with the heading # {name}"
        );
        assert!(
            text.lines().skip(1).any(|l| !l.trim().is_empty()),
            "{name}: {page} is empty"
        );
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        assert_eq!(
            url,
            format!("{RUNBOOK_BASE}{page}"),
            "{name}: runbook_url does not name its page"
        );
        let in_book = page.strip_prefix("docs/src/").expect("under docs/src");
        assert!(
            summary.contains(&format!("]({in_book})")),
            "{name}: {in_book} is not in docs/src/SUMMARY.md"
        );
        let in_index = page
            .strip_prefix(&format!("{RUNBOOKS}/"))
            .expect("in runbooks");
        assert!(
            index.contains(&format!("]({in_index})")),
            "{name}: {RUNBOOKS}/README.md does not list {in_index}"
        );
        pages.insert(page);
    }
    // No page for an alert that is gone.
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo(RUNBOOKS))
        .expect(RUNBOOKS)
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .filter(|f| f != "README.md")
        .map(|f| format!("{RUNBOOKS}/{f}"))
        .collect();
    assert_eq!(
        on_disk, pages,
        "runbook pages without an alert, or alerts without a page"
    );
}

#[test]
fn rules_and_dashboard_read_only_metrics_the_server_registers() {
    let page = persistence_webhook::serve::metrics(true).0.render();
    let exported: BTreeSet<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut read = BTreeSet::new();
    for rule in alerts() {
        read.extend(metric_names(rule["expr"].as_str().expect("expr")));
        for text in rule["annotations"]
            .as_mapping()
            .expect("annotations")
            .values()
        {
            read.extend(metric_names(text.as_str().unwrap_or_default()));
        }
    }
    for (_, _, expr, _) in panel_queries() {
        read.extend(metric_names(&expr));
    }
    for name in &read {
        if FROM_ELSEWHERE.contains(&name.as_str()) {
            continue;
        }
        assert!(
            exported.contains(name.as_str()),
            "{name} is read by an alert or a panel, but the server exports no such sample; it exports {exported:#?}"
        );
    }
    assert!(read.len() > 10, "{read:?}");
}

#[test]
fn the_service_monitor_scrapes_the_base_services_metrics_port() {
    let kust = yaml("manifests/monitoring/prometheus-operator/kustomization.yaml");
    let resources: Vec<&str> = kust["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path"))
        .collect();
    for r in &resources {
        assert!(
            repo("manifests/monitoring/prometheus-operator")
                .join(r)
                .exists(),
            "{r} is listed but missing"
        );
    }
    let base = yaml("manifests/base/kustomization.yaml");
    assert_eq!(kust["namespace"], base["namespace"]);
    let monitor = yaml("manifests/monitoring/prometheus-operator/servicemonitor.yaml");
    assert!(resources.contains(&"servicemonitor.yaml"));
    assert!(resources.contains(&"prometheusrule.yaml"));
    assert_eq!(monitor["kind"], Yaml::from("ServiceMonitor"));
    // The Service gets its labels from the base kustomization.
    let base_labels = &base["labels"][0]["pairs"];
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&base_labels[k.as_str().expect("a key")], v, "label {k:?}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        base["namespace"]
    );
    let service = yaml("manifests/base/service.yaml");
    let port = &monitor["spec"]["endpoints"][0]["port"];
    let target = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| &p["name"] == port)
        .unwrap_or_else(|| panic!("the Service has no port named {port:?}"));
    assert_eq!(target["port"], Yaml::from(9090));
    // The alerts expect the job the ServiceMonitor gives: the Service's name.
    assert_eq!(
        service["metadata"]["name"],
        Yaml::from("persistence-webhook")
    );
    assert!(read("manifests/monitoring/rules.yaml").contains("up{job=\"persistence-webhook\"}"));
}

#[test]
fn dashboard_panels_use_the_datasource_variable_and_filter_by_job_and_pod() {
    let dash = dashboard();
    let vars: BTreeSet<&str> = dash["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| v["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        vars,
        BTreeSet::from(["datasource", "job", "instance"]),
        "variables"
    );
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_i64().expect("an id")), "duplicate id");
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        assert!(p["gridPos"]["w"].as_i64().is_some());
    }
    let queries = panel_queries();
    // Titles the book's dashboard page describes.
    for required in [
        "Reviews per second by outcome",
        "Denied and unchanged reviews per second by reason",
        "Request latency (headers to answer)",
        "In flight and review slots",
        "Reloads in range",
        "Serving certificate expires in",
        "Config generation",
    ] {
        assert!(
            queries.iter().any(|(t, ..)| t == required),
            "no panel {required:?}"
        );
    }
    for (title, ref_id, expr, _) in &queries {
        for selector in ["$job", "$instance"] {
            assert!(
                expr.contains(selector),
                "{title}/{ref_id} does not filter by {selector}"
            );
        }
    }
}

// --- A real Prometheus -----------------------------------------------------

/// A Prometheus on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> PathBuf {
    let bin = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"));
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => bin,
        other => panic!(
            "no runnable Prometheus at {} ({other:?}): install it (Debian: apt-get install -y prometheus) or set PROMETHEUS",
            bin.display()
        ),
    }
}

/// A free loopback port (Prometheus cannot report the port it bound to 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Prometheus {
    /// Scrapes `target` every second as job `persistence-webhook`.
    fn scraping(target: SocketAddr) -> Prometheus {
        let bin = prometheus_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: persistence-webhook\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query at `at` (unix seconds): the result vector.
    async fn query(&self, client: &reqwest::Client, promql: &str, at: f64) -> Vec<Value> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let answer: Value = client
            .get(url)
            .query(&[("query", promql), ("time", &at.to_string())])
            .send()
            .await
            .unwrap_or_else(|e| panic!("querying {promql}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("querying {promql}: not JSON: {e}"));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        assert_eq!(answer["data"]["resultType"], "vector", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .expect("a result")
            .clone()
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

fn fixture(case: &str) -> Vec<u8> {
    std::fs::read(repo(&format!("tests/fixtures/{case}/review.json")))
        .unwrap_or_else(|e| panic!("fixture {case}: {e}"))
}

/// Labels the legend format `{{a}} {{b}}` names.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split("}}").next())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// A series' labels and value.
fn series(v: &Value) -> (BTreeMap<String, String>, f64) {
    let labels = v["metric"]
        .as_object()
        .expect("metric")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let value = v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a value");
    (labels, value)
}

/// What one panel query must answer after the load, beyond a series per
/// result carrying its legend's labels.
type Check = fn(&[(BTreeMap<String, String>, f64)]) -> Result<(), String>;

fn has(
    rows: &[(BTreeMap<String, String>, f64)],
    want: &[(&str, &str)],
    ok: fn(f64) -> bool,
) -> Result<(), String> {
    let found = rows.iter().find(|(labels, _)| {
        want.iter()
            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(v))
    });
    match found {
        Some((_, value)) if ok(*value) => Ok(()),
        Some((_, value)) => Err(format!("{want:?} has the value {value}")),
        None => Err(format!("no series {want:?}")),
    }
}

fn one_positive_latency(rows: &[(BTreeMap<String, String>, f64)]) -> Result<(), String> {
    match rows {
        [(labels, v)] if labels.is_empty() && v.is_finite() && *v > 0.0 && *v < 1.0 => Ok(()),
        _ => Err("one unlabelled latency, above 0 and under a second".into()),
    }
}

fn expectations() -> BTreeMap<(&'static str, &'static str), Check> {
    let mut m: BTreeMap<(&str, &str), Check> = BTreeMap::new();
    m.insert(("Reviews per second by outcome", "A"), |r| {
        for outcome in ["patched", "unchanged", "denied"] {
            has(r, &[("outcome", outcome)], |v| v > 0.0)?;
        }
        has(r, &[("outcome", "invalid")], |v| v == 0.0)
    });
    m.insert(
        ("Denied and unchanged reviews per second by reason", "A"),
        |r| {
            has(
                r,
                &[("outcome", "denied"), ("reason", "unknown-store")],
                |v| v > 0.0,
            )?;
            has(
                r,
                &[("outcome", "unchanged"), ("reason", "opted-out")],
                |v| v > 0.0,
            )?;
            match r.len() {
                2 => Ok(()),
                n => Err(format!("{n} reasons, only the two seen expected")),
            }
        },
    );
    for id in ["A", "B", "C"] {
        m.insert(
            ("Request latency (headers to answer)", id),
            one_positive_latency,
        );
    }
    for id in ["A", "B"] {
        m.insert(("Review compute time", id), one_positive_latency);
    }
    m.insert(("In flight and review slots", "A"), |r| {
        has(r, &[], |v| (0.0..=64.0).contains(&v))
    });
    m.insert(("In flight and review slots", "B"), |r| {
        has(r, &[], |v| (0.0..=3.0).contains(&v))
    });
    m.insert(("In flight and review slots", "C"), |r| {
        has(r, &[], |v| v == 3.0)
    });
    m.insert(("Timeouts per second by phase", "A"), |r| {
        for phase in ["body", "slot", "review"] {
            has(r, &[("phase", phase)], |v| v == 0.0)?;
        }
        Ok(())
    });
    m.insert(("Reloads in range", "A"), |r| {
        has(r, &[("kind", "config"), ("result", "success")], |v| v > 0.0)?;
        has(r, &[("kind", "config"), ("result", "failure")], |v| v > 0.0)?;
        has(r, &[("kind", "certificate"), ("result", "success")], |v| {
            v == 0.0
        })?;
        has(r, &[("kind", "certificate"), ("result", "failure")], |v| {
            v == 0.0
        })
    });
    m.insert(("Last reload successful", "A"), |r| {
        has(r, &[("kind", "config")], |v| v == 1.0)?;
        has(r, &[("kind", "certificate")], |v| v == 1.0)
    });
    m.insert(("Config generation", "A"), |r| has(r, &[], |v| v == 2.0));
    m.insert(("Serving certificate expires in", "A"), |r| {
        has(r, &[], |v| v > 3000.0 && v <= 3600.0)
    });
    m.insert(("Open connections by port", "A"), |r| {
        has(r, &[("port", "webhook")], |v| v >= 0.0)?;
        has(r, &[("port", "metrics")], |v| v >= 0.0)
    });
    // One client, nothing over its share: every reason is there (the
    // counters exist from the start), none refused or reclaimed.
    m.insert(
        ("Connections refused and closed per second by reason", "A"),
        |r| {
            has(r, &[("port", "webhook"), ("reason", "peer-share")], |v| {
                v == 0.0
            })?;
            has(r, &[("port", "metrics"), ("reason", "peer-share")], |v| {
                v == 0.0
            })
        },
    );
    m.insert(
        ("Connections refused and closed per second by reason", "B"),
        |r| {
            for reason in [
                "header-timeout",
                "idle",
                "handshake-failed",
                "answer-timeout",
            ] {
                has(r, &[("port", "webhook"), ("reason", reason)], |v| v >= 0.0)?;
            }
            has(r, &[("port", "webhook"), ("reason", "reclaimed")], |v| {
                v == 0.0
            })
        },
    );
    m
}

/// One review posted; the answer's `response`.
async fn post(client: &reqwest::Client, addr: SocketAddr, body: &[u8]) -> Value {
    common::answer_to(client, addr.port(), body.to_vec()).await["response"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus binary; .ci/run runs it"]
async fn dashboard_queries_answer_from_a_real_prometheus() {
    let config = read("tests/fixtures/config.yaml");
    let pki = common::pki();
    let mut vol = Volume::serving(&config, &pki);
    let server = Spawned::serving(
        &vol,
        &["--reload-interval", "100ms", "--max-in-flight", "3"],
        "info",
    );
    let prometheus = Prometheus::scraping(server.metrics);
    let started = Instant::now();
    let http = common::plain_client();
    // Up once Prometheus has scraped the server.
    let up = "up{job=\"persistence-webhook\"} == 1";
    let mut ready = false;
    while started.elapsed() < common::HANG {
        if let Ok(r) = http
            .get(format!("http://{}/api/v1/query", prometheus.addr))
            .query(&[("query", up)])
            .send()
            .await
        {
            let v: Value = r.json().await.unwrap_or_default();
            if v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ready,
        "Prometheus did not scrape the server within {:?}; its log:\n{}",
        common::HANG,
        prometheus.log()
    );
    println!("prometheus up and scraping after {:?}", started.elapsed());

    // The three kinds of review, each checked once.
    let client = common::client(&[&pki]);
    let (patched, unchanged, denied) = (
        fixture("defaults"),
        fixture("opted-out"),
        fixture("deny-unknown-store"),
    );
    let r = post(&client, server.addr, &patched).await;
    assert!(r["allowed"] == true && r["patch"].is_string(), "{r}");
    let r = post(&client, server.addr, &unchanged).await;
    assert!(r["allowed"] == true && r["patch"].is_null(), "{r}");
    let r = post(&client, server.addr, &denied).await;
    assert_eq!(r["allowed"], false, "{r}");

    // About 5 s of load, 3 reviews at a time; a refused config, then a good
    // one, half way.
    let load_start = now_unix();
    let mut sent = 3usize;
    let mut reloaded = false;
    let load = Instant::now();
    while load.elapsed() < Duration::from_secs(5) {
        let batch = [&patched, &unchanged, &denied].map(|body| {
            let (client, body) = (client.clone(), body.clone());
            let addr = server.addr;
            tokio::spawn(async move { post(&client, addr, &body).await })
        });
        for task in batch {
            task.await.expect("a review task");
        }
        sent += 3;
        if !reloaded && load.elapsed() > Duration::from_millis(2000) {
            reloaded = true;
            vol.publish(&[
                ("config.yaml", "data: [not, a, map]\n"),
                ("tls.crt", &pki.cert_pem),
                ("tls.key", &pki.key_pem),
            ]);
            common::eventually("the refused config counted", || async {
                common::metric_at(
                    server.metrics,
                    "persistence_webhook_last_reload_successful{kind=\"config\"}",
                )
                .await
                    == Some(0.0)
            })
            .await;
            // Scraped while refused, then fixed.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            vol.publish(&[
                ("config.yaml", &config),
                ("tls.crt", &pki.cert_pem),
                ("tls.key", &pki.key_pem),
            ]);
            common::eventually("the good config taken", || async {
                common::metric_at(server.metrics, "persistence_webhook_config_generation ").await
                    == Some(2.0)
            })
            .await;
        }
    }
    println!(
        "load: {sent} reviews in {:?} (a third each patched, unchanged, denied)",
        load.elapsed()
    );
    // Every request timed, once.
    assert_eq!(
        common::metric_at(
            server.metrics,
            "persistence_webhook_request_duration_seconds_count"
        )
        .await,
        Some(sent as f64)
    );
    // Two more scrapes after the load, then every query at one instant.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let at = now_unix();
    let window = format!("{}s", (at - load_start).ceil() as u64 + 2);

    let mut checks = expectations();
    let queries = panel_queries();
    assert_eq!(
        queries
            .iter()
            .map(|(t, r, ..)| (t.as_str(), r.as_str()))
            .collect::<BTreeSet<_>>(),
        checks.keys().copied().collect::<BTreeSet<_>>(),
        "every panel query has an expectation here, and no other"
    );
    for (title, ref_id, expr, legend) in &queries {
        let promql = expr
            .replace("$__rate_interval", &window)
            .replace("$__range", &window)
            .replace("$job", "persistence-webhook")
            .replace("$instance", ".*");
        assert!(
            !promql.contains('$'),
            "{title}/{ref_id}: a variable left in {promql}"
        );
        let rows: Vec<_> = prometheus
            .query(&http, &promql, at)
            .await
            .iter()
            .map(series)
            .collect();
        assert!(!rows.is_empty(), "{title}/{ref_id}: no data for {promql}");
        for label in legend_labels(legend) {
            for (labels, _) in &rows {
                assert!(
                    labels.contains_key(&label),
                    "{title}/{ref_id}: a series without the legend's label {label}: {labels:?}"
                );
            }
        }
        let check = checks
            .remove(&(title.as_str(), ref_id.as_str()))
            .expect("an expectation");
        if let Err(why) = check(&rows) {
            panic!("{title}/{ref_id}: {why}\n{promql}\n{rows:#?}");
        }
        println!("{title}/{ref_id}: {} series", rows.len());
    }

    // Every persistence_webhook_* name an alert reads is one Prometheus
    // scraped (with the suffixes the exposition gave it).
    let scraped: BTreeSet<String> = prometheus
        .query(
            &http,
            "count by (__name__) ({__name__=~\"persistence_webhook_.+\"})",
            at,
        )
        .await
        .iter()
        .map(|v| v["metric"]["__name__"].as_str().expect("a name").to_owned())
        .collect();
    for rule in alerts() {
        for name in metric_names(rule["expr"].as_str().expect("expr")) {
            if FROM_ELSEWHERE.contains(&name.as_str()) || IN_CLUSTER_ONLY.contains(&name.as_str()) {
                continue;
            }
            assert!(
                scraped.contains(&name),
                "alert {}: {name} is not among the scraped {scraped:#?}",
                rule["alert"].as_str().unwrap_or_default()
            );
        }
    }
    // And the slot limit is the flag's.
    let limit = prometheus
        .query(&http, "persistence_webhook_review_slots_limit", at)
        .await;
    assert_eq!(series(&limit[0]).1, 3.0);
    println!("whole test: {:?}", started.elapsed());
}
