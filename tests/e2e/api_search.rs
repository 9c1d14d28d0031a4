//! The JSON API searches as the pages do: `?q=` with the same rules, and
//! also by manufacturer and price range, paged with a `Link` that keeps the
//! filter.

use crate::common::{TestApp, lock_products, wait_until};
use serde_json::Value;

async fn with_products() -> TestApp {
    let app = TestApp::spawn().await;
    for (id, name, manufacturer, price) in [
        (1, "Blue PEN", "bic", 10),
        (2, "toy", "lego", 100),
        (3, "pencil", "Bic", 5),
        (4, "pen holder", "ikea", 50),
        (5, "lamp", "ikea", 500),
    ] {
        app.publish(format!(
            r#"{{"id":{id},"name":"{name}","price":{price},"manufacturer":"{manufacturer}"}}"#
        ))
        .await;
    }
    app.wait_for_product(5).await;
    app.wait_for_list_len(5).await;
    app
}

async fn ids(app: &TestApp, query: &str) -> Vec<i64> {
    let (status, body) = app.get_json(&format!("/products?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_api_filters_by_text_manufacturer_and_price_as_the_page_searches() {
    let app = with_products().await;
    assert_eq!(ids(&app, "q=pen").await, [1, 3, 4]);
    // The page finds the same products for the same text.
    let (_, page) = app.get_text("/?q=pen").await;
    for (id, shown) in [(1, true), (2, false), (3, true), (4, true), (5, false)] {
        assert_eq!(
            page.contains(&format!("/product?id={id}\"")),
            shown,
            "{id} on the page"
        );
    }
    assert_eq!(ids(&app, "manufacturer=BIC").await, [1, 3]);
    assert_eq!(ids(&app, "min_price=10&max_price=100").await, [1, 2, 4]);
    assert_eq!(ids(&app, "min_price=100").await, [2, 5]);
    assert_eq!(ids(&app, "q=pen&manufacturer=ikea").await, [4]);
    assert_eq!(ids(&app, "q=zebra").await, Vec::<i64>::new());
}

#[tokio::test]
async fn a_filtered_list_is_paged_and_its_link_keeps_the_filter() {
    let app = with_products().await;
    let response = app.get("/products?q=pen&limit=2").await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, r#"</products?after=3&limit=2&q=pen>; rel="next""#);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_eq!(ids(&app, "after=3&limit=2&q=pen").await, [4]);
}

#[tokio::test]
async fn a_filter_out_of_its_rules_is_a_problem_that_says_which() {
    let app = with_products().await;
    for (query, says) in [
        ("q=pe", "at least 3 characters"),
        ("min_price=cheap", "`min_price` must be a price"),
        ("max_price=-1", "`max_price` must be a price"),
        ("min_price=10&max_price=5", "must not be more than"),
    ] {
        let (status, body) = app.get_json(&format!("/products?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn a_search_is_answered_from_memory_and_follows_renames_deletions_and_writes_by_hand() {
    let app = with_products().await;
    // Renamed away from the text, deleted, and written by another writer
    // in SQL (seen through the change feed only).
    app.publish(r#"{"id":3,"name":"crayon","price":5,"manufacturer":"Bic"}"#)
        .await;
    app.publish(r#"{"id":4,"deleted":true}"#).await;
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (900, 'Fountain pen', 70, 'Pelikan', 'elsewhere', 1)",
    )
    .await;
    wait_until("the search sees every change", || async {
        ids(&app, "q=pen").await == [1, 900]
    })
    .await;
    assert_eq!(ids(&app, "manufacturer=pelikan").await, [900]);
    assert_eq!(ids(&app, "q=cray").await, [3]);
    // With every read and write of the table waiting on a lock, searches
    // are still answered: from memory.
    let db = app.db().await;
    let lock = lock_products(&db).await;
    assert_eq!(ids(&app, "q=pen").await, [1, 900]);
    assert_eq!(ids(&app, "q=pen&after=1").await, [900]);
    assert_eq!(ids(&app, "min_price=60").await, [2, 5, 900]);
    drop(lock);
}
