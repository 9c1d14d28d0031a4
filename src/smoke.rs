//! `products smoke --url http://host:8000`: checks a running deployment end to
//! end. It publishes one product through JetStream (with `produce`'s code: a
//! `Nats-Msg-Id`, retried with the same id) and waits until the service serves
//! it as JSON on `/products/{id}` (asking with `?min_seq=` for the
//! publish's stream sequence, so the service itself waits until it has
//! applied it) and in the HTML list on `/`, then prints how
//! long each took from the publish. If it is not served within `--timeout`, it
//! fails with what was published and where it was looked for.
//!
//! The product is recognisable and stays: its name is `smoke-<uuid>`, its
//! manufacturer `products smoke`, and its id an explicit random one in
//! [`SMOKE_IDS`], far above the ids the service assigns to id-less products.
//! It moves nothing: the service gives id-less products the smallest free ids
//! after the ones it gave before, whatever ids publishers chose.

use crate::produce;
use crate::settings::Settings;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use serde_json::json;
use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

/// The ids a smoke product takes: 2^52 up to 2^52 + 2^32, far from the small
/// ids the service assigns and below 2^53 (the largest integer a JSON number
/// carries exactly).
pub const SMOKE_IDS: Range<i64> = (1 << 52)..(1 << 52) + (1 << 32);
/// The name of a product `smoke` publishes starts with this.
pub const NAME_PREFIX: &str = "smoke-";
const MANUFACTURER: &str = "products smoke";
/// How often the service is asked while waiting.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The longest a single HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a successful smoke run saw.
#[derive(Debug, Clone)]
pub struct Served {
    pub id: i64,
    pub name: String,
    /// Where it is served as JSON.
    pub product_url: String,
    /// The stream sequence JetStream gave the message.
    pub stream_seq: u64,
    /// From the publish to the first 200 on `/products/{id}` with this name.
    pub as_json: Duration,
    /// From the publish to the name on the HTML list page that holds the id.
    pub in_list: Duration,
}

/// Publishes one `smoke-<uuid>` product and waits, until `timeout` after the
/// publish, for the service at `base_url` to serve it.
pub async fn run(settings: &Settings, base_url: &str, timeout: Duration) -> anyhow::Result<Served> {
    let base_url = base_url.trim_end_matches('/').to_owned();
    if !base_url.starts_with("http://") {
        bail!(
            "--url must be an http:// address of the service, like http://localhost:8000, not {base_url:?}"
        );
    }
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    // Nothing is published to a service that is not there.
    let health = format!("{base_url}/healthz");
    let status = http
        .get(&health)
        .send()
        .await
        .with_context(|| format!("the service does not answer at {health}"))?
        .status();
    if !status.is_success() {
        bail!("the service answers {status} at {health}: it is not up");
    }

    let uuid = uuid::Uuid::new_v4();
    let name = format!("{NAME_PREFIX}{uuid}");
    let id = SMOKE_IDS.start + (uuid.as_u128() % SMOKE_IDS.clone().count() as u128) as i64;
    let payload = json!({
        "id": id,
        "name": name,
        "price": 0,
        "manufacturer": MANUFACTURER,
        "description": "Published by `products smoke` to check this deployment end to end.",
    });
    let (client, js) = produce::connect(settings, "products-smoke").await?;
    let published = Instant::now();
    let ack = produce::publish(
        &js,
        &settings.nats.subject,
        Bytes::from(payload.to_string()),
        &name,
    )
    .await
    .with_context(|| format!("cannot publish {name} to {}", settings.nats.subject))?;
    client.flush().await?;
    let deadline = published + timeout;
    let published_what = format!(
        "{name} (id {id}) was published to {} (stream {}, sequence {})",
        settings.nats.subject, ack.stream, ack.sequence
    );

    let product_url = format!("{base_url}/products/{id}");
    // The service waits until it has applied the publish's sequence (or says
    // 503 after `wait`, and this asks again).
    let fresh_url = format!("{product_url}?min_seq={}&wait=2s", ack.sequence);
    let as_json = served_by(deadline, published, || async {
        let Ok(response) = http.get(&fresh_url).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["name"] == name.as_str()
    })
    .await
    .ok_or_else(|| {
        anyhow!(
            "{published_what}, but {product_url} did not serve it within {}: is the service \
             consuming this stream and subject (NATS_STREAM, NATS_SUBJECT), and is it ready \
             ({base_url}/readyz)?",
            humantime::format_duration(timeout)
        )
    })?;

    // The list is paged by id: the page after `id - 1` starts with this product.
    let list_url = format!("{base_url}/?after={}&limit=1", id - 1);
    let in_list = served_by(deadline, published, || async {
        match http.get(&list_url).send().await {
            Ok(response) if response.status().is_success() => response
                .text()
                .await
                .is_ok_and(|page| page.contains(name.as_str())),
            _ => false,
        }
    })
    .await
    .ok_or_else(|| {
        anyhow!(
            "{published_what} and {product_url} serves it, but the list {list_url} did not \
             show it within {}",
            humantime::format_duration(timeout)
        )
    })?;

    Ok(Served {
        id,
        name,
        product_url,
        stream_seq: ack.sequence,
        as_json,
        in_list,
    })
}

/// Polls `check` until it holds, and returns the time since `since`; `None`
/// at `deadline` (a check in flight then is abandoned).
async fn served_by<F, Fut>(deadline: Instant, since: Instant, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        if tokio::time::timeout_at(deadline, check()).await.ok()? {
            return Some(since.elapsed());
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
