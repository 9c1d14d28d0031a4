//! A rejected message published again once its cause is fixed: by
//! `products rejected replay --id N` and by an operator's button on
//! `/rejected`, from the original in the stream (not the preview kept in
//! Postgres), with a new `Nats-Msg-Id`, saying what became of it.

use crate::common::{ALICE, TestApp, no_redirect, wait_until};
use actors::persistence::MessageOutcome;
use serde_json::Value;
use std::time::Duration;

/// The rejected messages as the API lists them, newest first.
async fn rejected(app: &TestApp) -> Vec<Value> {
    app.get_json("/rejected.json")
        .await
        .1
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_message_set_aside_by_a_database_rule_is_stored_when_replayed_after_the_rule_is_fixed() {
    let app = TestApp::spawn().await;
    app.sql("ALTER TABLE products ADD CONSTRAINT no_toys CHECK (name NOT LIKE 'toy%')")
        .await;
    // Longer than the 300 characters the rejected page keeps of it.
    let description = "a long description ".repeat(40);
    let toy = format!(
        r#"{{"id":5,"name":"toy","price":100,"manufacturer":"lego","description":"{description}"}}"#
    );
    let first_seq = app.publish(toy.clone()).await;
    app.publish(r#"{"id":6,"name":"toy car","price":5,"manufacturer":"lego"}"#)
        .await;
    wait_until("both are set aside", || async {
        rejected(&app).await.len() == 2
    })
    .await;
    // Set aside in either order (each waits out its own retries).
    let listed = rejected(&app).await;
    let by_seq = |seq: u64| {
        listed
            .iter()
            .find(|row| row["stream_seq"] == seq)
            .unwrap()
            .clone()
    };
    let (toy_row, car) = (by_seq(first_seq), by_seq(first_seq + 1));

    // Replayed before its cause is fixed: set aside again, and said so.
    let again = products::replay::run(
        &app.settings,
        toy_row["id"].as_i64().unwrap(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(
        matches!(&again.outcome, MessageOutcome::Rejected { reason } if reason.contains("no_toys")),
        "{again}"
    );

    app.sql("ALTER TABLE products DROP CONSTRAINT no_toys")
        .await;
    let replay = products::replay::run(
        &app.settings,
        toy_row["id"].as_i64().unwrap(),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(
        replay.outcome,
        MessageOutcome::Stored {
            id: 5,
            deleted: false
        },
        "{replay}"
    );
    assert!(replay.republished.seq > first_seq);
    assert_eq!(
        replay.republished.payload,
        toy.as_bytes(),
        "the original, whole"
    );
    let product = app.wait_for_product(5).await;
    assert_eq!(product["description"], description.trim_end());
    assert_eq!(product["stream_seq"], replay.republished.seq);

    // No such rejected message: an error that says so.
    let missing = products::replay::run(&app.settings, 999_999, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        format!("{missing:#}").contains("no rejected message 999999"),
        "{missing:#}"
    );

    // The operator's button: the same, from the page.
    let cookie = app.sign_in(ALICE).await;
    let (_, page) = app.get_signed_in(&cookie, "/rejected").await;
    assert!(page.contains(r#"action="/manage/replay""#), "{page}");
    let token = app.form_token(&cookie).await;
    let car_id = car["id"].as_i64().unwrap().to_string();
    let sent = no_redirect()
        .post(format!("{}/manage/replay", app.base))
        .header("Cookie", &cookie)
        .form(&[
            ("csrf", token.as_str()),
            ("message_id", "replay-button-1"),
            ("id", car_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    let location = sent.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/manage/sent?"), "{location}");
    assert!(location.ends_with("&id=6"), "{location}");
    wait_until("the page says it is stored", || async {
        let (_, page) = app.get_signed_in(&cookie, &location).await;
        page.contains("Stored")
    })
    .await;
    let car = app.wait_for_product(6).await;
    assert_eq!(car["changed_by"], "alice", "{car}");

    // Without a session, or not signed in: refused, nothing published.
    let refused = no_redirect()
        .post(format!("{}/manage/replay", app.base))
        .form(&[("id", car_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // The page offers no button to a visitor.
    let (_, anonymous) = app.get_text("/rejected").await;
    assert!(!anonymous.contains("/manage/replay"));
}
