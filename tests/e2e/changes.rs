//! The change stream (`GET /products/changes`) and the snapshot it starts
//! from (`GET /products.ndjson`), as a program follows them: resumed after a
//! disconnect it gets each change once, in the order commits became visible;
//! a position older than the retention is 410; a snapshot and the changes
//! after its position make the catalogue.

use crate::common::{DEADLINE, TestApp, unique_settings, wait_until};
use actors::supervisor::RestartBudget;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A stream's lines, read as they come.
struct Lines {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Lines {
    /// The next line, as JSON (within the deadline).
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line[..end])
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line)));
            }
            let chunk = tokio::time::timeout(DEADLINE, self.response.chunk())
                .await
                .expect("a line within the deadline")
                .expect("the stream goes on")
                .expect("the stream is not over");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The changes until the next `up_to_date`, and its position.
    async fn until_up_to_date(&mut self) -> (Vec<Value>, String) {
        let mut changes = Vec::new();
        loop {
            let line = self.next().await;
            if line["op"] == "up_to_date" {
                return (changes, line["position"].as_str().unwrap().to_owned());
            }
            changes.push(line);
        }
    }

    /// The changes until the first `up_to_date` after one at least: the
    /// stream may say it is up to date (its tick) before a write lands.
    async fn until_changes(&mut self) -> Vec<Value> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let (changes, _) = self.until_up_to_date().await;
                if !changes.is_empty() {
                    return changes;
                }
            }
        })
        .await
        .expect("a change within the deadline")
    }
}

/// Follows the changes after `after` (none: from now on).
async fn follow(app: &TestApp, after: Option<&str>) -> Lines {
    let path = match after {
        Some(after) => format!("/products/changes?after={after}"),
        None => "/products/changes".to_owned(),
    };
    let response = app.get(&path).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "{path}"
    );
    Lines {
        response,
        buffer: Vec::new(),
    }
}

/// A position as an ordered pair.
fn position(text: &str) -> (u64, i64) {
    match text.split_once('.') {
        Some((xid, slot)) => (xid.parse().unwrap(), slot.parse().unwrap()),
        None => (text.parse().unwrap(), i64::MAX),
    }
}

async fn insert(txn: &DatabaseTransaction, id: i64) {
    txn.execute_unprepared(&format!(
        "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES ({id}, 'p{id}', {id}, 'm', 'test', {id})"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stream_resumed_after_a_disconnect_gets_each_change_once_across_overlapping_transactions()
{
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let mut first = follow(&app, Some("0")).await;
    let (before, _) = first.until_up_to_date().await;
    assert!(before.is_empty(), "{before:?}");

    // A hundred writes in two transactions that overlap: the early one takes
    // its transaction id first and commits last.
    let db = app.db().await;
    let early = db.begin().await.unwrap();
    let late = db.begin().await.unwrap();
    for id in 1..=50 {
        insert(&early, id).await;
        insert(&late, id + 50).await;
    }
    late.commit().await.unwrap();
    // The late one's changes are committed but not served: they would come
    // before the early one's, which may still commit at lower positions.
    let (held, _) = follow(&app, Some("0")).await.until_up_to_date().await;
    assert!(
        held.is_empty(),
        "{} served before the early commit",
        held.len()
    );
    early.commit().await.unwrap();

    let mut seen: Vec<((u64, i64), i64)> = Vec::new();
    // Thirty of them (the early transaction's first thirty ids, in position
    // order), then the connection is dropped.
    let mut last = String::new();
    while seen.len() < 30 {
        let line = first.next().await;
        if line["op"] != "up_to_date" {
            record(&mut seen, &line);
            last = line["position"].as_str().unwrap().to_owned();
        }
    }
    drop(first);

    // Resumed from the last position seen, while ten of those already sent
    // change again (they come again, at new positions).
    let mut second = follow(&app, Some(&last)).await;
    let again = db.begin().await.unwrap();
    again
        .execute_unprepared("UPDATE products SET price = price + 1000 WHERE id <= 10")
        .await
        .unwrap();
    again.commit().await.unwrap();
    while seen.len() < 100 + 10 {
        let (changes, _) = second.until_up_to_date().await;
        for line in &changes {
            record(&mut seen, line);
        }
    }
    let (more, _) = second.until_up_to_date().await;
    assert!(more.is_empty(), "{more:?}");

    // Every change once, in increasing positions, none lost.
    let positions: Vec<(u64, i64)> = seen.iter().map(|(p, _)| *p).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{positions:?}"
    );
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, id) in &seen {
        *times.entry(*id).or_default() += 1;
    }
    assert_eq!(times.len(), 100);
    for (id, count) in times {
        assert_eq!(
            count,
            if id <= 10 { 2 } else { 1 },
            "{id} was sent {count} times"
        );
    }
}

/// Notes an upsert's position and id.
fn record(seen: &mut Vec<((u64, i64), i64)>, line: &Value) {
    assert_eq!(line["op"], "upsert", "{line}");
    let id = line["product"]["id"].as_i64().unwrap();
    assert_eq!(line["product"]["name"], format!("p{id}"));
    seen.push((position(line["position"].as_str().unwrap()), id));
}

#[tokio::test]
async fn a_position_older_than_the_retention_is_gone_and_a_newer_one_is_followed() {
    let mut settings = unique_settings();
    settings.http.changes_retention = Duration::from_secs(1);
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.wait_for_readiness("cache", true).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.publish(r#"{"id":2,"name":"toy","price":20,"manufacturer":"lego"}"#)
        .await;
    app.wait_for_product(2).await;
    let (changes, before_deletion) = follow(&app, Some("0")).await.until_up_to_date().await;
    assert_eq!(changes.len(), 2, "{changes:?}");

    // Deleted outright (a tombstone), then pruned past the retention.
    app.sql("DELETE FROM products WHERE id = 1").await;
    let (deleted, _) = follow(&app, Some(&before_deletion))
        .await
        .until_up_to_date()
        .await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["op"], "delete");
    assert_eq!(deleted[0]["id"], 1);
    let path = format!("/products/changes?after={before_deletion}");
    wait_until("the deletion is pruned", || async {
        app.get(&path).await.status() == 410
    })
    .await;
    let response = app.get(&path).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 410);
    assert_eq!(problem["snapshot"], "/products.ndjson");
    assert_eq!(
        problem["horizon"], deleted[0]["position"],
        "the horizon is the pruned deletion's position"
    );
    let (tombstones,) = count(&app, "SELECT count(*) AS n FROM product_tombstones").await;
    assert_eq!(tombstones, 0);

    // From the horizon on, the stream goes on; the start of the history is gone too.
    let horizon = problem["horizon"].as_str().unwrap();
    let mut after = follow(&app, Some(horizon)).await;
    let (nothing, _) = after.until_up_to_date().await;
    assert!(nothing.is_empty(), "{nothing:?}");
    app.publish(r#"{"id":3,"name":"cup","price":5,"manufacturer":"ikea"}"#)
        .await;
    let cup = after.until_changes().await;
    assert_eq!(cup[0]["product"]["name"], "cup", "{cup:?}");
    assert_eq!(app.get("/products/changes?after=0").await.status(), 410);
    // The cache, told its snapshot may predate a pruned deletion, rebuilt:
    // it serves what Postgres holds.
    assert_eq!(app.get("/products/1").await.status(), 404);
    assert_eq!(app.get("/products/2").await.status(), 200);
}

async fn count(app: &TestApp, sql: &str) -> (i64,) {
    let row = app
        .db()
        .await
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    (row.try_get("", "n").unwrap(),)
}

#[tokio::test]
async fn a_snapshot_and_the_changes_after_its_position_make_the_catalogue() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let db = app.db().await;
    let setup = db.begin().await.unwrap();
    for id in 1..=2500 {
        insert(&setup, id).await;
    }
    setup.commit().await.unwrap();

    let response = app.get("/products.ndjson").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let snapshot_at = response.headers()["products-position"]
        .to_str()
        .unwrap()
        .to_owned();
    // Changes while it streams (it reads a page at a time): an update, a
    // deletion message's, an outright deletion, and a new product, at both
    // ends of the catalogue.
    app.sql(
        "UPDATE products SET name = 'changed' WHERE id IN (2, 2400); \
         UPDATE products SET deleted = true WHERE id = 3; \
         DELETE FROM products WHERE id IN (4, 2401); \
         INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
         VALUES (2600, 'new', 1, 'm', 'test', 1)",
    )
    .await;
    let body = response.text().await.unwrap();
    let mut catalogue: BTreeMap<i64, Value> = BTreeMap::new();
    let mut ids = Vec::new();
    for line in body.lines() {
        let product: Value = serde_json::from_str(line).unwrap();
        let id = product["id"].as_i64().unwrap();
        ids.push(id);
        catalogue.insert(id, product);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "in id order");
    assert!(ids.len() >= 2495, "{}", ids.len());

    let mut changes = follow(&app, Some(&snapshot_at)).await;
    let (lines, _) = changes.until_up_to_date().await;
    assert!(!lines.is_empty());
    for line in lines {
        match line["op"].as_str().unwrap() {
            "upsert" => {
                let product = line["product"].clone();
                catalogue.insert(product["id"].as_i64().unwrap(), product);
            }
            "delete" => {
                catalogue.remove(&line["id"].as_i64().unwrap());
            }
            op => panic!("{op}"),
        }
    }
    // The catalogue as Postgres holds it now, as the API serves it.
    let mut now: BTreeMap<i64, Value> = BTreeMap::new();
    let mut after = 0;
    loop {
        let (_, page) = app
            .get_json(&format!("/products?after={after}&limit=1000"))
            .await;
        let page = page.as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        after = last["id"].as_i64().unwrap();
        for product in page {
            now.insert(product["id"].as_i64().unwrap(), product);
        }
    }
    assert_eq!(now.len(), 2500 - 3 + 1);
    assert_eq!(
        catalogue.keys().collect::<Vec<_>>(),
        now.keys().collect::<Vec<_>>()
    );
    assert_eq!(catalogue, now);
    assert_eq!(catalogue[&2400]["name"], "changed");
    assert!(!catalogue.contains_key(&3) && !catalogue.contains_key(&2401));
    let ids: BTreeSet<i64> = catalogue.keys().copied().collect();
    assert!(ids.contains(&2600));
}

#[tokio::test]
async fn a_malformed_position_is_a_400_and_events_are_served_to_a_browser_with_their_positions() {
    let app = TestApp::spawn().await;
    for after in ["abc", "1.2.3", "-1", "1.9223372036854775807"] {
        let response = app.get(&format!("/products/changes?after={after}")).await;
        assert_eq!(response.status(), 400, "{after}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains("position"),
            "{problem}"
        );
    }

    app.wait_for_readiness("cache", true).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let mut response = app
        .http
        .get(format!("{}/products/changes?after=0", app.base))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    while !text.contains("event: up_to_date") {
        let chunk = tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let change = text
        .split("\n\n")
        .find(|event| event.contains("event: change"))
        .unwrap_or_else(|| panic!("{text}"));
    let id = change
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap();
    let data: Value = serde_json::from_str(
        change
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["position"], id);
    assert_eq!(data["op"], "upsert");
    assert_eq!(data["product"]["name"], "pen");
}

#[tokio::test]
async fn streams_opened_while_writes_commit_get_each_change_once() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let (_, start) = follow(&app, Some("0")).await.until_up_to_date().await;

    // Sixty products, each in a transaction of its own, while streams open
    // from the same position: each catches up from Postgres, then takes the
    // shared reader's batches, which overlap what it read.
    let db = app.db().await;
    let writes = tokio::spawn(async move {
        for id in 1..=60 {
            let txn = db.begin().await.unwrap();
            insert(&txn, id).await;
            txn.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.push(follow(&app, Some(&start)).await);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    writes.await.unwrap();
    for mut stream in streams {
        let mut seen: Vec<((u64, i64), i64)> = Vec::new();
        while seen.len() < 60 {
            let (changes, _) = stream.until_up_to_date().await;
            for line in &changes {
                record(&mut seen, line);
            }
        }
        let ids: BTreeSet<i64> = seen.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), 60, "each product once: {seen:?}");
        assert!(seen.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }
}

#[tokio::test]
async fn a_transaction_held_open_in_another_database_does_not_hold_the_stream() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let (_, start) = follow(&app, Some("0")).await.until_up_to_date().await;
    // A write transaction of another database on the same server, open
    // throughout (an analytics job's, say).
    let own = app.settings.database.url.expose();
    let server = &own[..own.rfind('/').unwrap()];
    let elsewhere = sea_orm::Database::connect(format!("{server}/postgres"))
        .await
        .unwrap();
    let held = elsewhere.begin().await.unwrap();
    held.execute_unprepared("SELECT pg_current_xact_id()")
        .await
        .unwrap();

    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    let mut stream = follow(&app, Some(&start)).await;
    let mut changes = Vec::new();
    while changes.is_empty() {
        changes = stream.until_up_to_date().await.0;
    }
    assert_eq!(changes[0]["product"]["name"], "pen");
    held.rollback().await.unwrap();
}
