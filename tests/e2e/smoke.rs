//! `products smoke`: the real binary against a running service: it reports the
//! product served, fails after its timeout when the service does not consume
//! what it publishes, and publishes nothing to a service that is not there.

use crate::common::TestApp;
use products::settings::Settings;
use products::smoke::{NAME_PREFIX, SMOKE_IDS};
use serde_json::json;
use std::process::Output;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// `products smoke --url URL --timeout T` with the NATS settings of `settings`
/// (and nothing else from the test's environment); its output and how long it ran.
async fn smoke(settings: &Settings, url: &str, timeout: &str) -> (Output, Duration) {
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_products"))
        .args(["smoke", "--url", url, "--timeout", timeout])
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("NATS_URL", settings.nats.url.expose())
        .env("NATS_STREAM", &settings.nats.stream)
        .env(
            "NATS_STREAM_SUBJECTS",
            settings.nats.stream_subjects.join(","),
        )
        .env("NATS_SUBJECT", &settings.nats.subject)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("products smoke ends within a minute")
        .expect("the products binary runs");
    (output, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn smoke_publishes_one_product_and_reports_it_served_as_json_and_in_the_list() {
    let app = TestApp::spawn().await;
    // More than a page of the list (100), so that the smoke product is not on
    // the first one.
    for id in 1..=150 {
        app.publish(
            json!({"id": id, "name": format!("p{id}"), "price": id, "manufacturer": "m"})
                .to_string(),
        )
        .await;
    }
    app.wait_for_product(150).await;

    let (output, _) = smoke(&app.settings, &app.base, "10s").await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(&format!("served on {}/products/", app.base)) && stdout.contains(" ms"),
        "{stdout}"
    );
    let id: i64 = stdout
        .split("(id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the output names the id: {stdout}"));
    assert!(SMOKE_IDS.contains(&id), "{id}");

    let (status, product) = app.get_json(&format!("/products/{id}")).await;
    assert_eq!(status, 200);
    let name = product["name"].as_str().unwrap();
    assert!(
        name.starts_with(NAME_PREFIX) && name.len() == NAME_PREFIX.len() + 36,
        "{name}"
    );
    assert!(stdout.starts_with(name), "{stdout}");
    assert_eq!(product["manufacturer"], "products smoke");

    // One message, whose Nats-Msg-Id is the product's name.
    let mut stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 151);
    let message = stream
        .get_last_raw_message_by_subject(&app.settings.nats.subject)
        .await
        .unwrap();
    assert_eq!(
        message.headers.get("Nats-Msg-Id").map(|id| id.as_str()),
        Some(name)
    );
}

#[tokio::test]
async fn smoke_fails_after_its_timeout_when_the_service_does_not_consume_the_subject() {
    let app = TestApp::spawn().await;
    // A subject of the same stream that the service does not read.
    let mut elsewhere = app.settings.clone();
    elsewhere.nats.subject = app.settings.nats.subject.replace(".products", ".elsewhere");

    let (output, took) = smoke(&elsewhere, &app.base, "2s").await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("was published to {}", elsewhere.nats.subject))
            && stderr.contains("did not serve it within 2s"),
        "{stderr}"
    );
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");

    let mut stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn smoke_publishes_nothing_when_the_service_does_not_answer() {
    let app = TestApp::spawn().await;
    // Port 1: nothing listens there, and no test can take it (a free port
    // picked at random could be taken by another test meanwhile).
    let nowhere = "http://127.0.0.1:1".to_owned();

    let (output, _) = smoke(&app.settings, &nowhere, "10s").await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");

    let mut stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn after_a_smoke_run_the_next_id_less_product_gets_the_next_small_id() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"name":"first","price":1,"manufacturer":"m"}"#)
        .await;
    assert_eq!(app.wait_for_list_len(1).await[0]["id"], 1);
    let (output, _) = smoke(&app.settings, &app.base, "10s").await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    app.publish(r#"{"name":"after the smoke run","price":1,"manufacturer":"m"}"#)
        .await;
    let listed = app.wait_for_list_len(3).await;
    assert_eq!(listed[1]["name"], "after the smoke run");
    assert_eq!(listed[1]["id"], 2, "{listed:?}");
    assert!(SMOKE_IDS.contains(&listed[2]["id"].as_i64().unwrap()));
}
