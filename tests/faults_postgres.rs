//! Postgres goes away while messages arrive: the service stays up, serves
//! from its cache, stops acking, says so on /readyz, backs off, and stores
//! everything once Postgres is back. Postgres is reached through a proxy the
//! test can take down; the machine's Postgres itself is never stopped.

use crate::common::servers::PgProxy;
use crate::common::{Cleanup, TestApp, unique_settings, wait_until};
use actors::supervisor::RestartBudget;

#[tokio::test]
async fn postgres_going_away_stops_acks_keeps_serving_the_cache_and_loses_nothing() {
    let proxy = PgProxy::start().await;
    let mut settings = unique_settings();
    let cleanup = Cleanup::new(&settings);
    let database = settings
        .database_url
        .expose()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    settings.database_url = proxy.database_url(&database).into();
    let app = TestApp::spawn_full(settings, RestartBudget::default(), cleanup).await;

    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let acked_before = app.consumer_info().await.ack_floor.stream_sequence;

    proxy.down().await;
    app.publish(r#"{"id":2,"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.publish(r#"{"id":1,"name":"pen","price":12,"manufacturer":"bic"}"#)
        .await;

    let readiness = app.wait_for_readiness("postgres", false).await;
    assert_eq!(readiness["nats"]["ready"], true, "{readiness}");
    // The cached product is still served; the list (from Postgres) is a 503.
    assert_eq!(app.get_json("/products/1").await.1["price"], 10);
    assert_eq!(app.get("/products").await.status(), 503);

    // Ingest tried, failed, and backs off: the messages are redelivered, not acked.
    wait_until("the new messages were tried and redelivered", || async {
        app.consumer_info().await.num_redelivered >= 2
    })
    .await;
    let info = app.consumer_info().await;
    assert_eq!(info.ack_floor.stream_sequence, acked_before, "{info:?}");
    assert!(
        info.delivered.consumer_sequence < 50,
        "a busy loop would redeliver far more often: {info:?}"
    );

    proxy.up().await;
    wait_until("both messages are stored once Postgres is back", || async {
        app.get_json("/products/1").await.1["price"] == 12
            && app.get("/products/2").await.status() == 200
    })
    .await;
    app.wait_for_readiness("postgres", true).await;
    assert_eq!(app.wait_for_list_len(2).await.len(), 2);
}
