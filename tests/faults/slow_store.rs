//! Postgres that is slow, not gone: a store that takes longer than any one
//! wait of ingest is awaited (JetStream told the messages are in progress),
//! committed once and acked, never given up on while it commits behind
//! ingest's back.

use crate::common::{TestApp, wait_until_within};
use std::time::Duration;

#[tokio::test]
async fn a_store_slower_than_ack_wait_is_awaited_committed_once_and_acked() {
    let mut app = TestApp::spawn().await;
    // ack_wait is 3 s in the tests, and ingest gave up on a store after 10 s:
    // each row alone takes 6 s, the batch 12 s.
    app.slow_inserts(6).await;

    // Published while the app is stopped, so that both come in one batch.
    app.stop().await;
    app.publish(r#"{"id":7,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.publish(r#"{"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.restart().await;

    wait_until_within(
        "both messages are stored and acked",
        Duration::from_secs(60),
        || async {
            let info = app.consumer_info().await;
            info.ack_floor.stream_sequence == 2 && info.num_ack_pending == 0
        },
    )
    .await;
    // Delivered once each: JetStream was told the batch was in progress, so it
    // redelivered nothing. (`num_redelivered` counts only messages redelivered
    // and not yet acked: it would say nothing here.)
    let info = app.consumer_info().await;
    assert_eq!(info.delivered.consumer_sequence, 2, "{info:?}");
    assert_eq!(app.wait_for_list_len(2).await.len(), 2);
}

#[tokio::test]
async fn a_shutdown_keeps_to_its_budget_with_a_slow_store_in_flight_and_loses_nothing() {
    let mut settings = crate::common::unique_settings();
    settings.shutdown.timeout = Duration::from_secs(3);
    settings.shutdown.drain = Duration::ZERO;
    let mut app = TestApp::spawn_with(settings, Default::default()).await;
    app.slow_inserts(6).await;
    app.publish(r#"{"id":7,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    wait_until_within(
        "ingest is storing the message",
        Duration::from_secs(10),
        || async { app.consumer_info().await.num_ack_pending == 1 },
    )
    .await;

    let running = app.app.take().unwrap();
    tokio::time::timeout(Duration::from_secs(3 + 2), running.shutdown())
        .await
        .expect("the shutdown keeps to its 3 s budget (and a margin)")
        .expect("a clean shutdown");

    // What was cut short is redelivered and stored once.
    app.restart().await;
    assert_eq!(app.wait_for_product(7).await["name"], "pen");
    assert_eq!(app.wait_for_list_len(1).await.len(), 1);
}
