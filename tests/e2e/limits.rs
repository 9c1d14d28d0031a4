//! Bounds that keep one kind of client from taking what the others need:
//! change streams (the live pages') past `EVENTS_MAX_FOLLOWERS`, and searches past their share of
//! the read connections.

use crate::common::{TestApp, instance_name, lock_products, unique_settings, wait_until};
use actors::supervisor::RestartBudget;
use sea_orm::{ConnectionTrait, Statement};
use std::time::Duration;

#[tokio::test]
async fn a_live_feed_past_the_bound_gets_503_with_retry_after_and_the_open_ones_are_gauged() {
    let mut settings = unique_settings();
    settings.http.events_max_followers = 2;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    let open = || {
        reqwest::Client::new()
            .get(format!("{}/products/changes", app.base))
            .send()
    };
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open().await.unwrap();
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));

    let instance = instance_name(&app.settings);
    let gauge = |n: u32| format!("products_live_followers{{app=\"{instance}\"}} {n}\n");
    let refused = format!("products_live_followers_refused_total{{app=\"{instance}\"}} 1\n");
    let metrics = app.get_text("/metrics").await.1;
    assert!(metrics.contains(&gauge(2)), "{}\n{metrics}", gauge(2));
    assert!(metrics.contains(&refused), "{refused}\n{metrics}");

    // A browser that goes away gives its place back (noticed at the next
    // event written to it).
    drop(first);
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    wait_until("the feed's place is given back", || async {
        app.get_text("/metrics").await.1.contains(&gauge(1))
    })
    .await;
    assert_eq!(open().await.unwrap().status(), 200);
}

/// Searches of the app's database running in Postgres now.
async fn searches_in_postgres(app: &TestApp) -> i64 {
    let db = app.db().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = '{}' AND state = 'active' AND query LIKE '%lower(name) LIKE%' \
                   AND query NOT LIKE '%pg_stat_activity%'",
                app.database_name()
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

#[tokio::test]
async fn searches_read_from_postgres_before_the_rebuild_take_their_share_and_the_probe_keeps_the_rest()
 {
    let mut settings = unique_settings();
    // 2 for the writer, 4 for reads: searches may hold 1 of them.
    settings.database.max_connections = 6;
    let mut app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;

    let (status, page) = app.get_text("/?q=pe").await;
    assert_eq!(status, 400);
    assert!(page.contains("at least 3 characters"), "{page}");

    // Started again with the table locked: the cache's rebuild waits on the
    // lock, so searches go to Postgres, and each waits on the lock there,
    // holding its connection.
    app.stop().await;
    let db = app.db().await;
    let lock = lock_products(&db).await;
    app.restart().await;
    let searches: Vec<_> = (0..16)
        .map(|_| {
            let url = format!("{}/?q=pen", app.base);
            tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) })
        })
        .collect();
    wait_until("a search waits on the lock", || async {
        searches_in_postgres(&app).await >= 1
    })
    .await;
    // Meanwhile the probe reads Postgres on a connection searches left free
    // (not ready as a whole: the cache is not rebuilt yet).
    let (_, readiness) = app.get_json("/readyz").await;
    assert_eq!(readiness["postgres"]["ready"], true, "{readiness}");
    for _ in 0..5 {
        assert_eq!(searches_in_postgres(&app).await, 1, "one search at a time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses = Vec::new();
    for search in searches {
        statuses.push(search.await.unwrap().unwrap());
    }
    drop(lock);
    // Those that found no turn were told to come back; none got a 500.
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    app.wait_for_readiness("cache", true).await;
    let (status, page) = app.get_text("/?q=pen").await;
    assert_eq!(status, 200);
    assert!(page.contains("data-id=\"1\""), "{page}");
}
