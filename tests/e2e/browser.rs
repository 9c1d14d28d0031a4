//! The web UI in a real browser: headless Chromium, driven over WebDriver,
//! against the running app with the real NATS and Postgres. Every test ends
//! by checking that the page logged no error to the console (a refused
//! script or style under the CSP counts).
//!
//! `SCREENSHOTS=1 cargo nextest run -E 'test(/^e2e::browser::/)'` also saves the
//! screenshots the README shows, into `docs/screenshots/`.

use crate::common::browser::Browser;
use crate::common::{ALICE, DEADLINE, TestApp};
use serde_json::json;
use std::time::Instant;

async fn with_samples() -> TestApp {
    let app = TestApp::spawn().await;
    app.publish(
        json!({"id": 1, "name": "pen", "price": 1250, "manufacturer": "bic",
               "description": "Blue ink, medium point.",
               "attributes": {"colour": "blue", "refillable": true, "tip_mm": 0.7}})
        .to_string(),
    )
    .await;
    app.publish(r#"{"id":2,"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.publish(r#"{"id":3,"name":"desk lamp","price":2499000,"manufacturer":"Northern Lights"}"#)
        .await;
    app.wait_for_list_len(3).await;
    app
}

#[tokio::test]
async fn the_list_links_each_id_to_its_detail_page_and_back() {
    let app = with_samples().await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.base)).await;
    assert_eq!(browser.text("#count").await, "3");
    assert_eq!(
        browser.text("tr[data-id='3'] td.number").await,
        "2,499,000",
        "prices with thousands separators"
    );
    browser.screenshot("list").await;

    browser.click("tr[data-id='1'] a").await;
    browser
        .wait_for_url(&format!("{}/product?id=1", app.base))
        .await;
    assert_eq!(browser.text("h1").await, "pen");
    assert_eq!(browser.text("[data-field='price']").await, "1,250");
    assert_eq!(
        browser.text("[data-field='description']").await,
        "Blue ink, medium point."
    );
    assert!(
        browser.text("table.attributes").await.contains("colour"),
        "attributes as a table"
    );
    assert!(!browser.text("[data-field='stream_seq']").await.is_empty());
    browser.screenshot("product").await;

    browser.click("p.back a").await;
    browser.wait_for_url(&format!("{}/", app.base)).await;
    browser.finish().await;
}

#[tokio::test]
async fn the_product_page_without_an_id_returns_to_the_list_by_itself() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/product", app.base)).await;
    assert_eq!(browser.text("h1").await, "Which product?");
    browser.wait_for_url(&format!("{}/", app.base)).await;
    browser.finish().await;
}

#[tokio::test]
async fn search_and_go_to_id_find_products_and_say_when_an_id_is_wrong() {
    let app = with_samples().await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.base)).await;
    browser.type_into("#q", "LIGHTS").await;
    browser.click("form.search button").await;
    browser
        .wait_for(
            "the search results show",
            "return document.querySelectorAll('#products tbody tr').length === 1",
        )
        .await;
    assert_eq!(
        browser.text("tr[data-id='3'] td:nth-child(2)").await,
        "desk lamp"
    );

    browser.type_into("#goto-id", "abc").await;
    browser.click("form.goto button").await;
    assert!(
        browser
            .text("p.message")
            .await
            .contains("positive whole number"),
        "an id that is not a number is explained"
    );
    browser.open(&format!("{}/", app.base)).await;
    browser.type_into("#goto-id", "99").await;
    browser.click("form.goto button").await;
    assert_eq!(
        browser.text("p.message").await,
        "There is no product with id 99."
    );
    // A 404 page is a console error in Chromium ("Failed to load resource"):
    // that one is the point of this step, and is let through.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("404") || e.contains("400")),
        "{errors:#?}"
    );
    browser.open(&format!("{}/", app.base)).await;
    browser.finish().await;
}

#[tokio::test]
async fn a_published_product_appears_in_the_open_list_and_detail_without_a_reload() {
    let app = with_samples().await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.base)).await;
    browser
        .wait_for(
            "the page is live",
            "return document.getElementById('live').textContent === 'live'",
        )
        .await;
    // A reload would lose this.
    browser
        .run("window.sameDocument = 'yes'; return null")
        .await;

    app.publish(r#"{"id":7,"name":"live lamp","price":12345,"manufacturer":"acme"}"#)
        .await;
    browser
        .wait_for(
            "product 7 shows in the list",
            "return document.querySelector(\"tr[data-id='7']\") !== null",
        )
        .await;
    assert_eq!(browser.text("tr[data-id='7'] td.number").await, "12,345");
    assert_eq!(browser.text("#count").await, "4");
    // In id order: after 3.
    assert_eq!(
        browser
            .run("return [...document.querySelectorAll('#products tbody tr')].map(r => r.dataset.id).join()")
            .await,
        json!("1,2,3,7")
    );
    app.publish(r#"{"id":2,"name":"toy v2","price":100,"manufacturer":"lego"}"#)
        .await;
    browser
        .wait_for(
            "product 2 changes in place",
            "return document.querySelector(\"tr[data-id='2'] td:nth-child(2)\").textContent === 'toy v2'",
        )
        .await;
    app.publish(r#"{"id":1,"deleted":true}"#).await;
    browser
        .wait_for(
            "product 1 leaves the list",
            "return document.querySelector(\"tr[data-id='1']\") === null",
        )
        .await;
    assert_eq!(
        browser.run("return window.sameDocument").await,
        json!("yes")
    );

    browser.open(&format!("{}/product?id=3", app.base)).await;
    browser
        .wait_for(
            "the page is live",
            "return document.getElementById('live').textContent === 'live'",
        )
        .await;
    browser
        .run("window.sameDocument = 'yes'; return null")
        .await;
    app.publish(
        r#"{"id":3,"name":"desk lamp XL","price":2600000,"manufacturer":"Northern Lights"}"#,
    )
    .await;
    browser
        .wait_for(
            "the detail page shows the new version",
            "return document.querySelector('h1').textContent === 'desk lamp XL'",
        )
        .await;
    assert_eq!(browser.text("[data-field='price']").await, "2,600,000");
    assert_eq!(
        browser.run("return window.sameDocument").await,
        json!("yes")
    );
    browser.finish().await;
}

#[tokio::test]
async fn a_product_is_added_edited_and_deleted_through_the_forms() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    // The form asks to sign in first, and comes back after.
    browser.open(&format!("{}/manage/new", app.base)).await;
    browser
        .wait_for_url(&format!("{}/signin?next=%2Fmanage%2Fnew", app.base))
        .await;
    browser.type_into("#name", ALICE.0).await;
    browser.type_into("#password", "not the password").await;
    browser.click("form.signin button").await;
    assert_eq!(
        browser.text("#signin-problem").await,
        "The name or the password is wrong."
    );
    browser.screenshot("signin").await;
    // The failed sign-in holds this address back for a moment ("Too many
    // failed sign-ins"): the right password is sent until it is taken.
    let form = format!("{}/manage/new", app.base);
    let deadline = Instant::now() + DEADLINE;
    while browser.client.current_url().await.unwrap().as_str() != form {
        assert!(Instant::now() < deadline, "the sign-in was never taken");
        let name = browser.find("#name").await;
        name.clear().await.unwrap();
        name.send_keys(ALICE.0).await.unwrap();
        browser.type_into("#password", ALICE.1).await;
        // A mark on this page: gone once the answer's page has loaded.
        browser.run("window.beforeAnswer = true").await;
        browser.click("form.signin button").await;
        browser
            .wait_for(
                "the answer's page",
                "return window.beforeAnswer !== true && document.readyState === 'complete'",
            )
            .await;
    }
    assert_eq!(browser.text("header .who strong").await, ALICE.0);
    // Chromium logs the 401 (and any 429) answer as a failed resource.
    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .all(|e| e.contains("401") || e.contains("429")),
        "{errors:#?}"
    );
    browser.type_into("#name", "form pen").await;
    browser.type_into("#price", "ten").await;
    browser.type_into("#attributes", "{\"colour\": ").await;
    browser.click("form.product-form button").await;
    // The decoder's words, next to each field at fault; nothing was sent.
    assert_eq!(
        browser.text("#price-error").await,
        "Price must be a number, found a string"
    );
    assert_eq!(
        browser.text("#manufacturer-error").await,
        "Manufacturer must not be empty"
    );
    assert!(
        browser
            .text("#attributes-error")
            .await
            .starts_with("Attributes must be a JSON object")
    );
    assert_eq!(
        browser
            .find("#name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("form pen"),
        "what was typed stays"
    );
    browser.screenshot("form-errors").await;
    // Chromium logs the 422 answer as a failed resource: expected here.
    let errors = browser.console_errors().await;
    assert!(errors.iter().all(|e| e.contains("422")), "{errors:#?}");

    let price = browser.find("#price").await;
    price.clear().await.unwrap();
    price.send_keys("1500").await.unwrap();
    browser.type_into("#manufacturer", "bic").await;
    let attributes = browser.find("#attributes").await;
    attributes.clear().await.unwrap();
    attributes.send_keys("{\"colour\": \"red\"}").await.unwrap();
    browser.click("form.product-form button").await;
    // "Sent, waiting to be stored", then the stored result.
    browser.click("#stored-link").await;
    assert_eq!(browser.text("h1").await, "form pen");
    assert_eq!(browser.text("[data-field='price']").await, "1,500");
    let id: i64 = browser
        .run("return document.getElementById('product').dataset.id")
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        app.wait_for_product(id).await["attributes"]["colour"],
        "red"
    );

    browser.click(".actions a").await;
    let name = browser.find("#name").await;
    name.clear().await.unwrap();
    name.send_keys("form pen, blue").await.unwrap();
    browser.click("form.product-form button").await;
    browser.click("#stored-link").await;
    assert_eq!(browser.text("h1").await, "form pen, blue");

    browser.click("button.danger").await;
    // "Sent, waiting to be stored" until the deletion is stored.
    browser
        .wait_for(
            "the deletion is stored",
            "return document.querySelector('h1').textContent === 'Deleted'",
        )
        .await;
    assert_eq!(app.get(&format!("/products/{id}")).await.status(), 404);
    browser.finish().await;
}

#[tokio::test]
async fn a_product_named_like_markup_is_shown_as_text_on_every_path() {
    let app = TestApp::spawn().await;
    let name = r#"<img src=x id=injected><b>bold</b>"#;
    app.publish(json!({"id": 1, "name": name, "price": 1, "manufacturer": "<i>m</i>"}).to_string())
        .await;
    app.wait_for_product(1).await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.base)).await;
    assert_eq!(browser.text("tr[data-id='1'] td:nth-child(2)").await, name);
    browser
        .wait_for(
            "the page is live",
            "return document.getElementById('live').textContent === 'live'",
        )
        .await;
    // The same name arriving live is written as text too.
    app.publish(json!({"id": 2, "name": name, "price": 1, "manufacturer": "m"}).to_string())
        .await;
    browser
        .wait_for(
            "product 2 shows",
            "return document.querySelector(\"tr[data-id='2']\") !== null",
        )
        .await;
    assert_eq!(browser.text("tr[data-id='2'] td:nth-child(2)").await, name);
    assert_eq!(
        browser
            .run("return document.querySelectorAll('#injected, b, i').length")
            .await,
        json!(0),
        "no element came from the data"
    );
    browser.open(&format!("{}/product?id=1", app.base)).await;
    assert_eq!(browser.text("h1").await, name);
    assert_eq!(
        browser.run("return document.title").await,
        json!(format!("{name} · Products"))
    );
    assert_eq!(
        browser
            .run("return document.querySelectorAll('#injected').length")
            .await,
        json!(0)
    );
    browser.finish().await;
}

#[tokio::test]
async fn the_rejected_page_shows_why_a_message_was_set_aside_and_the_list_fits_a_phone() {
    let app = with_samples().await;
    app.publish(r#"{"name":"<b>no price</b>","manufacturer":"bic"}"#)
        .await;
    crate::common::wait_until("the message is set aside", || async {
        app.rejected_count().await == 1
    })
    .await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/rejected", app.base)).await;
    assert_eq!(
        browser.text("table.rejected tbody td:nth-child(3)").await,
        "the field `price` is missing"
    );
    assert!(
        browser
            .text("code.payload")
            .await
            .contains("<b>no price</b>")
    );
    browser.screenshot("rejected").await;

    browser.client.set_window_size(390, 844).await.unwrap();
    browser.open(&format!("{}/", app.base)).await;
    assert_eq!(
        browser
            .run("return document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true),
        "no sideways scrolling on a phone"
    );
    browser.screenshot("list-phone").await;
    browser.finish().await;
}

#[tokio::test]
async fn a_page_whose_server_went_away_is_brought_up_to_date_when_it_comes_back() {
    // A fixed port, so that the page's stream finds the server again where
    // it left it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = crate::common::unique_settings();
    settings.http.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut app = TestApp::spawn_with(settings, Default::default()).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.publish(r#"{"id":2,"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.wait_for_list_len(2).await;
    app.wait_for_readiness("cache", true).await;
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.base)).await;
    browser
        .wait_for(
            "the page is live",
            "return document.getElementById('live').textContent === 'live'",
        )
        .await;
    browser
        .run("window.sameDocument = 'yes'; return null")
        .await;

    // The server goes away; meanwhile the catalogue changes (by another
    // replica, say, or by hand).
    app.stop().await;
    browser
        .wait_for(
            "the page sees it is away",
            "return document.getElementById('live').textContent !== 'live'",
        )
        .await;
    app.sql(
        "UPDATE products SET name = 'renamed while away' WHERE id = 2; \
         INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (3, 'added while away', 5, 'psql', 'elsewhere', 1); \
         DELETE FROM products WHERE id = 1",
    )
    .await;
    app.restart().await;

    browser
        .wait_for(
            "what changed while it was away shows, without a reload",
            "return document.querySelector(\"tr[data-id='3']\") !== null \
               && document.querySelector(\"tr[data-id='1']\") === null \
               && document.querySelector(\"tr[data-id='2'] td:nth-child(2)\").textContent \
                  === 'renamed while away'",
        )
        .await;
    assert_eq!(
        browser.run("return window.sameDocument").await,
        json!("yes")
    );
    assert_eq!(
        browser
            .run("return document.getElementById('missed').hidden")
            .await,
        json!(true),
        "not told to reload"
    );
}
