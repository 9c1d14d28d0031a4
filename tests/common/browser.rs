//! Headless Chromium for the browser tests, driven over WebDriver
//! (fantoccini) through a chromedriver of the test's own: started on a port
//! the system picks (it prints which), with a fresh profile, and stopped with
//! the browser when the test ends, pass or fail.

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// How long a browser test waits for something to show.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// A new headless Chromium, its window 1200×900.
    pub async fn start() -> Browser {
        let profile =
            std::env::temp_dir().join(format!("products-chromium-{}", uuid::Uuid::new_v4()));
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let stdout = driver.stdout.take().unwrap();
        // It says "... started successfully on port N." once it listens.
        let port = tokio::time::timeout(
            BROWSER_DEADLINE,
            tokio::task::spawn_blocking(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .find_map(|line| {
                        line.split("started successfully on port ")
                            .nth(1)
                            .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                    })
            }),
        )
        .await
        .expect("chromedriver says its port in time")
        .unwrap()
        .expect("chromedriver says its port");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let mut browser = Browser {
            client: ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
                .expect("a Chromium session starts"),
            driver,
            profile,
        };
        browser.driver.stdout = None;
        browser
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// The element `css` once it is there.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(BROWSER_DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} is on the page: {e}"))
    }

    /// The text of the element `css` once it is there. A live page may
    /// replace the element between finding and reading it (the change
    /// stream starts at a position at or before what the page shows, so a
    /// row it already shows can be filled again): then it is found again.
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {}
                Err(e) => panic!("the text of {css} can be read: {e}"),
            }
        }
    }

    /// Clicks the element `css` finds (once it is on the page).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{css} can be clicked: {e}"));
    }

    /// Types `text` into the element `css` finds (once it is on the page).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{css} takes typing: {e}"));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script` returns `true` in the page.
    pub async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            if self.run(script).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {BROWSER_DEADLINE:?} waiting until {what}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the browser is at `url`.
    pub async fn wait_for_url(&self, url: &str) {
        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            let now = self.client.current_url().await.unwrap();
            if now.as_str() == url {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {BROWSER_DEADLINE:?} waiting for {url}, at {now}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the page wrote to the console at level `SEVERE` (errors,
    /// refused resources, CSP violations) since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver gives the browser log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Saves a PNG of the window as `docs/screenshots/NAME.png` when
    /// `SCREENSHOTS=1` (so that a test run does not rewrite them each time).
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Fails if the page logged any error, then ends the session (and the
    /// browser with it).
    pub async fn finish(self) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A browser whose session did not end (a failed test) is found by its
        // own profile directory, and only that one is stopped.
        let profile = self.profile.display().to_string();
        if let Ok(processes) = std::fs::read_dir("/proc") {
            for process in processes.flatten() {
                let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&profile) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
