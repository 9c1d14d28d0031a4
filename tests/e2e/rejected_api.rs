//! `GET /rejected.json`: the messages set aside, newest first, with their
//! reasons, paged as the rejected page is.

use crate::common::{TestApp, wait_until};

#[tokio::test]
async fn the_messages_set_aside_are_listed_newest_first_with_reasons_and_paged() {
    let app = TestApp::spawn().await;
    let mut seqs = Vec::new();
    for payload in ["not json", r#"{"name":"pen"}"#, "[1,2]"] {
        seqs.push(app.publish(payload).await);
    }
    wait_until("all three are set aside", || async {
        let (_, body) = app.get_json("/rejected.json").await;
        body.as_array().is_some_and(|rejected| rejected.len() == 3)
    })
    .await;

    let (status, body) = app.get_json("/rejected.json").await;
    assert_eq!(status, 200);
    let listed: Vec<u64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["stream_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [seqs[2], seqs[1], seqs[0]], "newest first");
    assert!(
        body[1]["reason"]
            .as_str()
            .unwrap()
            .contains("`price` is missing"),
        "{body}"
    );
    assert_eq!(body[0]["payload"], "[1,2]");

    let response = app.get("/rejected.json?limit=2").await;
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let last = page[1]["id"].as_i64().unwrap();
    assert_eq!(
        link,
        format!(r#"</rejected.json?before={last}&limit=2>; rel="next""#)
    );
    let (_, rest) = app
        .get_json(&format!("/rejected.json?before={last}&limit=2"))
        .await;
    assert_eq!(rest[0]["stream_seq"], seqs[0]);
    assert_eq!(rest.as_array().unwrap().len(), 1);

    let (status, problem) = app.get_json("/rejected.json?before=abc").await;
    assert_eq!(status, 400);
    assert!(problem["detail"].as_str().unwrap().contains("`before`"));
}
