//! `GET /metrics`: after a known workload, the counters say what happened.
//! Every series carries the app's instance name (`app`); each test reads its
//! own app's series only.

use crate::common::{TestApp, instance_name, lock_products, unique_settings, wait_until};
use actors::supervisor::RestartBudget;
use std::collections::BTreeMap;
use std::time::Duration;

/// One scrape of `/metrics`, as series (name and labels) and values.
struct Scrape {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    async fn of(app: &TestApp) -> Scrape {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = response.text().await.unwrap();
        let instance = instance_name(&app.settings);
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                    None => (series, BTreeMap::new()),
                };
                (name.to_owned(), labels, value)
            })
            .filter(|(_, labels, _)| labels.get("app") == Some(&instance))
            .collect();
        Scrape { series }
    }

    /// The sum of the series named `name` whose labels include `labels`
    /// (`None` if there is none).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name} with {labels:?} in {:#?}", self.series))
    }
}

/// `k="v",k2="v2"` (the values here hold no quotes or commas).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_message_counters_and_histograms_match_a_known_workload() {
    let mut settings = unique_settings();
    settings.cache.invalidate_every = Duration::from_secs(1);
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    for id in 1..=3 {
        app.publish(format!(
            r#"{{"id":{id},"name":"pen {id}","price":10,"manufacturer":"bic"}}"#
        ))
        .await;
    }
    app.publish("not json").await;
    app.publish(r#"{"name":"no price","manufacturer":"bic"}"#)
        .await;
    app.wait_for_list_len(3).await;
    wait_until("both invalid messages are set aside", || async {
        app.rejected_count().await == 2
    })
    .await;
    // Answered (acked or terminated) once the consumer has nothing pending.
    wait_until("every message is answered", || async {
        app.consumer_info().await.num_ack_pending == 0
    })
    .await;

    let m = Scrape::of(&app).await;
    assert_eq!(m.value("products_messages_consumed_total", &[]), 5.0);
    assert_eq!(m.value("products_messages_stored_total", &[]), 3.0);
    let set_aside = "products_messages_set_aside_total";
    assert_eq!(m.value(set_aside, &[("reason", "invalid")]), 2.0);
    assert_eq!(m.value(set_aside, &[("reason", "postgres")]), 0.0);
    assert_eq!(m.value("products_messages_redelivered_total", &[]), 0.0);
    assert_eq!(m.value("products_messages_retried_total", &[]), 0.0);
    // However the five were split into batches, every one was in one.
    assert_eq!(m.value("products_batch_size_messages_sum", &[]), 5.0);
    let batches = m.value("products_batch_size_messages_count", &[]);
    assert!((1.0..=5.0).contains(&batches), "{batches} batches");
    assert_eq!(
        m.value("products_store_duration_seconds_count", &[]),
        batches
    );
    assert_eq!(
        m.value("products_store_duration_seconds_bucket", &[("le", "+Inf")]),
        batches
    );

    // The cache's own writes come back through the change feed: its lag is measured.
    wait_until("the change feed's lag is measured", || async {
        Scrape::of(&app)
            .await
            .get("products_change_feed_lag_seconds_count", &[])
            .is_some_and(|count| count >= 1.0)
    })
    .await;
    wait_until("the cache was invalidated on its timer", || async {
        Scrape::of(&app)
            .await
            .get("products_cache_invalidations_total", &[])
            .is_some_and(|count| count >= 1.0)
    })
    .await;
    let m = Scrape::of(&app).await;
    assert!(m.value("products_cache_entries", &[]) >= 3.0);
    assert!(m.value("products_cache_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn the_consumer_lag_is_sampled_while_messages_wait() {
    let mut settings = unique_settings();
    settings.ingest.batch_size = 1;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    let lock = lock_products(&app.db().await).await;
    for id in 1..=3 {
        app.publish(format!(
            r#"{{"id":{id},"name":"pen","price":10,"manufacturer":"bic"}}"#
        ))
        .await;
    }
    // One message is being stored (and waits on the lock), the next is
    // pulled ahead meanwhile, the last waits its turn.
    wait_until("the lag is sampled: 1 pending, 2 in flight", || async {
        let m = Scrape::of(&app).await;
        m.get("products_consumer_pending_messages", &[]) == Some(1.0)
            && m.get("products_consumer_ack_pending_messages", &[]) == Some(2.0)
    })
    .await;
    drop(lock);
    app.wait_for_list_len(3).await;
    wait_until("the lag is sampled at 0", || async {
        let m = Scrape::of(&app).await;
        m.get("products_consumer_pending_messages", &[]) == Some(0.0)
            && m.get("products_consumer_ack_pending_messages", &[]) == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn cache_reads_and_http_requests_are_counted_by_route_and_status() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;

    // The list page reads the cache too: before the counts start.
    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(app.get("/static/style.css").await.status(), 200);
    let before = Scrape::of(&app).await;
    // Two hits, then a miss for an unknown id, then a hit (absence is remembered).
    for path in [
        "/product?id=1",
        "/product?id=1",
        "/product?id=424242",
        "/product?id=424242",
    ] {
        app.get(path).await;
    }
    assert_eq!(app.get("/product?id=abc").await.status(), 400);
    assert_eq!(app.get("/no/such/path").await.status(), 404);
    assert_eq!(app.get("/no-such-page").await.status(), 404);
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    let url = format!("{}/no/such/path", app.base);
    app.http.request(brew, url).send().await.unwrap();
    let after = Scrape::of(&app).await;

    let delta = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    assert_eq!(delta("products_cache_hits_total"), 3.0);
    assert_eq!(delta("products_cache_misses_total"), 1.0);

    let requests = "products_http_requests_total";
    let route = |route, status| [("route", route), ("method", "GET"), ("status", status)];
    assert_eq!(after.value(requests, &route("/product", "200")), 2.0);
    assert_eq!(after.value(requests, &route("/product", "404")), 2.0);
    assert_eq!(after.value(requests, &route("/product", "400")), 1.0);
    // Paths no route serves make one series, whatever the paths.
    assert_eq!(after.value(requests, &route("unmatched", "404")), 2.0);
    assert_eq!(after.value(requests, &route("/", "200")), 1.0);
    // Methods are as few as the standard ones, whatever clients send.
    let other = [("route", "unmatched"), ("method", "other")];
    assert_eq!(after.value(requests, &other), 1.0);
    assert_eq!(
        after.value(requests, &route("/static/{**path}", "200")),
        1.0
    );
    assert_eq!(
        after.value(
            "products_http_request_duration_seconds_count",
            &route("/product", "200")
        ),
        2.0
    );
    // The product's route is labelled by its pattern, never by the id asked for.
    assert!(
        after
            .get(requests, &route("/products/{id}", "200"))
            .is_some()
    );
    assert!(
        after
            .series
            .iter()
            .all(|(_, labels, _)| labels.get("route").is_none_or(|r| !r.contains("424242")))
    );
    // `/metrics` itself is counted, after the scrape that it answers.
    assert!(after.get(requests, &route("/metrics", "200")).is_some());
}

#[tokio::test]
async fn a_refused_message_is_counted_as_retried_and_redelivered_until_it_is_stored() {
    let app = TestApp::spawn().await;
    app.sql("ALTER TABLE products ADD CONSTRAINT price_below_1000 CHECK (price < 1000)")
        .await;
    let seq = app
        .publish(r#"{"id":5,"name":"lamp","price":5000,"manufacturer":"ikea"}"#)
        .await;
    wait_until("the message is redelivered", || async {
        Scrape::of(&app)
            .await
            .get("products_messages_redelivered_total", &[])
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    app.sql("ALTER TABLE products DROP CONSTRAINT price_below_1000")
        .await;
    app.wait_for_product(5).await;
    // Acked: the delivery that was stored was counted. (A product can be
    // served before that: a store whose answer came too late is committed,
    // nak'ed, and its redelivery acked; under the full suite's load.)
    wait_until("the message is acked", || async {
        let info = app.consumer_info().await;
        info.ack_floor.stream_sequence >= seq && info.num_ack_pending == 0
    })
    .await;

    let m = Scrape::of(&app).await;
    let retried = m.value("products_messages_retried_total", &[]);
    assert!(retried >= 1.0);
    // Every nak brought one more delivery; the last one was stored.
    assert_eq!(m.value("products_messages_redelivered_total", &[]), retried);
    assert_eq!(
        m.value("products_messages_consumed_total", &[]),
        retried + 1.0
    );
    assert_eq!(m.value("products_messages_stored_total", &[]), 1.0);
    assert_eq!(
        m.value("products_messages_set_aside_total", &[]),
        0.0,
        "nothing is set aside"
    );
}

#[tokio::test]
async fn a_restarted_actor_is_counted_by_name() {
    let app = TestApp::spawn().await;
    let names = app.app().names().clone();
    let m = Scrape::of(&app).await;
    let restarts = "products_actor_restarts_total";
    for actor in ["persistence", "cache", "http", "ingest"] {
        assert_eq!(m.get(restarts, &[("actor", actor)]), Some(0.0), "{actor}");
    }

    actors::cache::peer(&names).get().unwrap().kill();
    wait_until("the cache's restart is counted", || async {
        Scrape::of(&app)
            .await
            .get("products_actor_restarts_total", &[("actor", "cache")])
            == Some(1.0)
    })
    .await;
    let m = Scrape::of(&app).await;
    assert_eq!(m.value("products_actor_restarts_total", &[]), 1.0);
}

#[test]
fn every_metric_the_alert_rules_and_the_dashboard_use_is_one_the_service_exports() {
    let top = env!("CARGO_MANIFEST_DIR");
    let read = |path: &str| std::fs::read_to_string(format!("{top}/{path}")).unwrap();
    let rules = read("deployments/prometheus/rules.yaml");
    let dashboard = read("deployments/grafana/dashboard.json");
    let defined = read("actors/src/metrics.rs");
    let words = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|word| word.starts_with("products_") || word.starts_with("products:"))
            .map(|word| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word)
                    .to_owned()
            })
            .collect()
    };
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let used = words(text);
        assert!(used.len() >= 10, "{file}: {used:?}");
        // A metric the service exports, or a series the rules record.
        let missing: Vec<&String> = used
            .iter()
            .filter(|name| match name.contains(':') {
                true => !rules.contains(&format!("record: {name}")),
                false => !defined.contains(&format!("\"{name}\"")),
            })
            .collect();
        assert!(
            missing.is_empty(),
            "the {file} names series nothing exports or records: {missing:?}"
        );
    }
}
