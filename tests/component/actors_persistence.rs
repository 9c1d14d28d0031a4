//! The persistence actor, driven through its messages against a real database.

use crate::common::persistence::persistence_fixture;
use crate::common::{ask_persistence, batch, connect, product_message as message};
use actors::persistence::PersistenceMsg;
use bytes::Bytes;
use catalogue::batch::{Incoming, Outcome};
use entity::{products, rejected_messages};
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};

#[tokio::test]
async fn a_batch_is_stored_at_once_and_a_redelivery_of_it_changes_nothing() {
    let fixture = persistence_fixture().await;
    let mut first = batch(
        "S@1",
        vec![
            message(1, None, "pen", 10),
            message(2, None, "toy", 100),
            message(3, Some(10), "lamp", 30),
        ],
    );
    first.messages.push(Incoming {
        stream_seq: 4,
        subject: "events.products".into(),
        payload: Bytes::from_static(b"{oops"),
        decoded: catalogue::product::decode(b"{oops"),
        operator: None,
        last_delivery: false,
    });

    let applied = fixture.store(first.clone()).await;
    let mut ids: Vec<_> = applied.iter().map(|p| (p.id, p.name.as_str())).collect();
    ids.sort();
    // The new ones are given the smallest free ids, in stream order,
    // whatever ids publishers chose.
    assert_eq!(ids, [(1, "pen"), (2, "toy"), (10, "lamp")]);

    let again = fixture.store(first).await;
    // A redelivery changes nothing, and answers the same current versions.
    let mut current: Vec<_> = again
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.revision))
        .collect();
    current.sort();
    let mut applied: Vec<_> = applied
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.revision))
        .collect();
    applied.sort();
    assert_eq!(current, applied);

    let db = connect(&fixture.database_url).await;
    assert_eq!(products::Entity::find().count(&db).await.unwrap(), 3);
    assert_eq!(
        rejected_messages::Entity::find().count(&db).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn an_older_message_never_overwrites_a_newer_one() {
    let fixture = persistence_fixture().await;
    fixture
        .store(batch("S@1", vec![message(5, Some(1), "pen", 50)]))
        .await;

    let stale = fixture
        .store(batch("S@1", vec![message(3, Some(1), "pen", 30)]))
        .await;
    assert_eq!(stale[0].price, 50, "the answer is the version kept");
    assert_eq!(fixture.get(1).await.unwrap().price, 50);

    // In one batch, the last message for an id wins.
    let applied = fixture
        .store(batch(
            "S@1",
            vec![
                message(8, Some(1), "pen", 80),
                message(9, Some(1), "pen", 90),
            ],
        ))
        .await;
    assert_eq!(applied.len(), 1);
    assert_eq!(fixture.get(1).await.unwrap().price, 90);
}

#[tokio::test]
async fn a_message_of_a_recreated_stream_applies_even_with_a_lower_sequence() {
    let fixture = persistence_fixture().await;
    fixture
        .store(batch("S@1", vec![message(100, Some(1), "pen", 1)]))
        .await;
    let applied = fixture
        .store(batch("S@2", vec![message(1, Some(1), "pen", 2)]))
        .await;
    assert_eq!(applied.len(), 1);
    assert_eq!(fixture.get(1).await.unwrap().price, 2);
}

#[tokio::test]
async fn pages_come_in_id_order_after_the_given_id() {
    let fixture = persistence_fixture().await;
    let messages = (1..=5)
        .rev()
        .map(|id| message(id as u64, Some(id), &format!("p{id}"), id))
        .collect();
    fixture.store(batch("S@1", messages)).await;
    let page = ask_persistence(&fixture.persistence, |reply| PersistenceMsg::Page {
        after: 2,
        limit: 2,
        reply,
    })
    .await;
    assert_eq!(page.iter().map(|p| p.id).collect::<Vec<_>>(), [3, 4]);
}

#[tokio::test]
async fn in_one_batch_the_highest_sequence_wins_even_when_it_comes_first() {
    let fixture = persistence_fixture().await;
    // A redelivered older message can follow a newer one in the same batch.
    fixture
        .store(batch(
            "S@1",
            vec![
                message(50, Some(1), "pen", 50),
                message(10, Some(1), "pen", 10),
            ],
        ))
        .await;
    assert_eq!(fixture.get(1).await.unwrap().price, 50);
}

#[tokio::test]
async fn a_product_with_id_1_on_a_fresh_table_does_not_collide_with_the_next_new_one() {
    let fixture = persistence_fixture().await;
    fixture
        .store(batch("S@1", vec![message(1, Some(1), "pen", 1)]))
        .await;
    let applied = fixture
        .store(batch("S@1", vec![message(2, None, "toy", 2)]))
        .await;
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].id, 2);
}

#[tokio::test]
async fn a_message_postgres_refuses_is_set_apart_and_the_rest_of_its_batch_is_stored() {
    let fixture = persistence_fixture().await;
    // The decoder never lets a NUL through; here one reaches Postgres anyway.
    let stored = fixture
        .store_all(batch(
            "S@1",
            vec![
                message(1, Some(1), "pen", 1),
                message(2, Some(2), "bad\u{0}name", 2),
                message(3, None, "toy", 3),
            ],
        ))
        .await;
    assert_eq!(stored.current.len(), 2);
    assert_eq!(stored.outcomes[0], Outcome::Stored);
    assert_eq!(stored.outcomes[2], Outcome::Stored);
    let Outcome::SetAside(rejection) = &stored.outcomes[1] else {
        panic!("the message with a NUL is set aside: {:?}", stored.outcomes);
    };
    assert!(
        rejection.to_string().contains("Postgres refused it"),
        "{rejection}"
    );
    let db = connect(&fixture.database_url).await;
    let names: Vec<_> = products::Entity::find()
        .order_by_asc(products::Column::Id)
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["pen", "toy"]);
}
