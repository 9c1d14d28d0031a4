//! A durable consumer left by an older deployment: what JetStream can change is
//! changed, what it cannot stops the service with an error that names the
//! difference and the fix, unless the operator allows recreating it.

use crate::common::{
    Cleanup, TestApp, init_logs, instance_name, jetstream_with_stream, unique_settings,
};
use actors::supervisor::RestartBudget;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use products::App;
use products::settings::Settings;
use std::time::Duration;

/// Settings whose durable consumer already exists, as `existing` makes it
/// from the configuration the service would create.
async fn with_existing_consumer(
    existing: impl FnOnce(&Settings, &mut pull::Config),
) -> (Settings, Cleanup) {
    init_logs();
    let settings = unique_settings();
    let cleanup = Cleanup::new(&settings);
    let (_, stream) = jetstream_with_stream(&settings).await;
    let mut config = settings.ingest_config().consumer_config();
    existing(&settings, &mut config);
    stream
        .create_consumer(config)
        .await
        .expect("the old deployment's consumer is created");
    (settings, cleanup)
}

/// Starts the app and returns the error it stops with.
async fn stops_with_error(settings: &Settings) -> String {
    products::database::prepare(&settings.database.url)
        .await
        .unwrap();
    let app = App::start(settings, &instance_name(settings), RestartBudget::default())
        .await
        .expect("the app starts; the consumer is checked once NATS answers");
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        app.run_until(std::future::pending()),
    )
    .await
    .expect("the app stops by itself");
    format!("{:#}", outcome.expect_err("the app stops with an error"))
}

#[tokio::test]
async fn a_consumer_with_another_filter_subject_stops_the_service_naming_the_difference() {
    let (settings, _cleanup) = with_existing_consumer(|settings, config| {
        config.filter_subject = settings.nats.subject.replace("products", "orders");
    })
    .await;
    let error = stops_with_error(&settings).await;
    assert!(error.contains("filter_subject"), "{error}");
    assert!(error.contains(&settings.nats.durable), "{error}");
    assert!(error.contains("NATS_RECREATE_CONSUMER"), "{error}");
}

#[tokio::test]
async fn a_consumer_without_acks_stops_the_service_naming_the_difference() {
    let (settings, _cleanup) = with_existing_consumer(|_, config| {
        config.ack_policy = AckPolicy::None;
    })
    .await;
    let error = stops_with_error(&settings).await;
    assert!(error.contains("ack_policy"), "{error}");
}

#[tokio::test]
async fn a_consumer_with_another_ack_wait_is_updated_and_read() {
    let (settings, cleanup) = with_existing_consumer(|_, config| {
        config.ack_wait = Duration::from_secs(90);
        config.max_ack_pending = 7;
    })
    .await;
    let app = TestApp::spawn_full(settings, RestartBudget::default(), cleanup).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let config = app.consumer_info().await.config;
    assert_eq!(config.ack_wait, app.settings.nats.ack_wait);
    assert_eq!(
        config.max_ack_pending,
        app.settings
            .ingest_config()
            .consumer_config()
            .max_ack_pending
    );
}

#[tokio::test]
async fn a_consumer_with_its_own_delivery_bounds_gets_the_services_own() {
    let (settings, cleanup) = with_existing_consumer(|_, config| {
        // An operator's bounds: JetStream would drop a message after three
        // deliveries, whatever the service made of it.
        config.max_deliver = 3;
        config.backoff = vec![Duration::from_secs(1), Duration::from_secs(2)];
    })
    .await;
    let app = TestApp::spawn_full(settings, RestartBudget::default(), cleanup).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    let config = app.consumer_info().await.config;
    assert!(config.max_deliver <= 0, "unlimited: {}", config.max_deliver);
    assert!(config.backoff.is_empty(), "{:?}", config.backoff);
    assert_eq!(config.ack_wait, app.settings.nats.ack_wait);
}

#[tokio::test]
async fn with_recreate_allowed_a_consumer_with_another_filter_is_replaced_and_read() {
    let (mut settings, cleanup) = with_existing_consumer(|settings, config| {
        config.filter_subject = settings.nats.subject.replace("products", "orders");
    })
    .await;
    settings.nats.recreate_consumer = true;
    let app = TestApp::spawn_full(settings, RestartBudget::default(), cleanup).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    assert_eq!(
        app.consumer_info().await.config.filter_subject,
        app.settings.nats.subject
    );
}
