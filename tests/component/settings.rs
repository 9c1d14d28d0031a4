//! Settings as the operator gives them: each environment variable read by the
//! real binary (`products config` prints what it parsed), each value out of
//! range refused with a message that names it, and no credential in anything
//! the service prints.

use crate::common::servers::{NatsServer, free_port};
use crate::common::{Cleanup, unique_settings, wait_until_within};
use clap::CommandFactory;
use products::cli::Cli;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// `products <args>` with only `env` set (nothing inherited from the test's
/// environment), to completion.
fn products(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_products"))
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the products binary runs")
}

/// Every variable `products --help` documents.
fn documented_variables() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_setting_has_its_row_in_the_configuration_page() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/CONFIGURATION.md"
    ))
    .expect("docs/CONFIGURATION.md, which the README links to");
    let missing: Vec<String> = documented_variables()
        .into_iter()
        .filter(|var| !readme.contains(&format!("| `{var}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/CONFIGURATION.md's settings table: {missing:?}"
    );
}

#[test]
fn every_setting_is_read_from_its_environment_variable() {
    let users_file = crate::common::operators_file();
    let users_file = users_file.to_str().unwrap();
    let key = "k".repeat(40);
    // (variable, value given, value the service runs with), none of them a
    // default. (The `*_FILE` settings have a test of their own.)
    let cases = [
        (
            "DATABASE_URL",
            "postgres://app:pg-pass-1@db.example:6543/catalogue",
            "postgres://***@db.example:6543/catalogue",
        ),
        ("DATABASE_MAX_CONNECTIONS", "7", "7"),
        (
            "NATS_URL",
            "nats://nats-token-1@nats.example:4333",
            "nats://***@nats.example:4333",
        ),
        ("HTTP_ADDR", "127.0.0.1:9123", "127.0.0.1:9123"),
        ("NATS_STREAM", "CATALOGUE", "CATALOGUE"),
        ("NATS_STREAM_SUBJECTS", "a.>,b.*", "a.>,b.*"),
        ("NATS_SUBJECT", "b.products", "b.products"),
        ("NATS_DURABLE", "reader-2", "reader-2"),
        ("NATS_RECREATE_CONSUMER", "true", "true"),
        ("NATS_ACK_WAIT", "45s", "45s"),
        ("NATS_DUPLICATE_WINDOW", "5m", "5m"),
        ("INGEST_BATCH_SIZE", "250", "250"),
        ("INGEST_MAX_DELIVERIES", "9", "9"),
        ("INGEST_RETRY_DELAY", "500ms", "500ms"),
        ("CACHE_INVALIDATE_EVERY", "1m 30s", "1m 30s"),
        ("CACHE_MAX_BYTES", "2000000", "2000000"),
        ("CACHE_CATCH_UP_MAX_ROWS", "5000", "5000"),
        ("SHUTDOWN_TIMEOUT", "40s", "40s"),
        ("SHUTDOWN_DRAIN", "12s", "12s"),
        ("READY_MAX_LAG", "2m", "2m"),
        ("UI_MANAGE", "false", "false"),
        ("MANAGE_USERS_FILE", users_file, users_file),
        (
            "MANAGE_TRUSTED_PROXIES",
            "10.0.0.0/8,192.168.1.7",
            "10.0.0.0/8,192.168.1.7/32",
        ),
        ("MANAGE_USER_HEADER", "x-auth-user", "x-auth-user"),
        ("MANAGE_SESSION_KEY", &key, "***"),
        ("MANAGE_SESSION_IDLE", "10m", "10m"),
        ("MANAGE_SESSION_MAX", "2h", "2h"),
        ("HTTP_BEHIND_TLS", "true", "true"),
        (
            "HTTP_CORS_ORIGINS",
            "https://shop.example,http://localhost:3000",
            "https://shop.example,http://localhost:3000",
        ),
        ("EVENTS_MAX_FOLLOWERS", "50", "50"),
        ("CHANGES_RETENTION", "36h", "1day 12h"),
        ("LOG_FORMAT", "json", "json"),
    ];
    let tested: BTreeSet<String> = cases.iter().map(|(var, ..)| var.to_string()).collect();
    let not_files: BTreeSet<String> = documented_variables()
        .into_iter()
        .filter(|var| !var.ends_with("_FILE") || var == "MANAGE_USERS_FILE")
        .collect();
    assert_eq!(tested, not_files, "every setting has a case here");

    let env: Vec<(&str, &str)> = cases.iter().map(|(var, given, _)| (*var, *given)).collect();
    let output = products(&["config"], &env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    for (var, given, expected) in cases {
        assert_eq!(printed.get(var), Some(&expected), "{var}={given}");
    }
    assert!(!stdout.contains("pg-pass-1") && !stdout.contains("nats-token-1"));
    assert!(!stdout.contains(&key), "the session key is not printed");
}

#[test]
fn each_secret_is_read_from_its_file_without_the_trailing_line_break() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let database = file("db", "postgres://app:file-pass-1@db.example/from_file\n");
    let nats = file("nats", "nats://file-token-2@nats.example:4333\n");
    let key = file("key", &format!("{}\n", "f".repeat(40)));
    let output = products(
        &["config"],
        &[
            ("DATABASE_URL", "postgres://localhost/from_env"),
            ("DATABASE_URL_FILE", &database),
            ("NATS_URL_FILE", &nats),
            ("MANAGE_SESSION_KEY_FILE", &key),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "DATABASE_URL=postgres://***@db.example/from_file",
        "NATS_URL=nats://***@nats.example:4333",
        "MANAGE_SESSION_KEY=***",
        &format!("DATABASE_URL_FILE={database}"),
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in:\n{stdout}");
    }
    for secret in ["file-pass-1", "file-token-2", "ffffffff"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
}

#[test]
fn a_short_session_key_is_refused_without_being_printed() {
    let output = products(&["config"], &[("MANAGE_SESSION_KEY", "short-key-1")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("MANAGE_SESSION_KEY") && stderr.contains("at least 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-key-1"), "{stderr}");
}

#[test]
fn each_value_out_of_range_is_refused_with_the_setting_the_value_and_the_range() {
    // (variable, value, what the message must also say)
    let cases = [
        ("DATABASE_URL", "mysql://db/products", "postgres://"),
        ("DATABASE_URL", "postgres://db/", "names no database"),
        ("DATABASE_URL", "not a url", "not a URL"),
        ("DATABASE_MAX_CONNECTIONS", "1", "2 to 1000"),
        ("DATABASE_MAX_CONNECTIONS", "1001", "2 to 1000"),
        ("DATABASE_MAX_CONNECTIONS", "ten", "invalid digit"),
        ("NATS_URL", "http://localhost:4222", "scheme"),
        ("NATS_URL", "nats://n1:4222,,nats://n2:4222", "empty server"),
        ("HTTP_ADDR", "localhost", "socket address"),
        ("NATS_STREAM", "my stream", "no spaces"),
        ("NATS_STREAM", "events.v2", "'.'"),
        ("NATS_STREAM_SUBJECTS", "events..x", "empty token"),
        ("NATS_STREAM_SUBJECTS", "events.>.x", "last token"),
        ("NATS_SUBJECT", "events.*", "wildcard"),
        (
            "NATS_SUBJECT",
            "other.products",
            "NATS_STREAM_SUBJECTS=events.>",
        ),
        ("NATS_DURABLE", "event-*", "'*'"),
        ("NATS_DURABLE", "event processor", "no spaces"),
        ("NATS_RECREATE_CONSUMER", "maybe", "true, false"),
        ("UI_MANAGE", "yes", "auto, true, false"),
        ("MANAGE_USERS_FILE", "/nonexistent/users", "cannot be read"),
        (
            "MANAGE_TRUSTED_PROXIES",
            "proxy.example",
            "expected an IP address",
        ),
        ("MANAGE_USER_HEADER", "X User", "not a header name"),
        (
            "MANAGE_SESSION_KEY_FILE",
            "/nonexistent/key",
            "cannot be read",
        ),
        ("MANAGE_SESSION_IDLE", "30s", "1m to 1day"),
        ("MANAGE_SESSION_MAX", "31days", "1m to 30days"),
        ("HTTP_BEHIND_TLS", "maybe", "true, false"),
        ("HTTP_CORS_ORIGINS", "shop.example", "is not an origin"),
        (
            "HTTP_CORS_ORIGINS",
            "https://shop.example/path",
            "is not an origin",
        ),
        ("EVENTS_MAX_FOLLOWERS", "0", "1 to 100000"),
        ("CHANGES_RETENTION", "0s", "1s to 30days"),
        ("CHANGES_RETENTION", "31days", "1s to 30days"),
        ("DATABASE_URL_FILE", "/nonexistent/db", "cannot be read"),
        ("NATS_URL_FILE", "/nonexistent/nats", "cannot be read"),
        ("NATS_ACK_WAIT", "0s", "1s to 1h"),
        ("NATS_ACK_WAIT", "2h", "1s to 1h"),
        ("NATS_DUPLICATE_WINDOW", "500ms", "1s to 1day"),
        ("INGEST_BATCH_SIZE", "0", "1 to 1000"),
        ("INGEST_BATCH_SIZE", "1001", "1 to 1000"),
        ("INGEST_MAX_DELIVERIES", "0", "1 to 100"),
        ("INGEST_RETRY_DELAY", "2m", "100ms to 1m"),
        ("CACHE_INVALIDATE_EVERY", "0s", "1s to 1day"),
        ("CACHE_INVALIDATE_EVERY", "fast", "expected e.g. 15s"),
        ("CACHE_MAX_BYTES", "1000", "1048576 to 68719476736"),
        ("CACHE_CATCH_UP_MAX_ROWS", "10", "100 to 1000000"),
        ("SHUTDOWN_TIMEOUT", "0s", "1s to 10m"),
        ("SHUTDOWN_TIMEOUT", "11m", "1s to 10m"),
        ("SHUTDOWN_DRAIN", "6m", "0s to 5m"),
        ("SHUTDOWN_DRAIN", "25s", "less than SHUTDOWN_TIMEOUT"),
        ("READY_MAX_LAG", "0s", "1s to 1day"),
        ("LOG_FORMAT", "xml", "pretty, json"),
    ];
    let tested: BTreeSet<String> = cases.iter().map(|(var, ..)| var.to_string()).collect();
    let shown: BTreeSet<String> = documented_variables()
        .into_iter()
        .filter(|var| var != "MANAGE_SESSION_KEY")
        .collect();
    assert_eq!(
        tested, shown,
        "every setting whose value may be shown has a refused value here"
    );
    for (var, value, says) in cases {
        let output = products(&["config"], &[(var, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{var}={value}: {stderr}");
        for part in [var, value, says] {
            assert!(
                stderr.contains(part),
                "{var}={value}: {part:?} not in {stderr}"
            );
        }
        assert!(output.stdout.is_empty(), "{var}={value}: printed settings");
    }
}

#[test]
fn a_url_refused_at_start_is_shown_without_its_password() {
    for (var, value) in [
        ("DATABASE_URL", "mysql://app:pg-pass-2@db/products"),
        ("NATS_URL", "http://app:nats-pass-2@localhost:4222"),
    ] {
        let output = products(&["config"], &[(var, value)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains("pass-2"), "{stderr}");
    }
    // Nor does --help show the value a URL variable holds.
    let output = products(
        &["--help"],
        &[("NATS_URL", "nats://app:nats-pass-3@localhost:4222")],
    );
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("nats-pass-3"));
}

/// A child process that is killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Waits for the process to exit, failing the test after `limit`.
    async fn exit_within(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let mut status = None;
        wait_until_within(what, limit, || {
            status = status.or(self.0.try_wait().unwrap());
            std::future::ready(status.is_some())
        })
        .await;
        status.unwrap()
    }
}

#[tokio::test]
async fn the_service_exits_non_zero_when_the_cache_invalidation_period_is_zero() {
    let settings = unique_settings();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_products"))
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", settings.database.url.expose())
            .env("NATS_URL", settings.nats.url.expose())
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("NATS_STREAM", &settings.nats.stream)
            .env(
                "NATS_STREAM_SUBJECTS",
                settings.nats.stream_subjects.join(","),
            )
            .env("NATS_SUBJECT", &settings.nats.subject)
            .env("NATS_DURABLE", &settings.nats.durable)
            .env("CACHE_INVALIDATE_EVERY", "0s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the products binary starts"),
    );
    let _cleanup = Cleanup::new(&settings);
    let status = child
        .exit_within(Duration::from_secs(10), "products exits")
        .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("CACHE_INVALIDATE_EVERY") && stderr.contains("'0s'"),
        "{stderr}"
    );
    assert!(stderr.contains("must be from 1s to 1day"), "{stderr}");
}

#[tokio::test]
async fn passwords_in_the_database_and_nats_urls_never_reach_the_output_while_the_service_runs() {
    const NATS_PASSWORD: &str = "nats-secret-4b1d";
    const PG_PASSWORD: &str = "pg-secret-9f2e";
    let mut nats = NatsServer::with_credentials("products", NATS_PASSWORD);
    nats.start().await;
    let mut settings = unique_settings();
    // Postgres trusts local connections: it accepts any password, unread.
    settings.database.url = settings
        .database
        .url
        .expose()
        .replace("postgres@", &format!("postgres:{PG_PASSWORD}@"))
        .into();
    settings.nats.url = nats.url().into();
    assert!(settings.nats.url.expose().contains(NATS_PASSWORD));
    let _cleanup = Cleanup::new(&settings);
    let http_port = free_port();
    let output_file = std::env::temp_dir().join(format!("products-{}.out", uuid::Uuid::new_v4()));
    let output = std::fs::File::create(&output_file).unwrap();
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_products"))
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", settings.database.url.expose())
            .env("NATS_URL", settings.nats.url.expose())
            .env("HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("NATS_STREAM", &settings.nats.stream)
            .env(
                "NATS_STREAM_SUBJECTS",
                settings.nats.stream_subjects.join(","),
            )
            .env("NATS_SUBJECT", &settings.nats.subject)
            .env("NATS_DURABLE", &settings.nats.durable)
            // Every library's debug lines too: a secret must not hide there either.
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("the products binary starts"),
    );

    // Ready means connected to both, with the passwords: the service did start.
    let readyz = format!("http://127.0.0.1:{http_port}/readyz");
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            match http.get(&readyz).send().await {
                Ok(r) if r.status() == 200 => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let ready = tokio::time::timeout(crate::common::DEADLINE, ready).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = child
        .exit_within(Duration::from_secs(30), "products stops")
        .await;
    let printed = std::fs::read_to_string(&output_file).unwrap();
    let _ = std::fs::remove_file(&output_file);
    assert!(ready.is_ok(), "the service never got ready:\n{printed}");
    assert!(terminated.success() && status.success(), "{printed}");

    assert!(printed.contains("products is up"), "{printed}");
    for password in [NATS_PASSWORD, PG_PASSWORD] {
        let lines: Vec<&str> = printed.lines().filter(|l| l.contains(password)).collect();
        assert!(
            lines.is_empty(),
            "{password} was printed in:\n{}",
            lines.join("\n")
        );
    }
}
