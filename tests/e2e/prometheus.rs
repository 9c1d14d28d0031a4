//! The Grafana dashboard and the Prometheus rules against a real Prometheus
//! (Debian's `prometheus`, which `.ci/run` installs), on a loopback port and
//! a data directory of its own, scraping a real service under a small
//! workload: every query of the dashboard's panels returns data, every
//! series an alert or a panel names exists, and Prometheus takes every
//! expression (`.ci/dashboard-queries` lists them).

use crate::common::servers::free_port;
use crate::common::{ALICE, DEADLINE, TestApp, wait_until_within};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A Prometheus scraping one target every second, with the service's rules
/// evaluated every second; killed and its directory removed when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let top = env!("CARGO_MANIFEST_DIR");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prometheus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {top}/deployments/prometheus/rules.yaml\n\
             scrape_configs:\n  - job_name: products\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (apt-get install prometheus; .ci/run installs it)");
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The instant query's answer: `Err` with Prometheus's error if it
    /// refused the expression, else the result's vector (or scalar).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| format!("prometheus did not answer: {e}"))?;
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body["error"].to_string());
        }
        Ok(match &body["data"]["result"] {
            Value::Array(samples) => samples.clone(),
            scalar => vec![scalar.clone()],
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every PromQL expression of the dashboard and of the rules.
fn expressions() -> Vec<String> {
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.ci/dashboard-queries"
        ))
        .output()
        .expect("python3 runs .ci/dashboard-queries");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON string a line"))
        .collect()
}

/// The series an expression names: the service's metrics and the rules'
/// recorded series.
fn series(expr: &str) -> Vec<&str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("products_") || word.starts_with("products:"))
        .collect()
}

/// An alert's condition (or a panel's threshold), which is empty while all
/// is well: only the series it names must exist.
fn is_condition(expr: &str) -> bool {
    [" > ", " < ", " == ", " and "]
        .iter()
        .any(|op| expr.contains(op))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_query_returns_data_from_a_real_prometheus_scraping_the_service()
{
    let app = TestApp::spawn().await;
    // A small workload: products stored and read, a message set aside,
    // answers of several statuses, a sign-in refused.
    for (id, name) in [(1, "pen"), (2, "toy"), (3, "lamp")] {
        app.publish(format!(
            r#"{{"id":{id},"name":"{name}","price":10,"manufacturer":"acme"}}"#
        ))
        .await;
    }
    app.publish("not a product").await;
    app.wait_for_product(3).await;
    for path in [
        "/",
        "/products/1",
        "/products/7",
        "/products/abc",
        "/product?id=2",
    ] {
        app.get(path).await;
    }
    app.sign_in_refused((ALICE.0, "not her password")).await;

    let target = app.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);
    let expressions = expressions();
    assert!(expressions.len() >= 40, "{expressions:?}");

    for expr in &expressions {
        for name in series(expr) {
            let query = format!("count({name})");
            wait_until_within(
                &format!("{name} (in {expr:?}) has data"),
                DEADLINE,
                || async {
                    matches!(prometheus.query(&query).await, Ok(samples) if !samples.is_empty())
                },
            )
            .await;
        }
        if let Err(error) = prometheus.query(expr).await {
            panic!("Prometheus refuses {expr:?}: {error}\n{}", prometheus.log());
        }
        if is_condition(expr) {
            continue;
        }
        // A rate needs two scrapes in its window; a recording rule one
        // evaluation after them.
        wait_until_within(&format!("{expr:?} returns data"), DEADLINE, || async {
            matches!(prometheus.query(expr).await, Ok(samples) if !samples.is_empty())
        })
        .await;
    }
}
