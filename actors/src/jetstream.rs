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

/// Why a message could not be published again ([`republish`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "the stream that held it ({held_by}) was deleted since; the stream is now {now}, \
         whose sequence {seq} is another message"
    )]
    StreamChanged {
        held_by: String,
        now: String,
        seq: u64,
    },
    #[error("message {0} is no longer in the stream (its limits removed it)")]
    NotInStream(u64),
    #[error("the stream cannot be read")]
    Read(#[source] async_nats::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// A message published again.
#[derive(Debug, Clone)]
pub struct Republished {
    /// The stream's identity and the new message's sequence in it.
    pub stream: String,
    pub seq: u64,
    /// The message, as the stream held it.
    pub payload: Bytes,
}

/// Publishes the message `seq` of `stream` again (a message set aside, once
/// its cause is fixed): read whole from the stream by its sequence, to the
/// same subject, with the id `message_id`, naming `operator` (none: the
/// operator the original named, if it did). `held_by` is the identity of the
/// stream that held it ([`identity`]): a stream created again since holds
/// other messages at that sequence, which are never taken for it.
pub async fn republish(
    js: &jetstream::Context,
    stream: &str,
    held_by: &str,
    seq: u64,
    message_id: &str,
    operator: Option<&str>,
) -> Result<Republished, ReplayError> {
    let read = |e: async_nats::Error| ReplayError::Read(e);
    let handle = js.get_stream(stream).await.map_err(|e| read(e.into()))?;
    let now = identity(&handle).await.map_err(read)?;
    if now != held_by {
        return Err(ReplayError::StreamChanged {
            held_by: held_by.to_owned(),
            now,
            seq,
        });
    }
    let original = handle
        .get_raw_message(seq)
        .await
        .map_err(|e| match e.kind() {
            jetstream::stream::RawMessageErrorKind::NoMessageFound => ReplayError::NotInStream(seq),
            _ => read(e.into()),
        })?;
    let named = original
        .headers
        .get(OPERATOR_HEADER)
        .map(|value| value.as_str().to_owned());
    let message = Outgoing {
        subject: original.subject.as_str(),
        payload: original.payload.clone(),
        message_id,
        operator: operator.or(named.as_deref()),
    };
    let ack = publish(js, message).await?;
    Ok(Republished {
        stream: now,
        seq: ack.sequence,
        payload: original.payload,
    })
}
