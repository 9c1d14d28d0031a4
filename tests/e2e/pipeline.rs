//! End to end: a message published to the stream is stored, cached and served.

use crate::common::{TestApp, take_updated_at, wait_until};
use entity::{products, rejected_messages};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

#[tokio::test]
async fn a_product_from_the_go_producer_appears_on_the_page_and_in_the_json_list() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"ID":0,"Name":"pen","Price":10,"Manufacturer":"bic"}"#)
        .await;

    let mut list = app.wait_for_list_len(1).await;
    take_updated_at(&mut list[0]);
    assert_eq!(
        list[0],
        json!({"id": 1, "name": "pen", "price": 10, "manufacturer": "bic", "stream_seq": 1})
    );

    let (status, page) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<a href="/product?id=1">1</a>"#), "{page}");
    assert!(page.contains("pen") && page.contains("bic"));

    let (status, detail) = app.get_text("/product?id=1").await;
    assert_eq!(status, 200);
    assert!(detail.contains("<h1>pen</h1>"), "{detail}");
}

#[tokio::test]
async fn a_positive_id_creates_then_replaces_that_product_with_its_detail() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":42,"name":"lamp","price":30,"manufacturer":"ikea"}"#)
        .await;
    assert_eq!(app.wait_for_product(42).await["price"], 30);

    let update = json!({
        "id": 42, "name": "lamp", "price": 25, "manufacturer": "ikea",
        "description": "A desk lamp.", "attributes": {"colour": "white", "watts": 40}
    });
    app.publish(update.to_string()).await;
    wait_until("the new price is served", || async {
        app.get_json("/products/42").await.1["price"] == 25
    })
    .await;
    let (_, product) = app.get_json("/products/42").await;
    assert_eq!(product["description"], "A desk lamp.");
    assert_eq!(product["attributes"]["watts"], 40);

    let (_, page) = app.get_text("/product?id=42").await;
    assert!(page.contains("A desk lamp.") && page.contains("watts"));

    // The next id-less product is given the smallest free id, not one after
    // the ids publishers chose.
    app.publish(r#"{"name":"bulb","price":2,"manufacturer":"philips"}"#)
        .await;
    let list = app.wait_for_list_len(2).await;
    assert_eq!(
        (&list[0]["id"], &list[0]["name"]),
        (&json!(1), &json!("bulb"))
    );
}

#[tokio::test]
async fn an_invalid_message_is_set_aside_with_a_reason_and_does_not_block_the_next() {
    let app = TestApp::spawn().await;
    let bad_seq = app.publish("not json at all").await;
    app.publish(r#"{"name":"pen","price":-1,"manufacturer":"bic"}"#)
        .await;
    app.publish(r#"{"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;

    let list = app.wait_for_list_len(1).await;
    assert_eq!(list[0]["name"], "toy");

    let db = app.db().await;
    let rejected = rejected_messages::Entity::find().all(&db).await.unwrap();
    assert_eq!(rejected.len(), 2);
    let first = rejected
        .iter()
        .find(|r| r.stream_seq == bad_seq as i64)
        .unwrap();
    assert!(first.reason.contains("not valid JSON"), "{}", first.reason);
    assert_eq!(first.payload, b"not json at all");
    assert_eq!(first.subject, app.settings.nats.subject);
    assert!(
        rejected
            .iter()
            .any(|r| r.reason.contains("must not be negative")),
        "{rejected:?}"
    );

    // Rejected messages were terminated: nothing is left pending or redelivered.
    wait_until("every message is acked or terminated", || async {
        let info = app.consumer_info().await;
        info.num_ack_pending == 0 && info.num_pending == 0
    })
    .await;
    assert_eq!(products::Entity::find().count(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn a_restarted_app_serves_everything_stored_at_once_with_no_duplicates() {
    let mut app = TestApp::spawn().await;
    for payload in ::products::produce::SAMPLES {
        app.publish(payload).await;
    }
    app.wait_for_list_len(2).await;

    app.restart().await;

    // The cache is rebuilt from Postgres: the products are served before any
    // new message arrives, and nothing is stored twice.
    wait_until("the app is ready again", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    let (_, list) = app.get_json("/products").await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["pen", "toy"]);
    assert_eq!(app.get_json("/products/2").await.1["manufacturer"], "lego");
}
