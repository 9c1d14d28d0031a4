//! A stream deleted and created again while the service runs: its sequences
//! start over, and the service must not take its messages for the old
//! stream's (an id-less product skipped as "already stored").

use crate::common::{TestApp, wait_until};
use async_nats::jetstream::consumer::PullConsumer;

#[tokio::test]
async fn an_id_less_product_of_a_recreated_stream_is_not_taken_for_the_old_one() {
    let app = TestApp::spawn().await;
    // Slow stores keep ingest busy while the stream is replaced under it.
    app.slow_inserts(2).await;
    app.publish(r#"{"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    wait_until("ingest is storing the first message", || async {
        app.consumer_info().await.num_ack_pending == 1
    })
    .await;

    // Another deployment deletes the stream and creates it again, with the
    // consumer, before this one pulls again.
    let settings = &app.settings;
    app.js.delete_stream(&settings.nats.stream).await.unwrap();
    let stream = app
        .js
        .create_stream(settings.stream().config())
        .await
        .unwrap();
    let _: PullConsumer = stream
        .create_consumer(settings.ingest_config().consumer_config())
        .await
        .unwrap();
    // The first message of the new stream has sequence 1, as the old one's had.
    assert_eq!(
        app.publish(r#"{"name":"toy","price":100,"manufacturer":"lego"}"#)
            .await,
        1
    );

    let listed = app.wait_for_list_len(2).await;
    let names: Vec<_> = listed.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pen", "toy"]);
}
