//! The change feed under load it cannot take in one read: a transaction held
//! open (which pins Postgres's snapshots' xmin) while more rows are written
//! at once than one catch-up reads; every replica still catches up, and a
//! deletion made after reaches every replica.

use crate::common::{TestApp, connect, instance_name, unique_settings, wait_until};
use actors::supervisor::RestartBudget;
use products::App;
use sea_orm::{ConnectionTrait, TransactionTrait};

/// The `app` label's value of a counter or gauge in `/metrics`.
fn metric(metrics: &str, name: &str, instance: &str) -> f64 {
    let prefix = format!("{name}{{app=\"{instance}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// Blocks `instance`'s change feed read again whole, so far.
async fn reread_by(app: &TestApp, instance: &str) -> f64 {
    let metrics = app.get_text("/metrics").await.1;
    metric(
        &metrics,
        "products_change_feed_blocks_reread_total",
        instance,
    )
}

#[tokio::test]
async fn a_held_transaction_and_a_burst_too_large_for_one_read_still_let_a_deletion_reach_every_replica()
 {
    let mut settings = unique_settings();
    settings.cache.catch_up_max_rows = 1_000;
    settings.cache.invalidate_every = std::time::Duration::from_secs(1);
    let first = TestApp::spawn_with(settings.clone(), RestartBudget::default()).await;
    // A second replica: the same database, a durable of its own.
    settings.nats.durable = format!("{}-2", settings.nats.durable);
    let second_instance = instance_name(&settings);
    let second = App::start(&settings, &second_instance, RestartBudget::default())
        .await
        .unwrap();
    let second_base = format!("http://{}", second.http_addr());
    let status_on = |base: String, id: i64| async move {
        reqwest::get(format!("{base}/products/{id}"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    first
        .publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    for base in [first.base.clone(), second_base.clone()] {
        wait_until("both replicas serve the product", || async {
            status_on(base.clone(), 1).await == 200
        })
        .await;
    }
    first.wait_for_readiness("cache", true).await;

    // A forgotten `BEGIN` that took a transaction id, held to the end.
    let held = connect(&first.settings.database.url).await;
    let held = held.begin().await.unwrap();
    held.execute_unprepared("SELECT pg_current_xact_id()")
        .await
        .unwrap();
    // 20 times what one catch-up reads, at once (an import, say).
    first
        .sql(
            "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
             SELECT g, 'bulk ' || g, g, 'import', 'by hand', 0 FROM generate_series(100, 20099) g",
        )
        .await;
    // Both replicas' feeds read the burst again by block (the metrics of
    // every app in this process are on one recorder).
    let first_instance = instance_name(&first.settings);
    for instance in [&first_instance, &second_instance] {
        wait_until("the burst is read again by block", || async {
            reread_by(&first, instance).await >= 313.0
        })
        .await;
    }
    let reread = reread_by(&first, &first_instance).await;
    for base in [first.base.clone(), second_base.clone()] {
        assert_eq!(status_on(base, 20_099).await, 200);
    }

    // The transaction is still open: later catch-ups read only what is new.
    first.publish(r#"{"id":1,"deleted":true}"#).await;
    for base in [first.base.clone(), second_base.clone()] {
        wait_until("the deletion reaches both replicas", || async {
            status_on(base.clone(), 1).await == 404
        })
        .await;
    }
    let invalidations = |metrics: &str| {
        metric(
            metrics,
            "products_cache_invalidations_total",
            &first_instance,
        )
    };
    let before = invalidations(&first.get_text("/metrics").await.1);
    wait_until("two more catch-ups ran", || async {
        invalidations(&first.get_text("/metrics").await.1) >= before + 2.0
    })
    .await;
    assert_eq!(
        reread_by(&first, &first_instance).await,
        reread,
        "no block read again since, though the transaction is still open"
    );
    let (_, readiness) = first.get_json("/readyz").await;
    assert_eq!(readiness["change_feed"]["caught_up"], true, "{readiness}");
    held.rollback().await.unwrap();
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_truncate_behind_more_changes_than_one_read_takes_still_empties_the_cache() {
    let mut settings = unique_settings();
    settings.cache.catch_up_max_rows = 100;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         SELECT g, 'p' || g, g, 'm', 'by hand', 0 FROM generate_series(1, 500) g",
    )
    .await;
    wait_until("the products are listed", || async {
        app.get_json("/products?limit=1000")
            .await
            .1
            .as_array()
            .map(Vec::len)
            == Some(500)
    })
    .await;
    assert_eq!(app.get("/products/450").await.status(), 200);
    // Many deletions (each a tombstone), then every product at once, between
    // two catch-ups.
    let db = connect(&app.settings.database.url).await;
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("DELETE FROM products WHERE id <= 300")
        .await
        .unwrap();
    txn.execute_unprepared("TRUNCATE products").await.unwrap();
    txn.commit().await.unwrap();
    wait_until("nothing is served any more", || async {
        app.get("/products/450").await.status() == 404
            && app.get_json("/products").await.1 == serde_json::json!([])
    })
    .await;
}
