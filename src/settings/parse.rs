//! How each setting's text is read and checked: the ranges ([`bounds`]),
//! the clap parsers the declaration in `groups.rs` names, and the rules for
//! names, subjects and URLs that [`super::Settings::validate`] applies again.

use super::InvalidSetting;
use actors::secret::SecretUrl;
use clap::ValueEnum;
use ipnet::IpNet;
use std::fmt::Display;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The range of each bounded setting: the parsers, [`Settings::validate`] and
/// the tests read them from here (`--help` and docs/CONFIGURATION.md state them in words).
pub mod bounds {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// At least two: one for the writer's transaction, one for reads (pages,
    /// the readiness probe, the cache rebuild), which would otherwise wait for it.
    pub const DATABASE_MAX_CONNECTIONS: RangeInclusive<u32> = 2..=1000;
    /// At most 1000 rows per transaction (and 4 × this many unacked messages).
    pub const INGEST_BATCH_SIZE: RangeInclusive<u16> = 1..=1000;
    pub const INGEST_MAX_DELIVERIES: RangeInclusive<u32> = 1..=100;
    /// Doubled with each delivery, up to a minute.
    pub const INGEST_RETRY_DELAY: RangeInclusive<Duration> = millis(100)..=secs(60);
    /// Up to ten million products (a few GB of memory).
    /// 1 MiB to 64 GiB.
    pub const CACHE_MAX_BYTES: RangeInclusive<u64> = (1 << 20)..=(64 << 30);
    pub const NATS_ACK_WAIT: RangeInclusive<Duration> = secs(1)..=secs(3600);
    pub const NATS_DUPLICATE_WINDOW: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    /// Rows one catch-up of the change feed reads at most.
    pub const CACHE_CATCH_UP_MAX_ROWS: RangeInclusive<u64> = 100..=1_000_000;
    /// The timer panics on zero; more often than once a second only thrashes.
    pub const CACHE_INVALIDATE_EVERY: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    pub const SHUTDOWN_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(600);
    /// Less than `SHUTDOWN_TIMEOUT`, whose budget it is part of.
    pub const SHUTDOWN_DRAIN: RangeInclusive<Duration> = secs(0)..=secs(300);
    pub const READY_MAX_LAG: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    /// JetStream's longest stream or consumer name.
    pub const NATS_NAME_LEN: RangeInclusive<usize> = 1..=255;
    /// Each open feed holds a connection and a receiver of the broadcast.
    pub const EVENTS_MAX_FOLLOWERS: RangeInclusive<usize> = 1..=100_000;
    pub const CHANGES_RETENTION: RangeInclusive<Duration> = secs(1)..=secs(30 * 86_400);
    pub const MANAGE_SESSION_IDLE: RangeInclusive<Duration> = secs(60)..=secs(86_400);
    pub const MANAGE_SESSION_MAX: RangeInclusive<Duration> = secs(60)..=secs(30 * 86_400);

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

pub(crate) fn invalid(var: &str, value: &str, rule: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        var: var.to_owned(),
        value: value.to_owned(),
        rule: rule.into(),
    }
}

pub(crate) fn refuse<V: Display + ?Sized, T>(
    var: &'static str,
    value: &V,
    check: impl Fn(&V) -> Result<T, String>,
) -> Result<(), InvalidSetting> {
    check(value)
        .map(drop)
        .map_err(|rule| invalid(var, &value.to_string(), rule))
}

pub(crate) fn range_rule<T>(range: &RangeInclusive<T>, show: impl Fn(&T) -> String) -> String {
    format!(
        "must be from {} to {}",
        show(range.start()),
        show(range.end())
    )
}

/// The secret in the file at `path`, without its trailing line break.
pub(crate) fn read_secret(var: &'static str, path: &Path) -> Result<String, InvalidSetting> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            var,
            &path.display().to_string(),
            format!("cannot be read: {e}"),
        )
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

pub(crate) fn show_path(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// A value's name as clap takes it.
pub(crate) fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// A trusted proxy: an address (`10.0.0.7`) or a network (`10.0.0.0/8`).
pub(crate) fn proxy_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "expected an IP address or a network such as 10.0.0.0/8".to_owned())
}

/// An origin a browser names in `Origin` (`https://shop.example`,
/// `http://localhost:3000`), or `*`.
pub(crate) fn cors_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(text.to_owned());
    }
    let host = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match host {
        Some(host)
            if !host.is_empty()
                && !host.contains(['/', '?', '#', '@', ' '])
                && !host.starts_with(':') =>
        {
            Ok(text.to_owned())
        }
        _ => Err(
            "is not an origin: give the scheme and host (and port), such as https://shop.example, or *"
                .into(),
        ),
    }
}

/// A header name as HTTP takes it.
pub(crate) fn header_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("is not a header name (letters, digits and - only, e.g. X-Forwarded-User)".into())
    }
}

/// `30s`, `2m`, `1h 30m`, as humantime reads and writes them.
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A clap parser for a number within `range`.
pub(crate) fn number_in<T>(
    range: RangeInclusive<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    move |text| {
        let value: T = text.trim().parse().map_err(|e| format!("{e}"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(range_rule(&range, T::to_string))
        }
    }
}

/// A clap parser for a duration (`15s`, `2m`, `1h 30m`) within `range`.
pub(crate) fn duration_in(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value = humantime::parse_duration(text.trim())
            .map_err(|e| format!("{e} (expected e.g. 15s, 2m or 1h)"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(range_rule(&range, |d| show_duration(*d)))
        }
    }
}

/// A stream or consumer name as JetStream takes it.
pub(crate) fn nats_name(name: &str) -> Result<String, String> {
    let len = name.chars().count();
    if !bounds::NATS_NAME_LEN.contains(&len) {
        return Err(format!(
            "must be from {} to {} characters long",
            bounds::NATS_NAME_LEN.start(),
            bounds::NATS_NAME_LEN.end()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "must not contain {c:?} (no spaces, '.', '*', '>', '/' or '\\')"
        ));
    }
    Ok(name.to_owned())
}

/// A subject a stream may take: tokens separated by dots, `*` and `>` as
/// whole tokens, `>` only at the end.
pub(crate) fn stream_subject(subject: &str) -> Result<String, String> {
    if subject.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("must not contain {c:?} (no spaces)"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("has an empty token (a dot at either end, or two dots)".into());
        }
        if token.contains(['*', '>']) && *token != "*" && *token != ">" {
            return Err("has a wildcard ('*' or '>') that is not a whole token".into());
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err("has '>' before its last token".into());
        }
    }
    Ok(subject.to_owned())
}

/// A subject messages are published on: a stream subject without wildcards.
pub(crate) fn publish_subject(subject: &str) -> Result<String, String> {
    let subject = stream_subject(subject)?;
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(
            "must not contain a wildcard ('*' or '>'): products are published on it".into(),
        );
    }
    Ok(subject)
}

/// Whether the stream subject `pattern` takes messages published on `subject`.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(s)) if token == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

pub(crate) fn check_database_url(url: &SecretUrl) -> Result<(), String> {
    let parsed = url::Url::parse(url.expose()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme is {:?}; expected postgres:// or postgresql://",
            parsed.scheme()
        ));
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err("names no database (expected e.g. postgres://host/products)".into());
    }
    Ok(())
}

pub(crate) fn check_nats_url(url: &SecretUrl) -> Result<(), String> {
    let servers: Vec<&str> = url.expose().split(',').map(str::trim).collect();
    if servers.iter().any(|server| server.is_empty()) {
        return Err("an empty server in the list".into());
    }
    // async-nats's own parser: what it refuses, connecting would refuse later.
    for server in servers {
        server
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
