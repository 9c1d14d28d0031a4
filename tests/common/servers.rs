//! Servers a fault test owns, so that it can stop them: a nats-server process
//! of its own (own port, own store directory), and a TCP proxy in front of the
//! machine's Postgres that can refuse and cut connections. The machine's shared
//! services are never stopped.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream that only this test uses.
pub struct NatsServer {
    pub port: u16,
    /// A user and password the server requires (`--user`, `--pass`), if any.
    credentials: Option<(String, String)>,
    store: PathBuf,
    process: Option<Child>,
}

impl NatsServer {
    /// Picks a port and a store directory; does not start the server yet.
    pub fn new() -> Self {
        let store = std::env::temp_dir().join(format!("products-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&store).unwrap();
        Self {
            port: free_port(),
            credentials: None,
            store,
            process: None,
        }
    }

    /// A server that only lets `user` with `password` in.
    pub fn with_credentials(user: &str, password: &str) -> Self {
        let mut server = Self::new();
        server.credentials = Some((user.into(), password.into()));
        server
    }

    /// The server's URL, with the credentials it requires.
    pub fn url(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!("nats://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the server (again, with the same port and store) and waits until it
    /// accepts connections.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "already running");
        let auth = match &self.credentials {
            Some((user, password)) => vec!["--user", user, "--pass", password],
            None => vec![],
        };
        let process = Command::new("nats-server")
            .args(auth)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/services installs it)");
        self.process = Some(process);
        super::wait_until("the test's nats-server accepts connections", || async {
            let (options, server) = actors::nats_auth::connect_options(&self.url());
            options.connect(server).await.is_ok()
        })
        .await;
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A TCP proxy to the machine's Postgres that a test can take down (refusing
/// new connections and cutting the open ones) and bring back up.
pub struct PgProxy {
    pub port: u16,
    up: watch::Sender<bool>,
    listening: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl PgProxy {
    pub async fn start() -> Self {
        let port = free_port();
        let (up, _) = watch::channel(true);
        let listening = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(port, up.subscribe(), listening.clone()));
        let proxy = Self {
            port,
            up,
            listening,
            task,
        };
        proxy.wait_listening(true).await;
        proxy
    }

    /// `postgres://…` through the proxy, to the database `name`.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Refuses new connections and cuts the open ones.
    pub async fn down(&self) {
        self.up.send_replace(false);
        self.wait_listening(false).await;
    }

    pub async fn up(&self) {
        self.up.send_replace(true);
        self.wait_listening(true).await;
    }

    async fn wait_listening(&self, listening: bool) {
        super::wait_until("the proxy changes state", || async {
            self.listening.load(Ordering::SeqCst) == listening
        })
        .await;
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(port: u16, mut up: watch::Receiver<bool>, listening: Arc<AtomicBool>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        // Down: nothing listens, so connections are refused.
        while !*up.borrow_and_update() {
            if up.changed().await.is_err() {
                return;
            }
        }
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        listening.store(true, Ordering::SeqCst);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        connections.spawn(pipe(client));
                    }
                }
                changed = up.changed() => {
                    if changed.is_err() || !*up.borrow() {
                        break;
                    }
                }
            }
        }
        // Going down: cut every open connection and stop listening.
        connections.abort_all();
        drop(listener);
        listening.store(false, Ordering::SeqCst);
    }
}

async fn pipe(mut client: TcpStream) {
    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
