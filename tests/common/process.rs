//! The `products` binary as a child process, for tests that kill it.

use products::settings::Settings;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::{Instant, sleep};

pub struct ServiceProcess {
    child: Option<Child>,
    settings: Settings,
    /// How many times the process was started: the log holds one
    /// "products is up" line per start that got that far.
    starts: usize,
    log: PathBuf,
    /// Environment variables set on top of the settings' (e.g. `LOG_FORMAT`).
    env: Vec<(String, String)>,
}

impl ServiceProcess {
    /// Starts `products serve` with these settings, listening on a port the
    /// system picks (see [`ServiceProcess::base`]); its log goes to a file
    /// that [`ServiceProcess::log`] reads.
    pub fn start(settings: &Settings) -> Self {
        Self::start_with_env(settings, &[])
    }

    /// As [`ServiceProcess::start`], with these environment variables too
    /// (`RUST_LOG` among them replaces the default `info,sqlx=warn`).
    pub fn start_with_env(settings: &Settings, env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!("products-{}.log", uuid::Uuid::new_v4()));
        let mut process = Self {
            child: None,
            settings: settings.clone(),
            starts: 0,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        process.restart();
        process
    }

    /// Starts the process again (after a kill), appending to the same log.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        let s = &self.settings;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_products"))
            .arg("serve")
            .env("DATABASE_URL", s.database.url.expose())
            .env("NATS_URL", s.nats.url.expose())
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("NATS_STREAM", &s.nats.stream)
            .env("NATS_STREAM_SUBJECTS", s.nats.stream_subjects.join(","))
            .env("NATS_SUBJECT", &s.nats.subject)
            .env("NATS_DURABLE", &s.nats.durable)
            .env(
                "NATS_ACK_WAIT",
                format!("{}ms", s.nats.ack_wait.as_millis()),
            )
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the products binary starts");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to `deadline` for the exit status.
    pub async fn terminate(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Sends the signal `name` (`TERM`, `INT`) to the process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the service is running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `deadline` for the process to exit by itself.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` of the running process, once it has logged
    /// that it is up; panics, with the log, if the process has exited.
    pub async fn base(&mut self) -> String {
        let mut addr = None;
        super::wait_until("the service logs the address it serves on", || {
            let child = self.child.as_mut().expect("the service is running");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the service exited ({status}):\n{}", self.log());
            }
            addr = self
                .log()
                .lines()
                .filter(|line| line.contains("products is up"))
                .nth(self.starts - 1)
                .and_then(|line| {
                    // `addr=…` in the pretty log, `"addr":"…"` in the JSON one.
                    let rest = line
                        .split("addr=")
                        .nth(1)
                        .or_else(|| line.split("\"addr\":\"").nth(1))?;
                    rest.split(|c: char| c.is_whitespace() || c == '"').next()
                })
                .map(str::to_owned);
            std::future::ready(addr.is_some())
        })
        .await;
        format!("http://{}", addr.unwrap())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            eprintln!("--- service log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
