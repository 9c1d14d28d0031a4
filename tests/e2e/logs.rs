//! The log as a machine reads it (`LOG_FORMAT=json`, the real binary): every
//! HTTP line carries the request's id, which the response returns in
//! `x-request-id`; every line about a message its stream sequence and, when
//! the message names one, its product id.

use crate::common::process::ServiceProcess;
use crate::common::{Cleanup, connect, jetstream_with_stream, unique_settings, wait_until};
use sea_orm::ConnectionTrait;
use serde_json::Value;

/// The JSON lines of the log whose message is `message`.
fn lines_saying(service: &ServiceProcess, message: &str) -> Vec<Value> {
    service
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

#[tokio::test]
async fn every_http_log_line_and_response_carry_the_request_id() {
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    let mut service = ServiceProcess::start_with_env(
        &settings,
        &[
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info,sqlx=warn,actors::http=debug"),
        ],
    );
    let base = service.base().await;
    let http = reqwest::Client::new();

    // A well-formed id from the client is kept.
    let response = http
        .get(format!("{base}/products/77"))
        .header("x-request-id", "client-id-1.2_3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "client-id-1.2_3");

    // None given, or one that could forge a log line: a new one.
    let mut made = Vec::new();
    for given in [None, Some("two words\"")] {
        let mut request = http.get(format!("{base}/healthz"));
        if let Some(given) = given {
            request = request.header("x-request-id", given);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        made.push(id);
    }
    assert_ne!(made[0], made[1]);

    wait_until("each request is logged with its id", || async {
        let requests = lines_saying(&service, "request");
        ["client-id-1.2_3", &made[0], &made[1]]
            .iter()
            .all(|id| requests.iter().any(|line| line["request_id"] == *id))
    })
    .await;
    let requests = lines_saying(&service, "request");
    let line = requests
        .iter()
        .find(|line| line["request_id"] == "client-id-1.2_3")
        .unwrap();
    assert_eq!(line["route"], "/products/{id}", "{line}");
    assert_eq!(line["path"], "/products/77", "{line}");
    assert_eq!(line["status"], 404, "{line}");
}

#[tokio::test]
async fn a_log_line_about_a_message_names_its_stream_sequence_and_product_id() {
    let settings = unique_settings();
    let _cleanup = Cleanup::new(&settings);
    let (js, _) = jetstream_with_stream(&settings).await;
    let mut service = ServiceProcess::start_with_env(&settings, &[("LOG_FORMAT", "json")]);
    service.base().await;
    // The service has migrated its database: a rule it does not know refuses the message.
    connect(&settings.database.url)
        .await
        .execute_unprepared(
            "ALTER TABLE products ADD CONSTRAINT price_below_1000 CHECK (price < 1000)",
        )
        .await
        .unwrap();
    js.publish(settings.nats.subject.clone(), "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let seq = js
        .publish(
            settings.nats.subject.clone(),
            r#"{"id":5,"name":"lamp","price":5000,"manufacturer":"ikea"}"#.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    wait_until("the refusal is logged", || async {
        !lines_saying(&service, "message not stored; it will be redelivered").is_empty()
    })
    .await;
    let line = &lines_saying(&service, "message not stored; it will be redelivered")[0];
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["stream_seq"], seq, "{line}");
    assert_eq!(line["product_id"], 5, "{line}");
    assert!(
        line["reason"]
            .as_str()
            .is_some_and(|r| r.contains("price_below_1000")),
        "{line}"
    );
    // Its batch's span names the batch's sequences, at the top level too
    // (one flat object a line).
    assert!(
        line["last_seq"].as_u64().is_some_and(|last| last >= seq),
        "{line}"
    );
    assert!(
        line.get("fields").is_none() && line.get("span").is_none() && line.get("spans").is_none(),
        "flat: {line}"
    );
    assert!(
        line["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "RFC 3339: {line}"
    );
    assert_eq!(line["target"], "actors::ingest", "{line}");

    // An invalid message names no product: its line has the sequence only.
    wait_until("the invalid message is logged", || async {
        !lines_saying(&service, "message set aside").is_empty()
    })
    .await;
    let line = &lines_saying(&service, "message set aside")[0];
    assert_eq!(line["stream_seq"], seq - 1, "{line}");
    assert!(line["product_id"].is_null(), "{line}");
}

#[test]
fn a_fatal_error_at_start_is_a_json_line_too() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_products"))
            .args(args)
            .env_clear()
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .output()
            .expect("the products binary runs")
    };
    let last_line = |output: &std::process::Output| -> Value {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let line = stderr.lines().last().unwrap_or_default().to_owned();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: not JSON: {stderr}"))
    };
    // A setting refused: exit 2, the setting named.
    let refused = run(&["config"], &[("UI_MANAGE", "true")]);
    assert_eq!(refused.status.code(), Some(2));
    let line = last_line(&refused);
    assert_eq!(
        (&line["level"], &line["setting"]),
        (&"ERROR".into(), &"UI_MANAGE".into()),
        "{line}"
    );
    // A database that cannot be reached: exit 1, why.
    let unreachable = run(
        &["migrate"],
        &[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/products_nowhere",
        )],
    );
    assert_eq!(unreachable.status.code(), Some(1));
    let line = last_line(&unreachable);
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["message"], "products stopped", "{line}");
    assert!(
        line["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{line}"
    );
}
