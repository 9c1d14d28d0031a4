//! The HTTP contract: pages, JSON, errors, paging, health, headers, escaping.

use crate::common::{
    DEADLINE, TestApp, connect, lock_products, statements_waiting_on_locks, take_updated_at,
    wait_until,
};
use actors::names::Child;
use ractor::ActorStatus;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn the_product_page_without_an_id_explains_and_sends_the_browser_home() {
    let app = TestApp::spawn().await;
    let (status, page) = app.get_text("/product").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"<meta http-equiv="refresh" content="5;url=/">"#),
        "{page}"
    );
    assert!(page.contains("/product?id=1"));
    assert!(page.contains(r#"<a href="/">the list of all products</a>"#));
}

/// What docs/HTTP.md promises for an id that is not a positive 64-bit integer:
/// a 400 page that says why. Each bad id, with the reason it must be given.
const BAD_IDS: [(&str, &str); 7] = [
    ("abc", "The id must be a positive whole number, not “abc”."),
    ("0", "The id must be a positive whole number, not “0”."),
    ("-5", "The id must be a positive whole number, not “-5”."),
    ("1.5", "The id must be a positive whole number, not “1.5”."),
    (
        "99999999999999999999",
        "The id “99999999999999999999” is too large: ids go up to 9223372036854775807.",
    ),
    (
        "%00",
        "The id must be a positive whole number, not “\u{0}”.",
    ),
    (
        "",
        "The id is empty: give a positive whole number, for example ?id=1.",
    ),
];

/// Text as the pages write it (the five characters that matter in HTML).
fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

#[tokio::test]
async fn bad_ids_get_400_and_unknown_ids_get_404_as_pages_and_as_json() {
    let app = TestApp::spawn().await;
    for (bad, reason) in BAD_IDS {
        let (status, page) = app.get_text(&format!("/product?id={bad}")).await;
        assert_eq!(status, 400, "/product?id={bad}");
        assert!(page.contains("<h1>400 · Bad Request</h1>"), "{page}");
        let message = format!(r#"<p class="message">{}</p>"#, html_escaped(reason));
        assert!(
            page.contains(&message),
            "/product?id={bad}: {message} in {page}"
        );
        if !bad.is_empty() {
            let (status, body) = app.get_json(&format!("/products/{bad}")).await;
            assert_eq!(status, 400, "/products/{bad}");
            assert_eq!(
                problem(body),
                problem_of(400, "Bad Request", reason),
                "/products/{bad}"
            );
        }
    }
    let (status, page) = app.get_text("/product?id=123").await;
    assert_eq!(status, 404);
    assert!(page.contains("<h1>404 · Not Found</h1>"), "{page}");
    assert!(page.contains(r#"<p class="message">There is no product with id 123.</p>"#));
    let (status, body) = app.get_json("/products/123").await;
    assert_eq!(status, 404);
    assert_eq!(
        problem(body),
        problem_of(404, "Not Found", "There is no product with id 123.")
    );
    let response = app.get("/products/123").await;
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// An RFC 9457 problem as served, less its `request_id` (which must be there).
fn problem(mut body: serde_json::Value) -> serde_json::Value {
    let id = body.as_object_mut().unwrap().remove("request_id");
    assert!(id.is_some_and(|id| id.as_str().is_some_and(|id| !id.is_empty())));
    body
}

/// The problem a status and a detail make, with `error` for older clients.
fn problem_of(status: u16, title: &str, detail: &str) -> serde_json::Value {
    json!({"type": "about:blank", "title": title, "status": status, "detail": detail, "error": detail})
}

#[tokio::test]
async fn values_from_the_stream_are_html_escaped() {
    let app = TestApp::spawn().await;
    let evil = json!({
        "id": 1, "name": "<script>alert(1)</script>", "price": 1,
        "manufacturer": "\"><img src=x onerror=alert(2)>",
        "description": "<b>bold</b>", "attributes": {"<i>k</i>": "<u>v</u>"}
    });
    app.publish(evil.to_string()).await;
    app.wait_for_product(1).await;
    for path in ["/", "/product?id=1"] {
        let (_, page) = app.get_text(path).await;
        assert!(!page.contains("<script>alert"), "{path}: {page}");
        assert!(!page.contains("<img src=x"), "{path}: {page}");
        assert!(page.contains("&lt;script&gt;"), "{path}: {page}");
    }
    let (_, detail) = app.get_text("/product?id=1").await;
    assert!(!detail.contains("<b>bold") && !detail.contains("<u>v"));
}

#[tokio::test]
async fn pages_and_errors_send_security_headers() {
    let app = TestApp::spawn().await;
    for path in [
        "/",
        "/product",
        "/product?id=abc",
        "/product?id=7",
        "/nowhere",
        "/products",
        "/products/abc",
        "/static/style.css",
        "/static/live.js",
        "/rejected",
        "/manage/new",
    ] {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        // Script only from the service's own files (the live updates), never
        // inline; the live feed and forms only to the service itself.
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("form-action 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn lists_are_paged_in_id_order_with_a_link_to_the_next_page() {
    let app = TestApp::spawn().await;
    for id in [3, 1, 5, 2, 4] {
        app.publish(
            json!({"id": id, "name": format!("p{id}"), "price": id, "manufacturer": "m"})
                .to_string(),
        )
        .await;
    }
    app.wait_for_list_len(5).await;

    let response = app.get("/products?limit=2").await;
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        response.headers()["link"],
        r#"</products?after=2&limit=2>; rel="next""#
    );
    let page: Vec<serde_json::Value> = response.json().await.unwrap();
    assert_eq!(
        page.iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2]
    );

    let (_, rest) = app.get_json("/products?after=2&limit=100").await;
    let ids: Vec<_> = rest
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 4, 5]);
    assert!(
        app.get("/products?after=2&limit=100")
            .await
            .headers()
            .get("link")
            .is_none()
    );

    let (_, html) = app.get_text("/?limit=2").await;
    assert!(html.contains(r#"href="/?after=2&amp;limit=2""#), "{html}");

    for bad in ["limit=0", "limit=x", "after=-1", "after=abc"] {
        assert_eq!(
            app.get(&format!("/products?{bad}")).await.status(),
            400,
            "{bad}"
        );
        assert_eq!(app.get(&format!("/?{bad}")).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn a_limit_over_1000_is_served_as_1000() {
    let app = TestApp::spawn().await;
    let subject = app.settings.nats.subject.clone();
    let mut acks = Vec::new();
    for id in 1..=1001 {
        let product = json!({"id": id, "name": format!("p{id}"), "price": 1, "manufacturer": "m"});
        let ack = app
            .js
            .publish(subject.clone(), product.to_string().into())
            .await
            .unwrap();
        acks.push(ack);
    }
    for ack in acks {
        ack.await.unwrap();
    }
    wait_until("all 1001 products are stored", || async {
        app.get("/products/1001").await.status() == 200
            && app.consumer_info().await.num_ack_pending == 0
            && app.consumer_info().await.num_pending == 0
    })
    .await;

    for limit in ["1000", "1001", "5000", "18446744073709551615"] {
        let response = app.get(&format!("/products?limit={limit}")).await;
        assert_eq!(response.status(), 200, "limit={limit}");
        assert_eq!(
            response.headers()["link"],
            r#"</products?after=1000&limit=1000>; rel="next""#,
            "limit={limit}"
        );
        let page: Vec<serde_json::Value> = response.json().await.unwrap();
        assert_eq!(page.len(), 1000, "limit={limit}");
        assert_eq!(page[999]["id"], 1000);

        let (_, html) = app.get_text(&format!("/?limit={limit}")).await;
        assert_eq!(
            html.matches(r#"href="/product?id="#).count(),
            1000,
            "/?limit={limit}"
        );
        assert!(html.contains(r#"href="/?after=1000&amp;limit=1000""#));
    }
    let (_, mut rest) = app.get_json("/products?after=1000&limit=5000").await;
    take_updated_at(&mut rest[0]);
    assert_eq!(
        rest,
        json!([{"id": 1001, "name": "p1001", "price": 1, "manufacturer": "m", "stream_seq": 1001}])
    );
}

#[tokio::test]
async fn health_is_up_and_readiness_names_each_part() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    wait_until("the app is ready", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    let (_, body) = app.get_json("/readyz").await;
    assert_eq!(
        body,
        json!({"postgres": {"ready": true}, "nats": {"ready": true}, "cache": {"ready": true},
               "change_feed": {"caught_up": true}})
    );
}

#[tokio::test]
async fn odd_requests_get_a_clear_answer_and_never_a_500() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(4000);
    let cases = [
        ("/nowhere", 404),
        ("/products/1/extra", 404),
        ("/product?id=1&id=2", 404),
        ("/product?id=%F0%9F%98%80", 400),
        ("/static/missing.css", 404),
        ("/static/style.css", 200),
    ];
    for (path, expected) in cases {
        assert_eq!(app.get(path).await.status(), expected, "{path}");
    }
    let status = app.get(&format!("/product?id={long}")).await.status();
    assert_eq!(status, 400);
    let status = app
        .http
        .delete(format!("{}/products", app.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_slow_client_is_cut_off_and_holds_up_no_one() {
    let app = TestApp::spawn().await;
    let mut slow = TcpStream::connect(app.app().http_addr()).await.unwrap();
    // A request head that never ends.
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();

    assert_eq!(app.get("/healthz").await.status(), 200);

    let mut answer = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the server keeps a slow client forever");
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains(" 500 "), "{answer}");
}

#[tokio::test]
async fn a_very_long_url_gets_a_client_error_not_a_500() {
    let app = TestApp::spawn().await;
    // Up to 64 KiB the handler reads the id and refuses it; past that the
    // server refuses the request line itself.
    for (length, expected) in [(60_000, "400"), (70_000, "414")] {
        let mut client = TcpStream::connect(app.app().http_addr()).await.unwrap();
        let request = format!(
            "GET /product?id={} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "9".repeat(length)
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, client.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        let status_line = String::from_utf8_lossy(&answer[..answer.len().min(20)]).into_owned();
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {expected}")),
            "{length}: {status_line}"
        );
    }
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_is_answered_before_the_server_stops() {
    let mut app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let db = connect(&app.settings.database.url).await;
    let http = ractor::registry::where_is(app.app().names().of(Child::Http)).unwrap();

    // A request held up in Postgres: a miss that waits on a locked table.
    let lock = lock_products(&db).await;
    let request = tokio::spawn(app.http.get(format!("{}/products/42", app.base)).send());
    wait_until("the request's read waits on the lock", || async {
        statements_waiting_on_locks(&db).await > 0
    })
    .await;

    let app_handle = app.app.take().unwrap();
    let shutdown = tokio::spawn(app_handle.shutdown());
    wait_until("the http actor is stopping its server", || async {
        http.get_status() >= ActorStatus::Stopping
    })
    .await;
    if request.is_finished() {
        let ended = request.await.unwrap().map(|r| r.status());
        panic!("the request ended while its read still waited: {ended:?}");
    }
    lock.commit().await.unwrap();

    // Answered in full (404, or 503 had the read given up), not cut off.
    let response = request
        .await
        .unwrap()
        .expect("an answer, not a cut connection");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("the whole body");
    assert!(matches!(status, 404 | 503), "{status} {body}");
    assert!(body["error"].is_string(), "{body}");
    shutdown.await.unwrap().expect("a graceful shutdown");
}

#[tokio::test]
async fn while_postgres_hangs_every_request_is_answered_within_10_seconds_and_never_500() {
    let app = TestApp::spawn().await;
    app.wait_for_readiness("cache", true).await;
    let db = connect(&app.settings.database.url).await;
    let _lock = lock_products(&db).await;
    // A client more patient than the server, so that the server's limit is
    // the one measured (with a second of slack for a busy machine).
    let client = reqwest::Client::new();
    // (path, status): the lists come from memory once the cache is rebuilt;
    // an id never read must be read from Postgres, which hangs.
    let paths = [
        ("/products", 200),
        ("/", 200),
        ("/products/42", 503),
        ("/product?id=42", 503),
    ];
    let answers = futures::future::join_all(paths.map(|(path, _)| {
        let request = client.get(format!("{}{path}", app.base)).send();
        tokio::time::timeout(Duration::from_secs(11), request)
    }))
    .await;
    for ((path, status), answer) in paths.iter().zip(answers) {
        let response = answer
            .unwrap_or_else(|_| panic!("{path}: no answer within 10 s"))
            .unwrap();
        assert_eq!(response.status(), *status, "{path}");
    }
}

#[tokio::test]
async fn the_html_list_shows_each_change_at_once_and_only_the_products_of_its_page() {
    let app = TestApp::spawn().await;
    // Ids around a block's edge (64 ids a block).
    for id in [62, 63, 64, 65] {
        app.publish(
            json!({"id": id, "name": format!("first {id}"), "price": id, "manufacturer": "m"})
                .to_string(),
        )
        .await;
    }
    app.wait_for_list_len(4).await;
    let (_, html) = app.get_text("/?after=62&limit=2").await;
    let shown: Vec<&str> = html
        .split("<tr data-id=\"")
        .skip(1)
        .map(|row| &row[..2])
        .collect();
    assert_eq!(shown, ["63", "64"], "{html}");
    assert!(
        html.contains("first 63") && html.contains("first 64"),
        "{html}"
    );

    app.publish(
        json!({"id": 64, "name": "second 64", "price": 1, "manufacturer": "m"}).to_string(),
    )
    .await;
    crate::common::wait_until("the list shows the new name", || async {
        let (_, html) = app.get_text("/?after=62&limit=2").await;
        html.contains("second 64") && !html.contains("first 64")
    })
    .await;
}
