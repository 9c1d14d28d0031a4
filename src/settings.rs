//! Every setting of the service, in one typed place, grouped like the system
//! (database, nats, ingest, cache, http, shutdown, manage): a flag each, with
//! its environment variable, its default and its allowed range, declared once
//! in `settings/groups.rs` (`products --help` lists them). A value out of
//! range is refused when it is parsed, with the setting, the value and the
//! range; [`Settings::validate`] reads every value back through the same
//! parsers (for settings built in code) and checks the rules between
//! settings. URLs that may carry credentials are [`SecretUrl`]s, and keys
//! [`Secret`]s, down to where they connect: they print redacted. Every secret
//! can also come from a file (`DATABASE_URL_FILE`, `NATS_URL_FILE`,
//! `MANAGE_SESSION_KEY_FILE`), read by [`Settings::with_secret_files`].

mod groups;
mod parse;

pub use groups::{
    CacheSettings, DatabaseSettings, HttpSettings, IngestSettings, ManageSettings, NatsSettings,
    ShutdownSettings,
};
pub use parse::{bounds, show_duration};

use actors::http::access::{self, Access};
use actors::http::publisher::PublishTo;
use actors::http::session::{Lifetimes, SessionKey};
use actors::ingest::IngestConfig;
use actors::jetstream::StreamSpec;
use actors::secret::Secret;
use clap::{Args, CommandFactory, Parser, ValueEnum};
use ipnet::IpNet;
use parse::*;
use std::collections::HashMap;
use std::sync::Arc;

/// The settings as a command of their own: the declaration, for parsing
/// and for reading settings back ([`Settings::validate`]).
#[derive(Parser)]
struct Declared {
    #[command(flatten)]
    settings: Settings,
}

/// The settings [`Settings::validate`] does not read back: the secrets
/// (never written out; checked on their own) and the files (read later).
const NOT_READ_BACK: [&str; 3] = ["DATABASE_URL", "NATS_URL", "MANAGE_SESSION_KEY"];

#[derive(Args, Clone, Debug)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub nats: NatsSettings,
    #[command(flatten)]
    pub ingest: IngestSettings,
    #[command(flatten)]
    pub cache: CacheSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub shutdown: ShutdownSettings,
    #[command(flatten)]
    pub manage: ManageSettings,
    /// Log format: `pretty` for people, `json` for log collectors.
    /// Levels come from RUST_LOG [default: info].
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        global = true,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
}

/// Whether the manage forms are on (see `UI_MANAGE`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiManage {
    /// On when operators are configured.
    Auto,
    /// On; refused at start without operators.
    True,
    /// Off.
    False,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The setting a parse error of the declaration names, as [`InvalidSetting`]:
/// its variable, the value and the parser's own rule.
fn refused(error: &clap::Error, flags: &HashMap<String, String>) -> InvalidSetting {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => text.clone(),
        _ => String::new(),
    };
    let flag = context(ContextKind::InvalidArg);
    let flag = flag
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    let var = flags
        .iter()
        .find(|(_, long)| long.as_str() == flag)
        .map_or("(a setting)", |(var, _)| var.as_str());
    let rule = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_else(|| error.kind().to_string());
    invalid(var, &context(ContextKind::InvalidValue), rule)
}

/// A setting refused at start: which (its environment variable), the value
/// (redacted if it is a URL) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value} is refused: {rule}")]
pub struct InvalidSetting {
    pub var: String,
    pub value: String,
    pub rule: String,
}

impl Settings {
    /// The settings as `products` sees them with no flag: the defaults, or the
    /// environment variables where set (tests start from here and set their own).
    pub fn defaults() -> Self {
        Declared::parse_from(["products"]).settings
    }

    /// The settings with each secret given as a file (`*_FILE`) read into
    /// its setting (a file's trailing line break is not part of the secret).
    pub fn with_secret_files(mut self) -> Result<Settings, InvalidSetting> {
        if let Some(path) = &self.database.url_file {
            self.database.url = read_secret("DATABASE_URL_FILE", path)?.into();
        }
        if let Some(path) = &self.nats.url_file {
            self.nats.url = read_secret("NATS_URL_FILE", path)?.into();
        }
        if let Some(path) = &self.manage.session_key_file {
            self.manage.session_key = Some(
                read_secret("MANAGE_SESSION_KEY_FILE", path)?
                    .as_str()
                    .into(),
            );
        }
        Ok(self)
    }

    /// Checks every setting against its range and the rules between settings.
    /// The parsers refuse most of this already; this also covers settings
    /// built in code, and the rules no single value can break.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.read_back()?;
        refuse("DATABASE_URL", &self.database.url, check_database_url)?;
        refuse("NATS_URL", &self.nats.url, check_nats_url)?;
        let subjects = self.nats.stream_subjects.join(",");
        if self.nats.stream_subjects.is_empty() {
            return Err(invalid(
                "NATS_STREAM_SUBJECTS",
                &subjects,
                "names no subject",
            ));
        }
        if !self
            .nats
            .stream_subjects
            .iter()
            .any(|pattern| subject_matches(pattern, &self.nats.subject))
        {
            return Err(invalid(
                "NATS_SUBJECT",
                &self.nats.subject,
                format!(
                    "none of the stream's subjects (NATS_STREAM_SUBJECTS={subjects}) takes it, \
                     so the stream this service creates would never hold the products"
                ),
            ));
        }
        if self.shutdown.drain >= self.shutdown.timeout {
            return Err(invalid(
                "SHUTDOWN_DRAIN",
                &show_duration(self.shutdown.drain),
                format!(
                    "must be less than SHUTDOWN_TIMEOUT={}, whose budget it is part of",
                    show_duration(self.shutdown.timeout)
                ),
            ));
        }
        self.check_manage()
    }

    /// Reads every setting back through its own parser, from the
    /// declaration (`settings/groups.rs`, the one place that states each
    /// range and rule), so that settings built in code are held to the same
    /// rules as the command line and the environment (which is not read
    /// here).
    fn read_back(&self) -> Result<(), InvalidSetting> {
        let declared = Declared::command();
        let flags: HashMap<String, String> = declared
            .get_arguments()
            .filter_map(|arg| {
                let var = arg.get_env()?.to_str()?.to_owned();
                Some((var, arg.get_long()?.to_owned()))
            })
            .collect();
        let command = declared.mut_args(|arg| arg.env(None::<&'static str>));
        let mut args = vec!["products".to_owned()];
        for (var, value) in self.to_env() {
            if value.is_empty() || NOT_READ_BACK.contains(&var) {
                continue;
            }
            let flag = flags.get(var).map_or(var, String::as_str);
            args.push(format!("--{flag}={value}"));
        }
        let Err(error) = command.try_get_matches_from(args) else {
            return Ok(());
        };
        Err(refused(&error, &flags))
    }

    /// The rules of managing: forms asked for need operators, the users file
    /// must read, the key must be long enough.
    fn check_manage(&self) -> Result<(), InvalidSetting> {
        let users = self.users()?;
        if self.manage.ui == UiManage::True
            && users.is_empty()
            && self.manage.trusted_proxies.is_empty()
        {
            return Err(invalid(
                "UI_MANAGE",
                "true",
                "the forms need operators: set MANAGE_USERS_FILE (with lines written by \
                 `products hash-password`) or MANAGE_TRUSTED_PROXIES (an authenticating proxy); \
                 see docs/SECURITY.md",
            ));
        }
        if let Some(key) = &self.manage.session_key {
            SessionKey::new(key.expose().as_bytes().to_vec())
                .map_err(|rule| invalid("MANAGE_SESSION_KEY", "***", rule))?;
        }
        Ok(())
    }

    /// The operators of `MANAGE_USERS_FILE` (none without one).
    fn users(&self) -> Result<HashMap<String, String>, InvalidSetting> {
        let Some(path) = &self.manage.users_file else {
            return Ok(HashMap::new());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("MANAGE_USERS_FILE", &shown, format!("cannot be read: {e}")))?;
        access::parse_users(&text).map_err(|rule| invalid("MANAGE_USERS_FILE", &shown, rule))
    }

    /// Each setting as `VAR=value`, the URLs redacted: what `products config` prints.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database.url.to_string()),
            (
                "DATABASE_MAX_CONNECTIONS",
                self.database.max_connections.to_string(),
            ),
            ("NATS_URL", self.nats.url.to_string()),
            ("HTTP_ADDR", self.http.addr.to_string()),
            ("NATS_STREAM", self.nats.stream.clone()),
            ("NATS_STREAM_SUBJECTS", self.nats.stream_subjects.join(",")),
            ("NATS_SUBJECT", self.nats.subject.clone()),
            ("NATS_DURABLE", self.nats.durable.clone()),
            (
                "NATS_RECREATE_CONSUMER",
                self.nats.recreate_consumer.to_string(),
            ),
            ("NATS_ACK_WAIT", show_duration(self.nats.ack_wait)),
            (
                "NATS_DUPLICATE_WINDOW",
                show_duration(self.nats.duplicate_window),
            ),
            ("INGEST_BATCH_SIZE", self.ingest.batch_size.to_string()),
            (
                "INGEST_MAX_DELIVERIES",
                self.ingest.max_deliveries.to_string(),
            ),
            ("INGEST_RETRY_DELAY", show_duration(self.ingest.retry_delay)),
            (
                "CACHE_INVALIDATE_EVERY",
                show_duration(self.cache.invalidate_every),
            ),
            ("CACHE_MAX_BYTES", self.cache.max_bytes.to_string()),
            (
                "CACHE_CATCH_UP_MAX_ROWS",
                self.cache.catch_up_max_rows.to_string(),
            ),
            ("SHUTDOWN_TIMEOUT", show_duration(self.shutdown.timeout)),
            ("SHUTDOWN_DRAIN", show_duration(self.shutdown.drain)),
            (
                "READY_MAX_LAG",
                self.http
                    .ready_max_lag
                    .map(show_duration)
                    .unwrap_or_default(),
            ),
            ("UI_MANAGE", value_name(self.manage.ui)),
            (
                "MANAGE_USERS_FILE",
                show_path(self.manage.users_file.as_deref()),
            ),
            (
                "MANAGE_TRUSTED_PROXIES",
                self.manage
                    .trusted_proxies
                    .iter()
                    .map(IpNet::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("MANAGE_USER_HEADER", self.manage.user_header.clone()),
            (
                "MANAGE_SESSION_KEY",
                self.manage
                    .session_key
                    .as_ref()
                    .map(Secret::to_string)
                    .unwrap_or_default(),
            ),
            (
                "MANAGE_SESSION_KEY_FILE",
                show_path(self.manage.session_key_file.as_deref()),
            ),
            (
                "MANAGE_SESSION_IDLE",
                show_duration(self.manage.session_idle),
            ),
            ("MANAGE_SESSION_MAX", show_duration(self.manage.session_max)),
            ("HTTP_BEHIND_TLS", self.http.behind_tls.to_string()),
            ("HTTP_CORS_ORIGINS", self.http.cors_origins.join(",")),
            (
                "EVENTS_MAX_FOLLOWERS",
                self.http.events_max_followers.to_string(),
            ),
            (
                "CHANGES_RETENTION",
                show_duration(self.http.changes_retention),
            ),
            (
                "DATABASE_URL_FILE",
                show_path(self.database.url_file.as_deref()),
            ),
            ("NATS_URL_FILE", show_path(self.nats.url_file.as_deref())),
            ("LOG_FORMAT", value_name(self.log_format)),
        ]
    }

    /// The database URL with its credentials masked, for logs (the same as
    /// `database_url`'s `Display`).
    pub fn database_url_redacted(&self) -> String {
        self.database.url.redacted()
    }

    /// Who may manage products and where the forms publish, if managing is
    /// on (see `UI_MANAGE`). Without a session key, a random one is made (and
    /// a warning says what that means).
    pub fn manage_args(&self) -> Result<Option<actors::http::ManageArgs>, InvalidSetting> {
        self.check_manage()?;
        let users = self.users()?;
        let operators = !users.is_empty() || !self.manage.trusted_proxies.is_empty();
        if self.manage.ui == UiManage::False || !operators {
            return Ok(None);
        }
        let key = match &self.manage.session_key {
            Some(key) => SessionKey::new(key.expose().as_bytes().to_vec())
                .map_err(|rule| invalid("MANAGE_SESSION_KEY", "***", rule))?,
            None => {
                tracing::warn!(
                    "MANAGE_SESSION_KEY is not set: a random key signs the sessions, so operators \
                     sign in again after a restart, and a session holds on this replica only"
                );
                SessionKey::random()
            }
        };
        Ok(Some(actors::http::ManageArgs {
            access: Access {
                users: Arc::new(users),
                trusted_proxies: self.manage.trusted_proxies.clone(),
                user_header: self.manage.user_header.clone(),
                key,
                lifetimes: Lifetimes {
                    idle: self.manage.session_idle,
                    max: self.manage.session_max,
                },
                secure_cookies: self.http.behind_tls,
            },
            publish: PublishTo {
                nats_url: self.nats.url.clone(),
                subject: self.nats.subject.clone(),
                stream: self.nats.stream.clone(),
            },
        }))
    }

    /// The stream, as ingest, `produce` and `smoke` create it when it is missing.
    pub fn stream(&self) -> StreamSpec {
        StreamSpec {
            name: self.nats.stream.clone(),
            subjects: self.nats.stream_subjects.clone(),
            duplicate_window: self.nats.duplicate_window,
        }
    }

    /// What ingest needs: where to read, and how to store.
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            nats_url: self.nats.url.clone(),
            stream: self.stream(),
            subject: self.nats.subject.clone(),
            durable: self.nats.durable.clone(),
            batch_size: usize::from(self.ingest.batch_size),
            ack_wait: self.nats.ack_wait,
            recreate_consumer: self.nats.recreate_consumer,
            max_deliveries: self.ingest.max_deliveries,
            retry_delay: self.ingest.retry_delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn valid() -> Settings {
        Settings::defaults()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn products_config_prints_every_declared_variable_once() {
        let mut declared: Vec<String> = Declared::command()
            .get_arguments()
            .filter_map(|arg| Some(arg.get_env()?.to_str()?.to_owned()))
            .collect();
        let mut printed: Vec<String> = valid()
            .to_env()
            .into_iter()
            .map(|(var, _)| var.to_owned())
            .collect();
        declared.sort();
        printed.sort();
        assert_eq!(printed, declared);
    }

    #[test]
    fn a_value_built_in_code_is_held_to_its_declared_parser() {
        // A header name the parser refuses, and a session lifetime out of
        // range: neither has a check of its own in `validate`.
        let mut settings = valid();
        settings.manage.user_header = "X Forwarded User".into();
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "MANAGE_USER_HEADER", "{error}");
        let mut settings = valid();
        settings.manage.session_idle = std::time::Duration::from_secs(1);
        let error = settings.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "MANAGE_SESSION_IDLE=1s is refused: must be from 1m to 1day"
        );
    }

    #[test]
    fn a_zero_invalidation_period_is_refused_with_the_range() {
        let mut settings = valid();
        settings.cache.invalidate_every = Duration::ZERO;
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "CACHE_INVALIDATE_EVERY");
        assert_eq!(
            error.to_string(),
            "CACHE_INVALIDATE_EVERY=0s is refused: must be from 1s to 1day"
        );
    }

    #[test]
    fn each_bounded_setting_is_refused_just_outside_its_range_and_taken_at_its_ends() {
        type Set = fn(&mut Settings, bool);
        // (variable, set it to just outside (true) or to the end of its range (false))
        let cases: [(&str, Set); 8] = [
            ("DATABASE_MAX_CONNECTIONS", |s, out| {
                s.database.max_connections = if out { 1 } else { 2 }
            }),
            ("INGEST_BATCH_SIZE", |s, out| {
                s.ingest.batch_size = if out { 1001 } else { 1000 }
            }),
            ("CACHE_MAX_BYTES", |s, out| {
                s.cache.max_bytes = if out { (1 << 20) - 1 } else { 1 << 20 }
            }),
            ("NATS_ACK_WAIT", |s, out| {
                s.nats.ack_wait = Duration::from_secs(if out { 3601 } else { 3600 })
            }),
            ("NATS_DUPLICATE_WINDOW", |s, out| {
                s.nats.duplicate_window = Duration::from_millis(if out { 999 } else { 1000 })
            }),
            ("CACHE_INVALIDATE_EVERY", |s, out| {
                s.cache.invalidate_every = Duration::from_secs(if out { 86_401 } else { 86_400 })
            }),
            ("SHUTDOWN_TIMEOUT", |s, out| {
                s.shutdown.timeout = Duration::from_secs(if out { 0 } else { 600 })
            }),
            ("NATS_STREAM", |s, out| {
                s.nats.stream = if out {
                    "x".repeat(256)
                } else {
                    "x".repeat(255)
                }
            }),
        ];
        for (var, set) in cases {
            let mut settings = valid();
            set(&mut settings, false);
            assert_eq!(settings.validate(), Ok(()), "{var} at the end of its range");
            set(&mut settings, true);
            let error = settings.validate().unwrap_err();
            assert_eq!(error.var, var, "{error}");
            assert!(error.rule.starts_with("must be from"), "{error}");
        }
    }

    #[test]
    fn names_with_spaces_dots_or_wildcards_are_refused() {
        for name in ["", "a b", "a.b", "a*", "a>", "a/b", "a\\b", "a\tb"] {
            assert!(nats_name(name).is_err(), "{name:?}");
        }
        for name in ["EVENTS", "event-processor", "durable_1"] {
            assert_eq!(nats_name(name).as_deref(), Ok(name));
        }
        let mut settings = valid();
        settings.nats.durable = "event processor".into();
        assert_eq!(settings.validate().unwrap_err().var, "NATS_DURABLE");
    }

    #[test]
    fn subjects_follow_the_nats_rules() {
        for subject in ["", "a..b", ".a", "a.", "a b", "a.b*", "a.>.b", "a.>x"] {
            assert!(stream_subject(subject).is_err(), "{subject:?}");
        }
        for subject in ["a", "a.b", "a.*.c", "a.>", ">", "*"] {
            assert!(stream_subject(subject).is_ok(), "{subject:?}");
        }
        assert!(publish_subject("events.*").is_err());
        assert!(publish_subject("events.>").is_err());
        assert!(publish_subject("events.products").is_ok());
    }

    #[test]
    fn the_subject_must_be_taken_by_one_of_the_stream_subjects() {
        assert!(subject_matches("events.>", "events.products"));
        assert!(subject_matches("events.*", "events.products"));
        assert!(subject_matches("events.products", "events.products"));
        assert!(!subject_matches("events.>", "events"));
        assert!(!subject_matches("events.*", "events.products.x"));
        assert!(!subject_matches("other.>", "events.products"));
        assert!(!subject_matches("events.products.x", "events.products"));

        let mut settings = valid();
        settings.nats.stream_subjects = vec!["other.>".into(), "more.*".into()];
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "NATS_SUBJECT");
        assert!(
            error.rule.contains("NATS_STREAM_SUBJECTS=other.>,more.*"),
            "{error}"
        );
        settings.nats.stream_subjects.push("events.*".into());
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn urls_are_checked_and_shown_redacted_when_refused() {
        let mut settings = valid();
        settings.database.url = "mysql://app:s3cret@db/products".into();
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "DATABASE_URL");
        assert!(!error.to_string().contains("s3cret"), "{error}");

        settings.database.url = "postgres://app:s3cret@db/".into();
        let error = settings.validate().unwrap_err();
        assert!(error.rule.contains("names no database"), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");

        let mut settings = valid();
        for url in [
            "http://app:s3cret@localhost:4222",
            "nats://app:s3cret@n1:4222,,nats://app:s3cret@n2:4222",
        ] {
            settings.nats.url = url.into();
            let error = settings.validate().unwrap_err();
            assert_eq!(error.var, "NATS_URL");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        for url in [
            "nats://s3cret@localhost:4222",
            "localhost:4222",
            "tls://a:b@h",
            "nats://a:b@n1:4222,nats://a:b@n2:4222",
        ] {
            settings.nats.url = url.into();
            assert_eq!(settings.validate(), Ok(()), "{url}");
        }
    }

    #[test]
    fn settings_print_redacted_in_debug_and_in_their_env_form() {
        let mut settings = valid();
        settings.database.url = "postgres://app:s3cret@db/products".into();
        settings.nats.url = "nats://t0ken@localhost:4222".into();
        let debug = format!("{settings:?}");
        let env = format!("{:?}", settings.to_env());
        for shown in [debug, env] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("t0ken"),
                "{shown}"
            );
        }
    }
}
