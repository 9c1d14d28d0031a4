//! A corpus of malformed messages mixed among valid ones: every valid one is
//! stored, every invalid one is set aside with a reason a person understands,
//! and the consumer never stalls.

use crate::common::{TestApp, wait_until};
use entity::rejected_messages;
use sea_orm::EntityTrait;
use serde_json::json;

fn corpus() -> Vec<(Vec<u8>, &'static str)> {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let long_name = json!({"name": "n".repeat(10_000), "price": 1, "manufacturer": "m"});
    let oversized =
        json!({"name": "big", "price": 1, "manufacturer": "m", "description": "d".repeat(70_000)});
    vec![
        (b"not json".to_vec(), "not valid JSON"),
        (b"".to_vec(), "the payload is empty"),
        (b"null".to_vec(), "expected a JSON object, found null"),
        (
            b"[1,2,3]".to_vec(),
            "expected a JSON object, found an array",
        ),
        (
            b"\"a string\"".to_vec(),
            "expected a JSON object, found a string",
        ),
        (br#"{"name":"pen","price":10"#.to_vec(), "not valid JSON"),
        (
            br#"{"price":10,"manufacturer":"bic"}"#.to_vec(),
            "the field `name` is missing",
        ),
        (
            br#"{"name":"pen","manufacturer":"bic"}"#.to_vec(),
            "the field `price` is missing",
        ),
        (
            br#"{"name":"pen","price":10}"#.to_vec(),
            "the field `manufacturer` is missing",
        ),
        (
            br#"{"name":"pen","price":"10","manufacturer":"bic"}"#.to_vec(),
            "must be a number, found a string",
        ),
        (
            br#"{"name":["pen"],"price":10,"manufacturer":"bic"}"#.to_vec(),
            "must be a string, found an array",
        ),
        (
            br#"{"name":"pen","price":-5,"manufacturer":"bic"}"#.to_vec(),
            "must not be negative",
        ),
        (
            br#"{"name":"pen","price":9.99,"manufacturer":"bic"}"#.to_vec(),
            "must be a whole number",
        ),
        (
            br#"{"name":"pen","price":9007199254740993,"manufacturer":"bic"}"#.to_vec(),
            "must be at most 9007199254740992",
        ),
        (
            br#"{"name":"pen","price":1e999,"manufacturer":"bic"}"#.to_vec(),
            "not valid JSON",
        ),
        (
            br#"{"name":"","price":1,"manufacturer":"bic"}"#.to_vec(),
            "`name` must not be empty",
        ),
        (
            long_name.to_string().into_bytes(),
            "more than the 256 allowed",
        ),
        (
            b"{\"name\":\"p\xc3\x28n\",\"price\":1,\"manufacturer\":\"b\"}".to_vec(),
            "not UTF-8",
        ),
        // Not read deeply: refused for what it is.
        (
            deep.clone().into_bytes(),
            "expected a JSON object, found an array",
        ),
        (
            format!(r#"{{"name":{deep},"price":1,"manufacturer":"b"}}"#).into_bytes(),
            "not valid JSON",
        ),
        (
            br#"{"id":5,"name":"a","name":"b","price":1,"manufacturer":"m"}"#.to_vec(),
            r#"the field `name` is given more than once, as "name" and "name""#,
        ),
        (
            oversized.to_string().into_bytes(),
            "more than the 65536 bytes allowed",
        ),
        (
            br#"{"id":-1,"name":"pen","price":1,"manufacturer":"bic"}"#.to_vec(),
            "`id` must not be negative",
        ),
    ]
}

#[tokio::test]
async fn a_corpus_of_malformed_messages_is_set_aside_and_every_valid_one_is_stored() {
    let app = TestApp::spawn().await;
    let corpus = corpus();
    let mut bad_seqs = Vec::new();
    for (i, (payload, _)) in corpus.iter().enumerate() {
        bad_seqs.push(app.publish(payload.clone()).await);
        let valid =
            json!({"id": i + 1, "name": format!("ok {i}"), "price": i, "manufacturer": "m"});
        app.publish(valid.to_string()).await;
    }

    app.wait_for_list_len(corpus.len()).await;
    wait_until("the consumer has nothing left", || async {
        let info = app.consumer_info().await;
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;

    let db = app.db().await;
    let rejected = rejected_messages::Entity::find().all(&db).await.unwrap();
    assert_eq!(rejected.len(), corpus.len());
    for ((payload, expected), seq) in corpus.iter().zip(bad_seqs) {
        let row = rejected
            .iter()
            .find(|r| r.stream_seq == seq as i64)
            .unwrap_or_else(|| panic!("message {seq} is not in rejected_messages"));
        assert!(
            row.reason.contains(expected),
            "{:?}: expected {expected:?} in {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(60)]),
            row.reason
        );
        assert_eq!(row.payload_len, payload.len() as i64);
        assert!(row.payload.len() <= 4096);
        assert_eq!(row.payload[..], payload[..payload.len().min(4096)]);
    }
}
