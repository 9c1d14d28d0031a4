//! Postgres goes away while messages arrive: the service stays up, serves
//! from its cache (products and lists, even past an invalidation), stops acking, says so on
//! /readyz, backs off, and stores everything once Postgres is back. Postgres
//! is reached through a proxy the test can take down; the machine's Postgres
//! itself is never stopped.

use crate::common::servers::PgProxy;
use crate::common::{Cleanup, TestApp, unique_settings, wait_until};
use actors::cache::{CacheMsg, CacheStatus};
use actors::supervisor::RestartBudget;
use sea_orm::{ConnectionTrait, TransactionTrait};
use std::time::Duration;

/// The cache's status.
async fn cache_status(app: &TestApp) -> CacheStatus {
    actors::cache::peer(app.app().names())
        .ask(|reply| CacheMsg::Status { reply }, Duration::from_secs(3))
        .await
        .expect("the cache answers")
}

/// An app whose Postgres is reached through `proxy` (its database is still
/// dropped directly when the test ends).
async fn behind(proxy: &PgProxy, mut settings: products::settings::Settings) -> TestApp {
    let cleanup = Cleanup::new(&settings);
    let database = settings
        .database
        .url
        .expose()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    settings.database.url = proxy.database_url(&database).into();
    TestApp::spawn_full(settings, RestartBudget::default(), cleanup).await
}

#[tokio::test]
async fn what_the_service_stored_since_start_is_served_from_memory_while_postgres_is_away() {
    let proxy = PgProxy::start().await;
    let app = behind(&proxy, unique_settings()).await;
    app.wait_for_readiness("cache", true).await;

    // Ten products in two blocks no read has cached (the rebuild found none),
    // and a deletion; nothing is read through the cache before the outage.
    let ids: Vec<i64> = (1..=5).chain(1000..=1004).collect();
    for id in &ids {
        app.publish(format!(
            r#"{{"id":{id},"name":"p{id}","price":{id},"manufacturer":"m"}}"#
        ))
        .await;
    }
    let deletion = app.publish(r#"{"id":3,"deleted":true}"#).await;
    let db = app.db().await;
    wait_until("everything is stored", || async {
        let stored = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) FILTER (WHERE NOT deleted) AS n FROM products",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        stored == 9
    })
    .await;
    drop(db);
    // This replica has seen the deletion through its change feed (stored is
    // not seen: a deletion reaches the cache only that way). Asked of
    // `/healthz`, so that no product is read through the cache.
    wait_until("the replica has applied the deletion", || async {
        let response = app.get("/healthz").await;
        let applied: u64 = response.headers()["products-applied-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        applied >= deletion
    })
    .await;

    proxy.down().await;
    for id in ids.iter().filter(|id| **id != 3) {
        let (status, product) = app.get_json(&format!("/products/{id}")).await;
        assert_eq!(
            (status, &product["name"]),
            (200, &format!("p{id}").into()),
            "{id}"
        );
    }
    assert_eq!(app.get("/product?id=1002").await.status(), 200);
    assert_eq!(app.get("/products/3").await.status(), 404, "deleted");
    let (status, list) = app.get_json("/products").await;
    assert_eq!(status, 200, "{list}");
    let listed: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [1, 2, 4, 5, 1000, 1001, 1002, 1003, 1004]);
    // What the service never saw still needs Postgres.
    assert_eq!(app.get("/products/2000").await.status(), 503);
}

#[tokio::test]
async fn postgres_going_away_stops_acks_keeps_serving_the_cache_and_loses_nothing() {
    let proxy = PgProxy::start().await;
    let mut settings = unique_settings();
    // Invalidations as often as the settings allow, so that the outage
    // outlasts several of them.
    settings.cache.invalidate_every = Duration::from_secs(1);
    let app = behind(&proxy, settings).await;

    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    app.wait_for_readiness("cache", true).await;
    let acked_before = app.consumer_info().await.ack_floor.stream_sequence;

    proxy.down().await;
    // Another block than id 1's (64 ids a block), so it is not cached.
    app.publish(r#"{"id":1000,"name":"toy","price":100,"manufacturer":"lego"}"#)
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
    // The lists come from memory; a product whose block was never cached needs Postgres.
    let (status, list) = app.get_json("/products").await;
    assert_eq!((status, list[0]["id"].clone()), (200, 1.into()), "{list}");
    assert_eq!(app.get("/").await.status(), 200);
    let paths = ["/products/1000", "/product?id=1000"];
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
            && app.get("/products/1000").await.status() == 200
    })
    .await;
    app.wait_for_readiness("postgres", true).await;
    assert_eq!(app.wait_for_list_len(2).await.len(), 2);
}

#[tokio::test]
async fn reads_that_hold_every_read_connection_never_starve_the_writes() {
    let mut settings = unique_settings();
    // Few connections: two for writes, one for reads.
    settings.database.max_connections = 3;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.wait_for_readiness("cache", true).await;

    // Every read of the rejected page waits on this lock, holding its
    // connection: a flood of them takes every read connection, and more wait.
    let db = app.db().await;
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE rejected_messages IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (http, url) = (app.http.clone(), format!("{}/rejected", app.base));
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let observer = app.db().await;
    wait_until("a read waits on the lock", || async {
        crate::common::statements_waiting_on_locks(&observer).await > 0
    })
    .await;

    // Meanwhile products are stored, on the writes' own connections.
    for id in 1..=3 {
        app.publish(format!(
            r#"{{"id":{id},"name":"p{id}","price":{id},"manufacturer":"m"}}"#
        ))
        .await;
    }
    wait_until("the three products are stored", || async {
        app.consumer_info().await.ack_floor.stream_sequence == 3
    })
    .await;
    // Each message was delivered once: no batch waited out the pool for a
    // connection and came again. (`num_redelivered` counts only messages
    // redelivered and not yet acked, so it says nothing once all are acked.)
    let info = app.consumer_info().await;
    assert_eq!(info.delivered.consumer_sequence, 3, "{info:?}");

    lock.commit().await.unwrap();
    for reader in readers {
        let _ = reader.await.unwrap();
    }
}
