//! Freshness a client can see and ask for: `Products-Applied-Seq` on every
//! answer, `?min_seq=` to read one's own write on any replica (or be told how
//! far the replica got), and `ETag` with `If-None-Match` on the JSON reads.

use crate::common::{TestApp, wait_until};
use products::App;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH, RETRY_AFTER};

const APPLIED_SEQ: &str = "products-applied-seq";

fn applied_seq(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get(APPLIED_SEQ)
        .expect("every answer says how fresh it is")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn lamp(price: u64) -> String {
    format!(r#"{{"id":7,"name":"lamp","price":{price},"manufacturer":"ikea"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_read_back_with_min_seq_on_another_replica_is_never_stale() {
    let first = TestApp::spawn().await;
    // A second replica of the same deployment: the same database, stream
    // and durable consumer.
    let instance = format!("second-{}", uuid::Uuid::new_v4().simple());
    let second = App::start(
        &first.settings,
        &instance,
        actors::supervisor::RestartBudget::default(),
    )
    .await
    .expect("the second replica starts");
    let second_base = format!("http://{}", second.http_addr());
    let http = reqwest::Client::new();
    for price in 1..=20 {
        let seq = first.publish(lamp(price)).await;
        let response = http
            .get(format!("{second_base}/products/7?min_seq={seq}&wait=5s"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "sequence {seq}");
        assert!(applied_seq(&response) >= seq);
        let product: serde_json::Value = response.json().await.unwrap();
        assert_eq!(product["price"], price, "the version of sequence {seq}");
    }
    // The list takes it too.
    let seq = first.publish(lamp(99)).await;
    let list: serde_json::Value = http
        .get(format!("{second_base}/products?min_seq={seq}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["price"], 99);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replica_that_has_not_applied_the_sequence_says_how_far_it_got() {
    let app = TestApp::spawn().await;
    let seq = app.publish(lamp(1)).await;
    app.wait_for_product(7).await;
    let response = app
        .get(&format!("/products/7?min_seq={}&wait=300ms", seq + 1000))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    let reached = applied_seq(&response);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["min_seq"], seq + 1000);
    assert_eq!(body["applied_seq"], reached);
    assert!(reached < seq + 1000);
    assert!(body["error"].as_str().unwrap().contains("not yet"));

    for query in ["min_seq=abc", "min_seq=-1", "min_seq=1&wait=10s", "wait=1s"] {
        let response = app.get(&format!("/products/7?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn the_applied_sequence_moves_on_json_and_html_answers() {
    let app = TestApp::spawn().await;
    let seq = app.publish(lamp(1)).await;
    for path in ["/products/7", "/", "/product?id=7", "/healthz"] {
        wait_until(
            &format!("{path} says sequence {seq} is applied"),
            || async { applied_seq(&app.get(path).await) >= seq },
        )
        .await;
    }
    let later = app.publish(lamp(2)).await;
    assert!(later > seq);
    wait_until("the header moves to the next sequence", || async {
        applied_seq(&app.get("/products/7").await) >= later
    })
    .await;
}

#[tokio::test]
async fn an_unchanged_product_is_not_modified_and_a_changed_one_is_sent_again() {
    let app = TestApp::spawn().await;
    app.publish(lamp(1)).await;
    app.wait_for_product(7).await;
    let http = reqwest::Client::new();
    let get = |path: &str, tag: Option<&str>| {
        let mut request = http.get(format!("{}{path}", app.base));
        if let Some(tag) = tag {
            request = request.header(IF_NONE_MATCH, tag);
        }
        request.send()
    };
    for path in ["/products/7", "/products"] {
        let first = get(path, None).await.unwrap();
        assert_eq!(first.headers()["cache-control"], "no-cache", "{path}");
        let tag = first.headers()[ETAG].to_str().unwrap().to_owned();
        let again = get(path, Some(&tag)).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());

        let seq = app.publish(lamp(2 + u64::from(path.len() as u8))).await;
        let changed = get(&format!("{path}?min_seq={seq}"), Some(&tag))
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK, "{path} after a change");
        assert_ne!(changed.headers()[ETAG].to_str().unwrap(), tag);
    }
}
