//! `/readyz` tells the truth about the whole job: it says Postgres is not
//! ready when Postgres can be read but not written (without taking the
//! replica out of traffic: every replica shares Postgres), it does not take a
//! busy ingest for a broken one, and it turns 503 at once on SIGTERM while
//! requests still drain.

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
            // Said, not counted: every replica shares Postgres.
            status == 200 && body["postgres"]["ready"] == false
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

#[tokio::test]
async fn on_sigterm_readyz_turns_503_at_once_requests_drain_and_a_second_signal_exits_at_once() {
    use crate::common::process::ServiceProcess;
    use crate::common::{Cleanup, unique_settings};
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    let mut service = ServiceProcess::start_with_env(&settings, &[("SHUTDOWN_DRAIN", "3s")]);
    let base = service.base().await;
    let http = reqwest::Client::new();
    crate::common::wait_until("the service is ready", || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    service.signal("TERM");
    let stopping = Instant::now();
    wait_until_within("/readyz answers 503", Duration::from_secs(1), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    // Still serving while the load balancer takes it out.
    let (_, body) = {
        let response = http.get(format!("{base}/readyz")).send().await.unwrap();
        (
            response.status(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(body["shutting_down"], true, "{body}");
    assert_eq!(
        http.get(format!("{base}/products"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "within the drain"
    );

    // A second signal during the drain: out at once, non-zero, saying so.
    service.signal("TERM");
    let status = service
        .wait_exit(Duration::from_secs(2))
        .await
        .expect("it exits at once");
    assert_eq!(status.code(), Some(130), "{}", service.log());
    assert!(
        service.log().contains("a second stop signal"),
        "{}",
        service.log()
    );
}

#[tokio::test]
async fn after_the_drain_the_service_stops_gracefully_with_code_0() {
    use crate::common::process::ServiceProcess;
    use crate::common::{Cleanup, unique_settings};
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    let mut service = ServiceProcess::start_with_env(&settings, &[("SHUTDOWN_DRAIN", "1s")]);
    let base = service.base().await;
    crate::common::wait_until("the service is ready", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    service.signal("TERM");
    let status = service
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("it stops");
    assert!(status.success(), "{}", service.log());
    assert!(
        service.log().contains("serving for the drain delay first"),
        "{}",
        service.log()
    );
}
