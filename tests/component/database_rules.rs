//! What Postgres refuses that is not the message's fault is never set aside as
//! if it were: ids written by hand do not make id-less products collide, and a
//! constraint the contract does not know (added by a deployment) holds the
//! message back for redelivery instead of discarding it.

use crate::common::{TestApp, unique_settings, wait_until, wait_until_within};
use actors::supervisor::RestartBudget;
use std::time::Duration;

#[tokio::test]
async fn an_id_less_product_does_not_collide_with_ids_written_by_hand() {
    let app = TestApp::spawn().await;
    // Written by hand (or imported), past the id sequence.
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) VALUES \
         (1, 'a', 1, 'm', 'by hand', 0), (2, 'b', 1, 'm', 'by hand', 0), \
         (3, 'c', 1, 'm', 'by hand', 0)",
    )
    .await;
    app.publish(r#"{"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    let listed = app.wait_for_list_len(4).await;
    assert_eq!(listed[3]["id"], 4);
    assert_eq!(listed[3]["name"], "pen");
    assert_eq!(app.rejected_count().await, 0);
}

#[tokio::test]
async fn an_id_less_product_after_the_largest_explicit_id_gets_a_small_one_a_message_can_delete() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":9007199254740992,"name":"at the top","price":1,"manufacturer":"m"}"#)
        .await;
    app.wait_for_product(9_007_199_254_740_992).await;
    app.publish(r#"{"name":"id-less","price":1,"manufacturer":"m"}"#)
        .await;
    let listed = app.wait_for_list_len(2).await;
    assert_eq!(listed[0]["name"], "id-less");
    let id = listed[0]["id"].as_i64().unwrap();
    assert_eq!(id, 1);
    app.publish(format!(r#"{{"id":{id},"deleted":true}}"#))
        .await;
    let listed = app.wait_for_list_len(1).await;
    assert_eq!(listed[0]["name"], "at the top");
    assert_eq!(app.rejected_count().await, 0);
}

#[tokio::test]
async fn an_id_less_product_that_no_id_is_left_for_is_set_aside_with_the_reason() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"first","price":1,"manufacturer":"m"}"#)
        .await;
    app.wait_for_product(1).await;
    // As if 2^53 ids had been assigned.
    app.sql("SELECT setval('products_id_seq', 9007199254740992)")
        .await;
    app.publish(r#"{"name":"one too many","price":1,"manufacturer":"m"}"#)
        .await;
    app.publish(r#"{"id":2,"name":"behind it","price":1,"manufacturer":"m"}"#)
        .await;
    app.wait_for_product(2).await;
    wait_until("the id-less product is set aside", || async {
        app.rejected_count().await == 1
    })
    .await;
    let (_, page) = app.get_text("/rejected").await;
    assert!(page.contains("no product id is left to assign"), "{page}");
    assert_eq!(app.wait_for_list_len(2).await.len(), 2);
}

#[tokio::test]
async fn a_message_refused_by_a_new_constraint_is_redelivered_not_set_aside_before_its_last_delivery()
 {
    let mut settings = unique_settings();
    settings.ingest.max_deliveries = 100;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.sql("ALTER TABLE products ADD CONSTRAINT price_below_1000 CHECK (price < 1000)")
        .await;
    // Alone in its batch: no other message shows that the database is at fault.
    app.publish(r#"{"id":5,"name":"lamp","price":5000,"manufacturer":"ikea"}"#)
        .await;

    wait_until("the message was refused and redelivered", || async {
        app.consumer_info().await.num_redelivered >= 1
    })
    .await;
    assert_eq!(app.rejected_count().await, 0, "nothing is set aside");
    let body = app.wait_for_readiness("postgres", false).await;
    let error = body["postgres"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("price_below_1000"), "{body}");

    // The deployment is rolled back: the message is stored.
    app.sql("ALTER TABLE products DROP CONSTRAINT price_below_1000")
        .await;
    assert_eq!(app.wait_for_product(5).await["price"], 5000);
    app.wait_for_readiness("postgres", true).await;
}

#[tokio::test]
async fn thousands_of_refused_messages_are_set_aside_and_a_valid_one_behind_them_is_stored_within_a_minute()
 {
    let app = TestApp::spawn().await;
    app.sql("ALTER TABLE products ADD CONSTRAINT price_below_1000 CHECK (price < 1000)")
        .await;
    // More than the consumer's max_ack_pending (4 × 500): were they held
    // forever, nothing behind them would ever be delivered.
    const REFUSED: usize = 2100;
    let acks = futures::future::join_all((0..REFUSED).map(|i| {
        let payload = format!(
            r#"{{"id":{},"name":"lamp","price":5000,"manufacturer":"m"}}"#,
            i + 1
        );
        let js = app.js.clone();
        let subject = app.settings.nats.subject.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .unwrap()
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(acks.len(), REFUSED);
    app.publish(r#"{"id":99999,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;

    // While they come again, /readyz names the constraint and /metrics
    // counts them.
    let body = app.wait_for_readiness("postgres", false).await;
    assert!(
        body["postgres"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("price_below_1000"),
        "{body}"
    );
    wait_until(
        "the refused messages are counted as being retried",
        || async {
            app.get_text("/metrics").await.1.lines().any(|line| {
                line.starts_with("products_consumer_redelivered_messages{") && !line.ends_with(" 0")
            })
        },
    )
    .await;

    wait_until_within(
        "the valid product behind them is stored",
        Duration::from_secs(60),
        || async { app.get("/products/99999").await.status() == 200 },
    )
    .await;
    wait_until_within(
        "every refused message is set aside",
        Duration::from_secs(60),
        || async { app.rejected_count().await == REFUSED as u64 },
    )
    .await;
    let (_, page) = app.get_text("/rejected").await;
    assert!(
        page.contains("price_below_1000"),
        "the reason is Postgres's: {page}"
    );
    assert_eq!(app.get("/products/1").await.status(), 404);
}
