//! The web UI over HTTP: the live feed (`/events`), the manage forms'
//! protections, `UI_MANAGE=false`, and the list page's size.

use crate::common::{ALICE, DEADLINE, TestApp, no_redirect, unique_settings};
use actors::cache::{LIVE_BUFFER, LiveEvent, ProductCache};
use actors::names::Names;
use actors::supervisor::RestartBudget;
use products::settings::UiManage;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast::error::TryRecvError;

/// One Server-Sent Events stream, read event by event.
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
        let mut request = reqwest::Client::new().get(format!("{}{path}", app.base));
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

    /// The next event (comments and `position` events skipped: their id is
    /// kept), within [`DEADLINE`].
    async fn next(&mut self) -> Event {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let event = tokio::time::timeout_at(until, self.next_any())
                .await
                .expect("an event other than `position` comes in time");
            if event.name != "position" {
                return event;
            }
        }
    }

    /// Events up to `hello` (what a follower is brought first), `hello` itself.
    async fn until_hello(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if event.name == "hello" {
                return event;
            }
        }
    }

    /// The next event, `position` ones included, within [`DEADLINE`].
    async fn next_any(&mut self) -> Event {
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
    let mut feed = Feed::open(&app, "/events", None).await;
    let hello = feed.until_hello().await;

    // Not through this app's ingest: what another replica (or a person)
    // stores reaches the feed through Postgres's change feed.
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (9, 'by hand', 1234, 'psql', 'elsewhere', 1)",
    )
    .await;
    let event = feed.next().await;
    assert_eq!(event.name, "product");
    assert_eq!(event.data["id"], 9);
    assert_eq!(event.data["name"], "by hand");
    assert_eq!(event.data["count"], 2);
    let revision = event.data["revision"].as_i64().unwrap();
    // Ids are positions (Postgres snapshots), not revisions.
    assert_eq!(hello.id.split(':').count(), 3, "{}", hello.id);

    app.publish(r#"{"id":9,"deleted":true}"#).await;
    let event = feed.next().await;
    assert_eq!(
        (event.data["id"].clone(), event.data["deleted"].clone()),
        (json!(9), json!(true))
    );
    assert_eq!(event.data["count"], 1);
    assert!(event.data["revision"].as_i64().unwrap() > revision);
}

#[tokio::test]
async fn a_follower_that_comes_back_behind_gets_what_it_missed_and_one_up_to_date_is_not_sent_it_again()
 {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let mut feed = Feed::open(&app, "/events", None).await;
    let position = feed.until_hello().await.id;
    drop(feed);

    // While it is away: a change, and a deletion.
    app.publish(r#"{"id":2,"name":"toy","price":5,"manufacturer":"lego"}"#)
        .await;
    app.publish(r#"{"id":1,"deleted":true}"#).await;
    crate::common::wait_until("the deletion is applied", || async {
        app.get("/products/1").await.status() == 404
    })
    .await;

    let mut behind = Feed::open(&app, "/events", Some(&position)).await;
    let mut missed = Vec::new();
    loop {
        let event = behind.next().await;
        if event.name == "hello" {
            break;
        }
        missed.push(event);
    }
    missed.sort_by_key(|event| event.data["id"].as_i64());
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert_eq!(missed[0].data["deleted"], true, "{missed:?}");
    assert_eq!(missed[1].data["name"], "toy", "{missed:?}");
    // `hello` moved its position past them: coming back from there, nothing again.
    let caught_up = behind.last_id.clone();
    assert_ne!(caught_up, position);
    drop(behind);
    let mut up_to_date = Feed::open(&app, "/events", Some(&caught_up)).await;
    assert_eq!(
        up_to_date.next().await.name,
        "hello",
        "nothing to bring again"
    );
    // The page's own position (`?since=`) works the same way, and one that
    // is not a position is told to reload.
    let mut from_page = Feed::open(
        &app,
        &format!("/events?since={}", urlencode(&position)),
        None,
    )
    .await;
    assert_eq!(from_page.next().await.name, "product");
    assert_eq!(
        Feed::open(&app, "/events?since=0", None)
            .await
            .next()
            .await
            .name,
        "reload"
    );
}

#[tokio::test]
async fn a_change_committed_after_a_later_revision_still_reaches_a_follower_that_reconnects() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let mut feed = Feed::open(&app, "/events", None).await;
    feed.until_hello().await;

    // A writes product 1 first (the lower revision) but commits last.
    let db = app.db().await;
    let a = sea_orm::TransactionTrait::begin(&db).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &a,
        "UPDATE products SET name = 'written first, committed last' WHERE id = 1",
    )
    .await
    .unwrap();
    app.sql(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (2, 'written last, committed first', 1, 'psql', 'elsewhere', 1)",
    )
    .await;
    let b = feed.next().await;
    assert_eq!(b.data["id"], 2);
    // The feed's position moves past B (A still in progress), the page goes
    // away there, and A commits meanwhile.
    let before_b = b.id.clone();
    loop {
        let event = feed.next_any().await;
        if event.name == "position" && event.id != before_b {
            break;
        }
    }
    let last_seen = feed.last_id.clone();
    drop(feed);
    a.commit().await.unwrap();

    let mut back = Feed::open(&app, "/events", Some(&last_seen)).await;
    let event = back.next().await;
    assert_eq!(event.name, "product", "A's change, not a hello: {event:?}");
    assert_eq!(event.data["id"], 1);
    assert_eq!(event.data["name"], "written first, committed last");
    back.until_hello().await;
    assert_ne!(back.last_id, last_seen, "its position moved past A");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace(',', "%2C")
}

#[tokio::test]
async fn a_follower_that_does_not_read_keeps_at_most_the_buffer_and_learns_it_lost_some() {
    let products = ProductCache::new(&Names::new(uuid::Uuid::new_v4().to_string()), 1 << 20);
    let mut follower = products.follow();
    let count = LIVE_BUFFER as i64 + 50;
    for id in 1..=count {
        products.put([crate::common::product(id, id)]).await;
    }
    // The oldest were dropped for it: it is told how many, which the feed
    // turns into `reload`.
    match follower.try_recv() {
        Err(TryRecvError::Lagged(lost)) => assert_eq!(lost, 50),
        other => panic!("expected a lag, got {other:?}"),
    }
    let mut kept = 0;
    while let Ok(event) = follower.try_recv() {
        assert!(matches!(event.event, LiveEvent::Changed(_)));
        kept += 1;
    }
    assert_eq!(kept, LIVE_BUFFER);
}

#[tokio::test]
async fn a_repeated_write_of_the_same_version_is_not_announced_again() {
    let products = ProductCache::new(&Names::new(uuid::Uuid::new_v4().to_string()), 1 << 20);
    let mut follower = products.follow();
    let product = crate::common::product(1, 5);
    products.put([Arc::clone(&product)]).await;
    // Ingest's own write, then the change feed's: one change.
    products.put([Arc::clone(&product)]).await;
    assert!(follower.try_recv().is_ok());
    assert!(matches!(follower.try_recv(), Err(TryRecvError::Empty)));
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
