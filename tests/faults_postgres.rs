//! Postgres goes away while messages arrive: the service stays up, serves
//! from its cache (products and lists, even past an invalidation), stops acking, says so on
//! /readyz, backs off, and stores everything once Postgres is back. Postgres
//! is reached through a proxy the test can take down; the machine's Postgres
//! itself is never stopped.

use crate::common::servers::PgProxy;
use crate::common::{Cleanup, TestApp, unique_settings, wait_until};
use actors::cache::{CacheMsg, CacheStatus};
use actors::supervisor::RestartBudget;
use std::time::Duration;

/// The cache's status.
async fn cache_status(app: &TestApp) -> CacheStatus {
    actors::cache::peer(app.app().names())
        .ask(|reply| CacheMsg::Status { reply }, Duration::from_secs(3))
        .await
        .expect("the cache answers")
}

#[tokio::test]
async fn postgres_going_away_stops_acks_keeps_serving_the_cache_and_loses_nothing() {
    let proxy = PgProxy::start().await;
    let mut settings = unique_settings();
    // Invalidations as often as the settings allow, so that the outage
    // outlasts several of them.
    settings.cache_invalidate_every = Duration::from_secs(1);
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
    app.wait_for_readiness("cache", true).await;
    let acked_before = app.consumer_info().await.ack_floor.stream_sequence;

    proxy.down().await;
    app.publish(r#"{"id":2,"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.publish(r#"{"id":1,"name":"pen","price":12,"manufacturer":"bic"}"#)
        .await;

    let readiness = app.wait_for_readiness("postgres", false).await;
    assert_eq!(readiness["nats"]["ready"], true, "{readiness}");
    // The cached product is still served, each time after an invalidation
    // made it stale; what needs Postgres is a 503, never a 500.
    for _ in 0..2 {
        let invalidated = cache_status(&app).await.invalidations;
        wait_until("the cache is invalidated during the outage", || async {
            cache_status(&app).await.invalidations > invalidated
        })
        .await;
        // Each waits for Postgres to fail (up to 3 s): asked together.
        let ((status, product), page) =
            tokio::join!(app.get_json("/products/1"), app.get("/product?id=1"));
        assert_eq!((status, &product["price"]), (200, &10.into()), "{product}");
        assert_eq!(page.status(), 200);
    }
    // The lists come from memory; a product never cached needs Postgres.
    let (status, list) = app.get_json("/products").await;
    assert_eq!((status, list[0]["id"].clone()), (200, 1.into()), "{list}");
    assert_eq!(app.get("/").await.status(), 200);
    let paths = ["/products/2", "/product?id=2"];
    let answers = futures::future::join_all(paths.map(|path| app.get(path))).await;
    for (path, answer) in paths.iter().zip(answers) {
        assert_eq!(answer.status(), 503, "{path}");
    }

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
