//! `/readyz` tells the truth about the whole job: it says Postgres is not
//! ready when Postgres can be read but not written, and it does not take a
//! busy ingest for a broken one.

use crate::common::{TestApp, wait_until_within};
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test]
async fn readiness_names_postgres_and_its_reason_when_postgres_refuses_writes() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("postgres", true).await;

    // Read-only, as after a failover to a replica: reads work, writes do not.
    app.sql(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        app.database_name()
    ))
    .await;
    app.end_sessions().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;

    wait_until_within(
        "/readyz says Postgres is not ready",
        Duration::from_secs(5),
        || async {
            let (status, body) = app.get_json("/readyz").await;
            status == 503 && body["postgres"]["ready"] == false
        },
    )
    .await;
    let (_, body) = app.get_json("/readyz").await;
    let error = body["postgres"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("read-only transaction"), "{body}");
    assert_eq!(body["nats"]["ready"], true, "{body}");
    assert_eq!(app.get("/products").await.status(), 200, "reads still work");

    // Writable again: the message is stored and readiness comes back.
    app.admin_sql(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        app.database_name()
    ))
    .await;
    app.end_sessions().await;
    app.wait_for_product(1).await;
    app.wait_for_readiness("postgres", true).await;
}

#[tokio::test]
async fn readiness_stays_true_while_ingest_is_busy_with_a_slow_store() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("nats", true).await;
    app.slow_inserts(6).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    wait_until_within("ingest has the message", Duration::from_secs(5), || async {
        app.consumer_info().await.num_ack_pending == 1
    })
    .await;

    // For the next 4 s, longer than a probe waits, the store is in flight and
    // every answer is still "ready".
    let until = Instant::now() + Duration::from_secs(4);
    let mut probes = 0;
    while Instant::now() < until {
        let (status, body) = app.get_json("/readyz").await;
        assert_eq!(status, 200, "{body}");
        probes += 1;
    }
    assert!(probes > 1);
    assert_eq!(
        app.consumer_info().await.num_ack_pending,
        1,
        "the store was in flight all along"
    );
    app.wait_for_product(1).await;
}
