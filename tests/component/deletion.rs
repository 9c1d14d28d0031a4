//! Deletion as a message (`{"id": N, "deleted": true}`), search and the
//! outcome of a published message, against a real database and the whole
//! pipeline.

use crate::common::persistence::{PersistenceFixture, persistence_fixture};
use crate::common::{TestApp, ask_persistence, batch, product_message as message, wait_until};
use actors::persistence::{MessageOutcome, PersistenceMsg};
use bytes::Bytes;
use catalogue::batch::Incoming;
use catalogue::product::{DecodeError, ProductUpdate};

/// The deletion of `id`, as persistence gets it.
fn deletion(stream_seq: u64, id: i64) -> Incoming {
    let payload = format!(r#"{{"id":{id},"deleted":true}}"#);
    Incoming {
        stream_seq,
        subject: "test.products".into(),
        decoded: catalogue::product::decode(payload.as_bytes()),
        operator: None,
        last_delivery: false,
        payload: Bytes::from(payload),
    }
}

impl PersistenceFixture {
    async fn page(&self) -> Vec<i64> {
        ask_persistence(&self.persistence, |reply| PersistenceMsg::Page {
            after: 0,
            limit: 100,
            reply,
        })
        .await
        .iter()
        .map(|p| p.id)
        .collect()
    }

    async fn search(&self, text: &str) -> Vec<String> {
        self.filtered(catalogue::filter::Filter::text(text)).await
    }

    async fn filtered(&self, filter: catalogue::filter::Filter) -> Vec<String> {
        ask_persistence(&self.persistence, |reply| PersistenceMsg::Search {
            filter,
            after: 0,
            limit: 100,
            reply,
        })
        .await
        .into_iter()
        .map(|p| p.name)
        .collect()
    }

    async fn outcome(&self, seq: i64, id: Option<i64>) -> MessageOutcome {
        ask_persistence(&self.persistence, |reply| PersistenceMsg::Outcome {
            stream: "S@1".into(),
            seq,
            id,
            reply,
        })
        .await
    }
}

#[tokio::test]
async fn a_deleted_product_is_gone_and_an_older_redelivered_update_does_not_bring_it_back() {
    let fixture = persistence_fixture().await;
    fixture
        .store(batch("S@1", vec![message(1, Some(5), "pen", 10)]))
        .await;
    let current = fixture.store(batch("S@1", vec![deletion(3, 5)])).await;
    assert!(current.is_empty(), "a deletion is no product: {current:?}");
    assert_eq!(fixture.get(5).await, None);
    assert!(fixture.page().await.is_empty());

    // The update of sequence 2 comes again, after the deletion of sequence 3.
    fixture
        .store(batch("S@1", vec![message(2, Some(5), "old pen", 9)]))
        .await;
    assert_eq!(
        fixture.get(5).await,
        None,
        "an older update brought it back"
    );
    assert_eq!(
        fixture.outcome(3, Some(5)).await,
        MessageOutcome::Stored {
            id: 5,
            deleted: true
        }
    );

    // A newer update creates it again.
    fixture
        .store(batch("S@1", vec![message(4, Some(5), "new pen", 11)]))
        .await;
    assert_eq!(fixture.get(5).await.unwrap().name, "new pen");
    assert_eq!(fixture.page().await, vec![5]);
}

#[tokio::test]
async fn deleting_an_id_never_stored_keeps_it_deleted_against_older_creations() {
    let fixture = persistence_fixture().await;
    fixture.store(batch("S@1", vec![deletion(7, 8)])).await;
    fixture
        .store(batch("S@1", vec![message(6, Some(8), "late", 1)]))
        .await;
    assert_eq!(fixture.get(8).await, None);
}

#[tokio::test]
async fn search_finds_a_part_of_the_name_or_manufacturer_in_any_case_and_skips_the_deleted() {
    let fixture = persistence_fixture().await;
    let mut messages = vec![
        message(1, Some(1), "Blue PEN", 10),
        message(2, Some(2), "toy", 10),
        message(3, Some(3), "pencil", 10),
        message(4, Some(4), "100% cotton", 10),
        message(5, Some(5), "100 cotton", 10),
    ];
    // Its manufacturer matches: "acme" for every message but this one.
    if let Ok(ProductUpdate::Upsert(update)) = &mut messages[1].decoded {
        update.manufacturer = "Penguin toys".into();
    }
    fixture.store(batch("S@1", messages)).await;
    assert_eq!(
        fixture.search("pen").await,
        ["Blue PEN", "toy", "pencil"],
        "by name and manufacturer, in id order"
    );
    assert_eq!(
        fixture.search("0% c").await,
        ["100% cotton"],
        "% is literal"
    );
    assert!(fixture.search("_").await.is_empty(), "_ is literal");

    fixture.store(batch("S@1", vec![deletion(6, 3)])).await;
    assert_eq!(fixture.search("pen").await, ["Blue PEN", "toy"]);
}

#[tokio::test]
async fn the_outcome_of_a_message_is_waiting_then_stored_or_rejected() {
    let fixture = persistence_fixture().await;
    assert_eq!(fixture.outcome(1, None).await, MessageOutcome::Waiting);
    fixture
        .store(batch("S@1", vec![message(1, None, "pen", 10)]))
        .await;
    assert!(matches!(
        fixture.outcome(1, None).await,
        MessageOutcome::Stored { deleted: false, .. }
    ));
    let invalid = Incoming {
        stream_seq: 2,
        subject: "test.products".into(),
        payload: Bytes::from_static(b"{}"),
        decoded: Err(DecodeError::Missing { field: "name" }),
        operator: None,
        last_delivery: false,
    };
    fixture.store(batch("S@1", vec![invalid])).await;
    assert_eq!(
        fixture.outcome(2, Some(3)).await,
        MessageOutcome::Rejected {
            reason: "the field `name` is missing".into()
        }
    );
}

#[tokio::test]
async fn a_deletion_published_to_the_stream_makes_the_product_a_404_everywhere() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":40,"name":"pen","price":1,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(40).await;
    app.publish(r#"{"id":40,"deleted":true}"#).await;
    wait_until("product 40 is a 404", || async {
        app.get("/products/40").await.status() == 404
    })
    .await;
    assert_eq!(app.get("/product?id=40").await.status(), 404);
    assert!(app.wait_for_list_len(0).await.is_empty());
}
