//! The one door to JetStream, for ingest, the forms' publisher, `products
//! produce` and `products smoke`: connecting (with the credentials a URL
//! carries, see [`credentials`]), the stream (how this service creates it,
//! and its identity), and publishing a message with a `Nats-Msg-Id`.

pub mod credentials;

use crate::secret::SecretUrl;
use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck, stream};
use async_nats::{ConnectOptions, HeaderValue};
use bytes::Bytes;
use catalogue::product::OPERATOR_HEADER;
use std::str::FromStr;
use std::time::Duration;

/// The stream the products are published to.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    /// Its name, e.g. `EVENTS`.
    pub name: String,
    /// The subjects it takes, e.g. `events.>`, when this service creates it.
    pub subjects: Vec<String>,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
    pub duplicate_window: Duration,
}

impl StreamSpec {
    /// The stream as this service creates it when it is missing. An existing
    /// stream is used as it is.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }
}

/// The options to connect to `url` (one server, or a cluster's,
/// comma-separated) as `name` (what the server shows for the connection),
/// with the URL's credentials, and the server addresses without them.
pub fn options(url: &SecretUrl, name: &str) -> (ConnectOptions, Vec<String>) {
    let (options, servers) = credentials::connect_options(url.expose());
    (options.name(name), servers)
}

/// How a connection starts.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// Returns at once, even while NATS is away; the client keeps trying.
    InBackground,
    /// Fails if NATS does not answer within this time (the commands).
    Within(Duration),
}

/// Connects to `url` as `name`.
pub async fn connect(
    url: &SecretUrl,
    name: &str,
    start: Start,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let (options, servers) = options(url, name);
    let options = match start {
        Start::InBackground => options.retry_on_initial_connect(),
        Start::Within(timeout) => options.connection_timeout(timeout),
    };
    options.connect(servers).await
}

/// The stream's identity now: its name and creation time. Asked for every
/// batch, so that a stream deleted and created again (its sequences start over)
/// is never taken for the old one.
pub async fn identity(stream: &stream::Stream) -> Result<String, async_nats::Error> {
    let info = stream.get_info().await?;
    Ok(format!("{}@{}", info.config.name, info.created))
}

/// One message to publish.
pub struct Outgoing<'a> {
    pub subject: &'a str,
    pub payload: Bytes,
    /// Its `Nats-Msg-Id`: JetStream drops a second publish with the same id
    /// within the stream's duplicate window, so a retry is safe.
    pub message_id: &'a str,
    /// The operator who sent it from a form ([`OPERATOR_HEADER`]), if one did.
    pub operator: Option<&'a str>,
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the {0} cannot be a NATS header (it holds a line break)")]
    NotAHeader(&'static str),
    #[error("NATS did not take the message")]
    Publish(#[source] async_nats::Error),
    #[error("NATS did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Publishes `message` and waits for JetStream's ack (which says the
/// stream sequence it was stored at).
pub async fn publish(
    js: &jetstream::Context,
    message: Outgoing<'_>,
) -> Result<PublishAck, PublishError> {
    let header =
        |what, value| HeaderValue::from_str(value).map_err(|_| PublishError::NotAHeader(what));
    let mut built = PublishMessage::build().payload(message.payload).header(
        async_nats::header::NATS_MESSAGE_ID,
        header("message id", message.message_id)?,
    );
    if let Some(operator) = message.operator {
        built = built.header(OPERATOR_HEADER, header("operator's name", operator)?);
    }
    js.send_publish(message.subject.to_owned(), built)
        .await
        .map_err(|e| PublishError::Publish(e.into()))?
        .await
        .map_err(|e| PublishError::Publish(e.into()))
}
