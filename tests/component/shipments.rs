//! Shipments between replicas (`actors/src/cache/shipments.rs`): what one
//! replica commits reaches the others over NATS, and a change feed leaves
//! out exactly the transactions its cache has applied whole.

use crate::common::persistence::persistence_fixture;
use crate::common::{
    TestApp, ask_persistence, batch, deletion_message as deletion, instance_name,
    product_message as message, unique_settings, wait_until,
};
use actors::cache::shipments::subject;
use actors::changes::Applied;
use actors::persistence::PersistenceMsg;
use actors::supervisor::RestartBudget;
use catalogue::feed::{Changes, Shipment, Version, Written};
use catalogue::product::Product;
use products::App;
use sea_orm::ConnectionTrait;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The ids of the products and of the deletions in `changes`.
fn ids(changes: &Changes) -> (BTreeSet<i64>, BTreeSet<i64>) {
    (
        changes.products.iter().map(|p| p.id).collect(),
        changes.deleted.iter().filter_map(|d| d.id).collect(),
    )
}

#[tokio::test]
async fn a_catch_up_leaves_out_only_the_transactions_applied_whole() {
    let fixture = persistence_fixture().await;
    let changes_since = |since: Option<String>, applied: Option<Applied>| {
        ask_persistence(&fixture.persistence, move |reply| {
            PersistenceMsg::ChangesSince {
                since,
                max_rows: 1_000,
                blocks: false,
                applied,
                reply,
            }
        })
    };
    let start = changes_since(None, None).await.snapshot;

    // One transaction writes two products and deletes one of them.
    let first = fixture
        .store_all(batch(
            "S@1",
            vec![
                message(1, Some(1), "pen", 10),
                message(2, Some(2), "toy", 20),
                deletion(3, 2),
            ],
        ))
        .await;
    let first_written = first.written.expect("it wrote products");
    assert_eq!(first_written.rows, 2, "two rows written: 1, and 2 deleted");
    assert!(
        first
            .current
            .iter()
            .any(|v| matches!(v, Version::Deleted { id: 2, .. })),
        "the deletion is among the versions handed on: {:?}",
        first.current
    );
    let second = fixture
        .store_all(batch("S@1", vec![message(4, Some(3), "lamp", 30)]))
        .await;
    let second_written = second.written.expect("it wrote a product");
    // A redelivery writes nothing: no transaction to leave out.
    let again = fixture
        .store_all(batch("S@1", vec![message(4, Some(3), "lamp", 30)]))
        .await;
    assert_eq!(again.written, None);
    // A write by hand, which nobody ships.
    let db = crate::common::connect(&fixture.database_url).await;
    db.execute_unprepared(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (4, 'by hand', 1, 'psql', 'by hand', 0)",
    )
    .await
    .unwrap();

    // Every change, when nothing is applied.
    let all = changes_since(Some(start.clone()), None).await;
    assert_eq!(ids(&all), ([1, 3, 4].into(), [2].into()));

    // The first applied whole; the second with a row too few (so not whole).
    let applied = Applied::default();
    applied.add(first_written);
    applied.add(Written {
        xid: second_written.xid,
        rows: second_written.rows + 1,
    });
    let partial = changes_since(Some(start.clone()), Some(applied.clone())).await;
    assert_eq!(ids(&partial), ([3, 4].into(), [].into()));
    assert!(
        partial.age.is_some(),
        "the lag counts what was left out too"
    );

    // Both applied whole: only the write by hand is read.
    applied.add(second_written);
    let rest = changes_since(Some(start), Some(applied)).await;
    assert_eq!(ids(&rest), ([4].into(), [].into()));
}

/// The shipments' counter of `instance`, in `/metrics` (one recorder for
/// every app in this process).
async fn shipped_to(app: &TestApp, instance: &str) -> f64 {
    let metrics = app.get_text("/metrics").await.1;
    let prefix = format!("products_shipped_versions_applied_total{{app=\"{instance}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn what_one_replica_stores_is_shipped_to_the_other_which_serves_it() {
    let settings = unique_settings();
    let first = TestApp::spawn_with(settings.clone(), RestartBudget::default()).await;
    // A second replica on the same durable: each message is stored by one.
    let second_instance = format!("{}-second", instance_name(&settings));
    let second = App::start(&settings, &second_instance, RestartBudget::default())
        .await
        .unwrap();
    let second_base = format!("http://{}", second.http_addr());
    for base in [first.base.clone(), second_base.clone()] {
        wait_until("both replicas are ready", || async {
            reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    const PRODUCTS: i64 = 40;
    for id in 1..=PRODUCTS {
        first
            .publish(format!(
                r#"{{"id":{id},"name":"pen {id}","price":1,"manufacturer":"bic"}}"#
            ))
            .await;
    }
    let first_instance = instance_name(&settings);
    // Each version is stored by one replica and shipped to the other.
    wait_until(
        "every version reaches the other replica by shipment",
        || async {
            shipped_to(&first, &first_instance).await + shipped_to(&first, &second_instance).await
                >= PRODUCTS as f64
        },
    )
    .await;
    for base in [first.base.clone(), second_base] {
        let status = reqwest::get(format!("{base}/products/{PRODUCTS}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_shipment_from_another_database_is_ignored() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":70,"name":"pen","price":1,"manufacturer":"bic"}"#)
        .await;
    wait_until("the product is served (its block is cached)", || async {
        app.get_text("/products/70").await.0 == 200
    })
    .await;
    let names = app.app.as_ref().expect("the app runs").names();
    let ours = actors::persistence::peer(names)
        .ask(
            |reply| PersistenceMsg::Database { reply },
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap()
        .unwrap();
    let product = |id: i64| {
        Version::Stored(Arc::new(Product {
            id,
            name: format!("shipped {id}"),
            price: 1,
            manufacturer: "nats".into(),
            description: None,
            attributes: Default::default(),
            revision: i64::MAX,
            stream_seq: 1,
            updated_at: "2026-12-06T00:00:00Z".into(),
            changed_by: None,
        }))
    };
    let nats = async_nats::connect(app.settings.nats.url.expose())
        .await
        .unwrap();
    let subject = subject(&app.settings.nats.stream);
    // Another database's product 71, then this database's 72 (one
    // connection: delivered in that order). Both in the cached block 64-127.
    let theirs = Shipment::encode("0/0", None, &[product(71)]);
    let mine = Shipment::encode(&ours, None, &[product(72)]);
    // Until the replica has subscribed, a shipment reaches nobody: send the
    // pair until this database's arrives.
    wait_until("this database's shipment is applied", || async {
        nats.publish(subject.clone(), theirs.clone().into())
            .await
            .unwrap();
        nats.publish(subject.clone(), mine.clone().into())
            .await
            .unwrap();
        nats.flush().await.unwrap();
        app.get_text("/products/72").await.0 == 200
    })
    .await;
    assert_eq!(
        app.get_text("/products/71").await.0,
        404,
        "another database's shipment is not applied"
    );
}

#[tokio::test]
async fn nothing_is_shipped_when_a_stream_would_keep_the_shipments() {
    let settings = unique_settings();
    let nats = async_nats::connect(settings.nats.url.expose())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(nats);
    let keeper = format!("KEEPER_{}", settings.nats.stream);
    let mut kept = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: keeper.clone(),
            subjects: vec![subject(&settings.nats.stream)],
            ..Default::default()
        })
        .await
        .unwrap();
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    // Each commit is shipped (or not) before the next is served.
    for id in 1..=2 {
        app.publish(format!(
            r#"{{"id":{id},"name":"pen","price":1,"manufacturer":"bic"}}"#
        ))
        .await;
        wait_until("the product is served", || async {
            app.get_text(&format!("/products/{id}")).await.0 == 200
        })
        .await;
    }
    let messages = kept.info().await.unwrap().state.messages;
    js.delete_stream(&keeper).await.unwrap();
    assert_eq!(messages, 0, "no shipment kept by the stream {keeper}");
}
