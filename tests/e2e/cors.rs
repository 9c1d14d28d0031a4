//! CORS for the JSON API: off unless origins are given; then those origins,
//! and only those, may read answers from a browser (GET and HEAD, never with
//! cookies), with the headers that say how fresh an answer is.

use crate::common::{TestApp, unique_settings};
use actors::supervisor::RestartBudget;
use reqwest::StatusCode;

const SHOP: &str = "https://shop.example";

async fn get_from(app: &TestApp, origin: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}{path}", app.base))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_origins_no_answer_carries_cors_headers() {
    let app = TestApp::spawn().await;
    let response = get_from(&app, SHOP, "/products").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_listed_origin_may_read_the_api_and_its_freshness_and_another_may_not() {
    let mut settings = unique_settings();
    settings.http.cors_origins = vec![SHOP.to_owned()];
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;

    let response = get_from(&app, SHOP, "/products").await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["products-applied-seq", "etag", "link", "retry-after"] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }
    assert!(headers.get("access-control-allow-credentials").is_none());

    let other = get_from(&app, "https://evil.example", "/products").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A preflight is answered for reads only.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/products/1", app.base))
        .header("origin", SHOP)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let allowed = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed.contains("GET") && !allowed.contains("POST"),
        "{allowed}"
    );
}
