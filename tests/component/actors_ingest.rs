//! The ingest actor, driven against a real stream: a message is acked only
//! after the batch that holds it has committed.

use crate::common::{
    connect, instance_name, jetstream_with_stream, prepared_database, spawn_persistence,
    unique_settings, wait_until,
};
use actors::ingest::{Ingest, IngestArgs};
use actors::names::{Child, Names};
use async_nats::jetstream;
use entity::{products, rejected_messages};
use ractor::Actor;
use sea_orm::{EntityTrait, PaginatorTrait};

#[tokio::test]
async fn a_message_is_acked_only_after_its_batch_has_committed() {
    let settings = unique_settings();
    let _cleanup = prepared_database(&settings).await;
    let names = Names::new(instance_name(&settings));
    let (js, stream) = jetstream_with_stream(&settings).await;

    // Ingest runs, persistence does not: nothing can be stored.
    Actor::spawn(
        Some(names.of(Child::Ingest)),
        Ingest,
        IngestArgs {
            names: names.clone(),
            config: settings.ingest_config(),
            health: actors::health::Health::new(),
        },
    )
    .await
    .unwrap();
    let subject = settings.nats.subject.clone();
    js.publish(
        subject.clone(),
        r#"{"name":"pen","price":10,"manufacturer":"bic"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    js.publish(subject, "{broken".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let consumer_info = || async {
        let consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&settings.nats.durable)
            .await;
        match consumer {
            Ok(mut consumer) => Some(consumer.info().await.unwrap().clone()),
            Err(_) => None, // not created by ingest yet
        }
    };
    wait_until("both messages were delivered to ingest", || async {
        consumer_info()
            .await
            .is_some_and(|info| info.delivered.stream_sequence >= 2)
    })
    .await;
    let info = consumer_info().await.unwrap();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "nothing is acked: {info:?}"
    );

    // Once persistence runs, the redelivered messages are stored, then acked.
    spawn_persistence(Some(&names), &settings, &Default::default()).await;
    wait_until("both messages are acked", || async {
        consumer_info()
            .await
            .is_some_and(|info| info.ack_floor.stream_sequence == 2)
    })
    .await;
    let db = connect(&settings.database.url).await;
    assert_eq!(products::Entity::find().count(&db).await.unwrap(), 1);
    let rejected = rejected_messages::Entity::find().all(&db).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].stream_seq, 2);
    assert!(rejected[0].reason.contains("not valid JSON"));
}
