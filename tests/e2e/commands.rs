//! The binary's other commands, run as a user runs them: `produce` (the
//! samples, `--file`, `--count`, each message with its own `Nats-Msg-Id`, so
//! that a retried publish is stored once) and `migrate`. And a rejected
//! message, as the running service logs it: once, at WARN.

use crate::common::process::ServiceProcess;
use crate::common::{
    Cleanup, connect, init_logs, jetstream_with_stream, unique_settings, wait_until,
};
use async_nats::jetstream;
use migration::MigratorTrait;
use products::settings::Settings;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::Duration;

/// `products <args>` with the test's settings in its environment.
fn products(settings: &Settings, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_products"))
        .args(args)
        .env("DATABASE_URL", settings.database.url.expose())
        .env("NATS_URL", settings.nats.url.expose())
        .env("NATS_STREAM", &settings.nats.stream)
        .env(
            "NATS_STREAM_SUBJECTS",
            settings.nats.stream_subjects.join(","),
        )
        .env("NATS_SUBJECT", &settings.nats.subject)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the products binary runs");
    assert!(
        output.status.success(),
        "products {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn produce_publishes_the_samples_a_file_or_generated_products_each_with_its_own_message_id() {
    init_logs();
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);

    let out = products(&settings, &["produce"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 2 messages"));
    let file = std::env::temp_dir().join(format!("products-{}.json", uuid::Uuid::new_v4()));
    let from_file = json!([
        {"name": "kite", "price": 5, "manufacturer": "acme"},
        {"id": 9, "name": "ball", "price": 3, "manufacturer": "acme", "description": "red"},
        {"name": "not a product"},
    ]);
    std::fs::write(&file, from_file.to_string()).unwrap();
    let out = products(&settings, &["produce", "--file", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 3 messages"));
    let out = products(&settings, &["produce", "--count", "5"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("published 5 messages"));

    // `produce` created the stream, with the 2-minute duplicate window.
    let (js, mut stream) = jetstream_with_stream(&settings).await;
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.state.messages, 10);

    let mut payloads = Vec::new();
    let mut ids = HashSet::new();
    for seq in 1..=10 {
        let message = stream.get_raw_message(seq).await.unwrap();
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .unwrap_or_else(|| panic!("message {seq} has no Nats-Msg-Id"))
            .to_string();
        assert!(
            ids.insert(id),
            "message {seq} repeats another's Nats-Msg-Id"
        );
        payloads.push(String::from_utf8(message.payload.to_vec()).unwrap());
    }
    // Publishes are concurrent: each command's messages, in any order.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(payloads[..2].to_vec()),
        sorted(products::produce::SAMPLES.map(String::from).to_vec())
    );
    let file_items: Vec<String> = from_file
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(sorted(payloads[2..5].to_vec()), sorted(file_items));
    let generated: HashSet<String> = payloads[5..]
        .iter()
        .map(|p| serde_json::from_str::<Value>(p).unwrap()["name"].to_string())
        .collect();
    let expected: HashSet<String> = (1..=5).map(|i| format!("\"product {i}\"")).collect();
    assert_eq!(generated, expected);

    // A retry of one of those publishes (same Nats-Msg-Id) is dropped.
    let retried = stream.get_raw_message(3).await.unwrap();
    let ack = js
        .send_publish(
            settings.nats.subject.clone(),
            jetstream::message::PublishMessage::build()
                .payload(retried.payload.clone())
                .message_id(retried.headers.get("Nats-Msg-Id").unwrap().as_str()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(stream.info().await.unwrap().state.messages, 10);
}

#[tokio::test]
async fn migrate_creates_the_database_and_its_tables_then_exits_and_can_run_again() {
    init_logs();
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    for _ in 0..2 {
        products(&settings, &["migrate"]);
        let db = connect(&settings.database.url).await;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT (SELECT count(*) FROM seaql_migrations) AS applied, \
                 (SELECT count(*) FROM information_schema.tables \
                  WHERE table_name IN ('products', 'rejected_messages', 'product_tombstones')) \
                  AS tables",
            ))
            .await
            .unwrap()
            .unwrap();
        let applied: i64 = row.try_get("", "applied").unwrap();
        let tables: i64 = row.try_get("", "tables").unwrap();
        let migrations = migration::Migrator::migrations().len() as i64;
        assert_eq!((applied, tables), (migrations, 3));
        db.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_rejected_message_is_logged_once_at_warn_with_its_reason() {
    init_logs();
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    let (js, _) = jetstream_with_stream(&settings).await;
    let publish = |payload: &'static str| {
        let js = js.clone();
        let subject = settings.nats.subject.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };
    let bad = publish(r#"{"name":"pen","price":-1,"manufacturer":"bic"}"#).await;
    publish(r#"{"id":1,"name":"pen","price":1,"manufacturer":"bic"}"#).await;

    let mut service = ServiceProcess::start(&settings);
    let base = service.base().await;
    wait_until("the valid message is served", || async {
        reqwest::get(format!("{base}/products/1"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Terminated, not to come again: nothing pending, nothing unacked.
    wait_until("the consumer has nothing left", || async {
        let Ok(stream) = js.get_stream(&settings.nats.stream).await else {
            return false;
        };
        let Ok(mut consumer) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&settings.nats.durable)
            .await
        else {
            return false;
        };
        consumer
            .info()
            .await
            .is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
    })
    .await;

    let log = service.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("message set aside"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains(&format!("stream_seq={bad}")), "{line}");
    assert!(line.contains("must not be negative"), "{line}");
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_live_service_on_http_addr_and_1_for_none() {
    let app = crate::common::TestApp::spawn().await;
    let healthcheck = |addr: String| {
        Command::new(env!("CARGO_BIN_EXE_products"))
            .arg("healthcheck")
            .env_clear()
            .env("HTTP_ADDR", addr)
            .output()
            .expect("the products binary runs")
    };
    // Listening on every interface is asked on the loopback.
    let port = app.app().http_addr().port();
    let live = tokio::task::spawn_blocking(move || healthcheck(format!("0.0.0.0:{port}")))
        .await
        .unwrap();
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    // Port 1: nothing listens there.
    let dead = tokio::task::spawn_blocking(move || healthcheck("127.0.0.1:1".to_owned()))
        .await
        .unwrap();
    assert_eq!(dead.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&dead.stderr).contains("is not healthy"),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
}
