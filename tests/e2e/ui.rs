//! The web UI over HTTP: the live pages' feed (the change stream as
//! Server-Sent Events), the manage forms' protections, `UI_MANAGE=false`,
//! and the list page's size.

use crate::common::{ALICE, DEADLINE, TestApp, no_redirect, unique_settings};
use actors::supervisor::RestartBudget;
use products::settings::UiManage;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

/// One Server-Sent Events stream of `/products/changes`, read event by event,
/// as a browser's `EventSource` reads it.
struct Feed {
    response: reqwest::Response,
    buffer: String,
    /// The last event id received, as a browser keeps it for `Last-Event-ID`.
    last_id: String,
}

#[derive(Debug)]
struct Event {
    name: String,
    id: String,
    data: Value,
}

impl Feed {
    async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Feed {
        let mut request = reqwest::Client::new()
            .get(format!("{}{path}", app.base))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("the feed answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Feed {
            response,
            buffer: String::new(),
            last_id: String::new(),
        }
    }

    /// The `change` events up to the next `up_to_date`, and that one.
    async fn until_up_to_date(&mut self) -> (Vec<Event>, Event) {
        let mut changes = Vec::new();
        loop {
            let event = self.next().await;
            if event.name == "up_to_date" {
                return (changes, event);
            }
            assert_eq!(event.name, "change", "{event:?}");
            changes.push(event);
        }
    }

    /// The next event, within [`DEADLINE`].
    async fn next(&mut self) -> Event {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .find_map(|line| line.strip_prefix(&format!("{name}:")))
                            .map(|value| value.trim().to_owned())
                    };
                    if let Some(id) = field("id") {
                        self.last_id = id;
                    }
                    let Some(name) = field("event") else { continue };
                    return Event {
                        name,
                        id: field("id").unwrap_or_default(),
                        data: serde_json::from_str(&field("data").unwrap_or_default())
                            .unwrap_or(Value::Null),
                    };
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the feed stays open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event comes in time")
    }
}

#[tokio::test]
async fn the_feed_streams_each_write_even_one_made_by_another_writer_in_sql() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    app.wait_for_readiness("cache", true).await;
    let mut feed = Feed::open(&app, "/products/changes", None).await;
    let (none, _) = feed.until_up_to_date().await;
    assert!(none.is_empty(), "from now on: {none:?}");

    // Not through this app's ingest: what another replica (or a person)
    // stores reaches the feed through Postgres.
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (9, 'by hand', 1234, 'psql', 'elsewhere', 1)",
    )
    .await;
    let (changes, up_to_date) = feed.until_up_to_date().await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let change = &changes[0];
    assert_eq!(change.data["op"], "upsert");
    assert_eq!(change.data["product"]["id"], 9);
    assert_eq!(change.data["product"]["name"], "by hand");
    // Its id is its position (what `Last-Event-ID` resumes from).
    assert_eq!(change.id, change.data["position"]);
    assert_eq!(up_to_date.id, up_to_date.data["position"]);

    app.publish(r#"{"id":9,"deleted":true}"#).await;
    let (changes, _) = feed.until_up_to_date().await;
    assert_eq!(
        (changes[0].data["op"].clone(), changes[0].data["id"].clone()),
        (json!("delete"), json!(9))
    );
    // The count the page shows comes with `up_to_date`, once the cache has it.
    let mut count = Value::Null;
    while count != json!(1) {
        count = feed.until_up_to_date().await.1.data["count"].clone();
    }
}

#[tokio::test]
async fn a_follower_that_comes_back_behind_gets_what_it_missed_and_one_up_to_date_is_not_sent_it_again()
 {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    app.wait_for_readiness("cache", true).await;
    let mut feed = Feed::open(&app, "/products/changes", None).await;
    let position = feed.until_up_to_date().await.1.id;
    drop(feed);

    // While it is away: a change, and a deletion.
    app.publish(r#"{"id":2,"name":"toy","price":5,"manufacturer":"lego"}"#)
        .await;
    app.publish(r#"{"id":1,"deleted":true}"#).await;
    crate::common::wait_until("the deletion is applied", || async {
        app.get("/products/1").await.status() == 404
    })
    .await;

    // The browser comes back with the last id it saw.
    let mut behind = Feed::open(&app, "/products/changes", Some(&position)).await;
    let (mut missed, _) = behind.until_up_to_date().await;
    missed.sort_by_key(|event| {
        event.data["product"]["id"]
            .as_i64()
            .or(event.data["id"].as_i64())
    });
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert_eq!(missed[0].data["op"], "delete", "{missed:?}");
    assert_eq!(missed[1].data["product"]["name"], "toy", "{missed:?}");
    // Coming back from where that left it: nothing again.
    let caught_up = behind.last_id.clone();
    assert_ne!(caught_up, position);
    drop(behind);
    let mut up_to_date = Feed::open(&app, "/products/changes", Some(&caught_up)).await;
    let (again, _) = up_to_date.until_up_to_date().await;
    assert!(again.is_empty(), "nothing to bring again: {again:?}");
    // The page's own position (`?after=`) works the same way.
    let mut from_page =
        Feed::open(&app, &format!("/products/changes?after={position}"), None).await;
    assert_eq!(from_page.until_up_to_date().await.0.len(), 2);
}

#[tokio::test]
async fn a_follower_that_does_not_read_misses_nothing_once_it_reads_again() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let mut feed = Feed::open(&app, "/products/changes", None).await;
    feed.until_up_to_date().await;

    // A hundred and fifty commits while it reads nothing: more batches than
    // the shared reader keeps for it, so it reads its way back from Postgres.
    let db = app.db().await;
    for id in 1..=150 {
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
             VALUES ({id}, 'p{id}', {id}, 'm', 'test', {id})"
        ))
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    while seen.len() < 150 {
        for change in feed.until_up_to_date().await.0 {
            *seen
                .entry(change.data["product"]["id"].as_i64().unwrap())
                .or_default() += 1;
        }
    }
    assert!(seen.values().all(|&times| times == 1), "{seen:?}");
}

#[tokio::test]
async fn with_ui_manage_false_there_is_no_form_and_nothing_can_be_posted() {
    let mut settings = unique_settings();
    settings.manage.ui = UiManage::False;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    let alice = app.sign_in_refused(ALICE).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    for path in ["/manage/new", "/manage/edit?id=1", "/signin"] {
        let (status, page) = app.get_signed_in(&alice, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(page.contains("UI_MANAGE=false"), "{page}");
    }
    let posted = app
        .http
        .post(format!("{}/manage/delete", app.base))
        .form(&[("id", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 404);
    for path in ["/", "/product?id=1", "/rejected"] {
        let (_, page) = app.get_text(path).await;
        assert!(!page.contains("/manage/"), "{path} offers no form: {page}");
        assert!(
            !page.contains("/signin"),
            "{path} offers no sign-in: {page}"
        );
    }
}

#[tokio::test]
async fn the_list_page_of_100_products_is_under_50_kb() {
    let app = TestApp::spawn().await;
    for id in 1..=100 {
        app.publish(
            json!({"id": id, "name": format!("Stainless steel water bottle {id:03}"),
                   "price": 1_234_567 + id, "manufacturer": "Northern Outfitters Ltd",
                   "description": "x".repeat(500)})
            .to_string(),
        )
        .await;
    }
    app.wait_for_list_len(100).await;
    // Warm: the first request after start fills nothing the second needs.
    let _ = app.get_text("/").await;
    let started = Instant::now();
    let response = app.get("/").await;
    let first_byte = started.elapsed();
    let page = response.text().await.unwrap();
    assert_eq!(page.matches("<tr data-id=").count(), 100);
    println!(
        "list of 100 products: {} bytes, headers after {:?}",
        page.len(),
        first_byte
    );
    assert!(page.len() < 50 * 1024, "{} bytes", page.len());
}

#[tokio::test]
async fn a_form_sent_twice_is_one_message_but_sent_again_changed_is_a_new_one() {
    let app = TestApp::spawn().await;
    let cookie = app.sign_in(ALICE).await;
    let token = app.form_token(&cookie).await;
    let no_redirect = no_redirect();
    let send = |name: &'static str| {
        no_redirect
            .post(format!("{}/manage/save", app.base))
            .header("Cookie", &cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("message_id", "ui-one-form"),
                ("id", "12"),
                ("name", name),
                ("price", "1"),
                ("manufacturer", "m"),
            ])
            .send()
    };
    let location = |response: reqwest::Response| {
        assert_eq!(response.status(), 303);
        response.headers()["location"].to_str().unwrap().to_owned()
    };
    let first = location(send("first").await.unwrap());
    let again = location(send("first").await.unwrap());
    assert_eq!(first, again, "JetStream dropped the repeat: same sequence");
    let changed = location(send("second").await.unwrap());
    assert_ne!(first, changed);
    crate::common::wait_until("the changed form is stored", || async {
        app.get_json("/products/12").await.1["name"] == "second"
    })
    .await;
}
