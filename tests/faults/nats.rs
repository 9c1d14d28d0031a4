//! NATS goes away and comes back, or is not there at the start: the service
//! stays up, says so on /readyz (still 200: every replica shares NATS) and in
//! /metrics, serves what it has, and resumes by itself.
//! Each test runs a nats-server of its own, on its own port and store.

use crate::common::servers::NatsServer;
use crate::common::{TestApp, unique_settings};
use actors::supervisor::RestartBudget;

async fn app_on_own_nats() -> (NatsServer, TestApp) {
    let mut nats = NatsServer::new();
    nats.start().await;
    let mut settings = unique_settings();
    settings.nats.url = nats.url().into();
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    (nats, app)
}

#[tokio::test]
async fn nats_going_away_and_coming_back_resumes_ingest_by_itself() {
    let (mut nats, app) = app_on_own_nats().await;
    app.publish(r#"{"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_list_len(1).await;
    app.wait_for_readiness("nats", true).await;

    nats.kill();
    let readiness = app.wait_for_readiness("nats", false).await;
    // NATS is every replica's: its absence is said, and the replica keeps
    // its traffic (it serves from memory).
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(readiness["postgres"]["ready"], true, "{readiness}");
    let metrics = app.get_text("/metrics").await.1;
    let instance = crate::common::instance_name(&app.settings);
    let gauge = format!("products_part_ready{{app=\"{instance}\",part=\"nats\"}} 0");
    assert!(metrics.contains(&gauge), "{gauge} in\n{metrics}");
    // Still serving, and the pages say updates are paused.
    assert_eq!(app.get("/products/1").await.status(), 200);
    let (status, page) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Updates are paused since"), "{page}");
    assert!(page.contains("the stream cannot be read"), "{page}");

    nats.start().await;
    app.publish_when_nats_is_back(r#"{"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    let list = app.wait_for_list_len(2).await;
    assert_eq!(list[1]["name"], "toy");
    app.wait_for_readiness("nats", true).await;
    let (_, page) = app.get_text("/").await;
    assert!(!page.contains("Updates are paused"), "{page}");
}

#[tokio::test]
async fn starting_with_nats_down_serves_what_is_stored_and_consumes_once_nats_appears() {
    let (mut nats, mut app) = app_on_own_nats().await;
    for payload in ::products::produce::SAMPLES {
        app.publish(payload).await;
    }
    app.wait_for_list_len(2).await;
    app.stop().await;
    nats.kill();

    app.restart().await;
    let readiness = app.wait_for_readiness("cache", true).await;
    assert_eq!(readiness["nats"]["ready"], false, "{readiness}");
    assert_eq!(app.get_json("/products/2").await.1["name"], "toy");
    assert_eq!(
        app.get_json("/products").await.1.as_array().unwrap().len(),
        2
    );

    nats.start().await;
    app.publish_when_nats_is_back(r#"{"name":"kite","price":5,"manufacturer":"acme"}"#)
        .await;
    let list = app.wait_for_list_len(3).await;
    assert_eq!(list[2]["name"], "kite");
    app.wait_for_readiness("nats", true).await;
}
