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
    pub http_port: u16,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `products serve` with these settings on `127.0.0.1:http_port`;
    /// its log goes to a file that [`ServiceProcess::log`] reads.
    pub fn start(settings: &Settings, http_port: u16) -> Self {
        let log = std::env::temp_dir().join(format!("products-{}.log", uuid::Uuid::new_v4()));
        let mut process = Self {
            child: None,
            settings: settings.clone(),
            http_port,
            log,
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
            .env("DATABASE_URL", &s.database_url)
            .env("NATS_URL", &s.nats_url)
            .env("HTTP_ADDR", format!("127.0.0.1:{}", self.http_port))
            .env("NATS_STREAM", &s.nats_stream)
            .env("NATS_STREAM_SUBJECTS", s.nats_stream_subjects.join(","))
            .env("NATS_SUBJECT", &s.nats_subject)
            .env("NATS_DURABLE", &s.nats_durable)
            .env(
                "NATS_ACK_WAIT",
                format!("{}ms", s.nats_ack_wait.as_millis()),
            )
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the products binary starts");
        self.child = Some(child);
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

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
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
