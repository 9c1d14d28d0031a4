//! `products produce`: publishes product messages to the stream, the way the
//! old Go producer did (capitalised keys, `ID` 0), each with a `Nats-Msg-Id`
//! so that a retried publish is dropped by JetStream as a duplicate.

use crate::settings::Settings;
use actors::jetstream::{self as door, Outgoing, PublishError, Start};
use anyhow::{Context, bail};
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use std::path::PathBuf;
use std::time::Duration;

/// Publishes waiting for their acks at once.
const IN_FLIGHT: usize = 256;
/// Attempts per message before `produce` gives up.
const ATTEMPTS: usize = 3;
/// How long connecting to NATS may take before the command fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to publish.
#[derive(Debug, Clone)]
pub enum Source {
    /// The two sample products: `pen` by `bic` for 10, `toy` by `lego` for 100.
    Samples,
    /// A JSON array of product objects.
    File(PathBuf),
    /// This many generated products.
    Generated(u64),
}

/// The samples, byte for byte as the Go producer sent them.
pub const SAMPLES: [&str; 2] = [
    r#"{"ID":0,"Name":"pen","Price":10,"Manufacturer":"bic"}"#,
    r#"{"ID":0,"Name":"toy","Price":100,"Manufacturer":"lego"}"#,
];

pub async fn run(settings: &Settings, source: Source) -> anyhow::Result<()> {
    let payloads = payloads(source)?;
    let (client, js) = connect(settings, "products-produce").await?;

    let total = payloads.len();
    let subject = settings.nats.subject.clone();
    let failures: Vec<PublishError> = stream::iter(payloads)
        .map(|payload| {
            let id = uuid::Uuid::new_v4().to_string();
            let (js, subject) = (&js, &subject);
            async move { publish(js, subject, payload, &id).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await;
    client.flush().await?;
    if let Some(first) = failures.first() {
        bail!(
            "{} of {total} messages were not published; the first error: {first:#}",
            failures.len()
        );
    }
    println!(
        "published {total} messages to {} (stream {})",
        settings.nats.subject, settings.nats.stream
    );
    Ok(())
}

/// Connects to NATS as `name` (the name the server shows for the connection)
/// and makes sure the stream exists: created as the service would create it
/// when it is missing.
pub async fn connect(
    settings: &Settings,
    name: &str,
) -> anyhow::Result<(async_nats::Client, jetstream::Context)> {
    let client = door::connect(&settings.nats.url, name, Start::Within(CONNECT_TIMEOUT))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", settings.nats.url))?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(settings.stream().config())
        .await
        .with_context(|| format!("cannot get or create the stream {}", settings.nats.stream))?;
    Ok((client, js))
}

/// Publishes one message with the `Nats-Msg-Id` `message_id` and waits for
/// JetStream's ack, retrying with the same id (so a retry of a publish that did
/// land is dropped as a duplicate).
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    payload: Bytes,
    message_id: &str,
) -> Result<PublishAck, PublishError> {
    let mut attempt = 1;
    loop {
        let message = Outgoing {
            subject,
            payload: payload.clone(),
            message_id,
            operator: None,
        };
        match door::publish(js, message).await {
            Err(PublishError::Publish(_)) if attempt < ATTEMPTS => attempt += 1,
            answer => return answer,
        }
    }
}

fn payloads(source: Source) -> anyhow::Result<Vec<Bytes>> {
    Ok(match source {
        Source::Samples => SAMPLES
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect(),
        Source::File(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let items: Vec<serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON array", path.display()))?;
            items
                .iter()
                .map(|item| Ok(Bytes::from(serde_json::to_vec(item)?)))
                .collect::<anyhow::Result<_>>()?
        }
        Source::Generated(count) => (1..=count)
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"name":"product {i}","price":{},"manufacturer":"generator"}}"#,
                    i % 10_000
                ))
            })
            .collect(),
    })
}
