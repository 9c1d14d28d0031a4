//! Servers a fault test owns, so that it can stop them: a nats-server process
//! of its own (own port, own store directory), and a TCP proxy in front of the
//! machine's Postgres that can refuse and cut connections. The machine's shared
//! services are never stopped.
//!
//! Ports are never picked "free" and bound later (another process can take
//! one in between): nats-server picks its own first port and says which in a
//! ports file, and the proxy binds port 0 itself. A server is only taken as
//! ready when its own process answers: nats-server's name is checked, and a
//! child that exits is reported with its log.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A port that was free on 127.0.0.1 when this returned. Racy: another
/// process can take it before the caller binds it. Only for a child whose
/// port must be known before it starts (`tests/component/settings.rs`); the servers
/// below never use it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream that only this test uses.
pub struct NatsServer {
    /// Chosen by the server on its first start, kept for the restarts (the
    /// app under test has this URL).
    port: Option<u16>,
    /// Unique, so that a client can tell this server from any other.
    name: String,
    /// A user and password the server requires (`--user`, `--pass`), if any.
    credentials: Option<(String, String)>,
    /// The cluster it belongs to, if any.
    cluster: Option<ClusterMembership>,
    store: PathBuf,
    process: Option<Child>,
}

impl NatsServer {
    /// A store directory and a name; the server is not started yet.
    pub fn new() -> Self {
        let name = format!("products-test-{}", uuid::Uuid::new_v4().simple());
        let store = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&store).unwrap();
        Self {
            port: None,
            name,
            credentials: None,
            cluster: None,
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

    /// The server's URL, with the credentials it requires (known once it has
    /// started).
    pub fn url(&self) -> String {
        let port = self.port.expect("the nats-server has been started");
        match &self.credentials {
            Some((user, password)) => format!("nats://{user}:{password}@127.0.0.1:{port}"),
            None => format!("nats://127.0.0.1:{port}"),
        }
    }

    /// Its log (stderr, appended over restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.join("nats-server.log")).unwrap_or_default()
    }

    /// Starts the server and waits until it is the one answering on its port.
    /// The first start lets it choose a free port; a restart takes the same
    /// port again (and fails, with the server's log, if that is now taken).
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.store.join("nats-server.log"))
            .unwrap();
        let port = self.port.map_or("-1".to_owned(), |p| p.to_string());
        let auth = match &self.credentials {
            Some((user, password)) => vec!["--user", user, "--pass", password],
            None => vec![],
        };
        let cluster = match &self.cluster {
            Some(cluster) => cluster.args(),
            None => vec![],
        };
        let process = Command::new("nats-server")
            .args(auth)
            .args(cluster)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port,
                "-js",
                "--server_name",
                &self.name,
            ])
            .arg("-sd")
            .arg(&self.store)
            .arg("--ports_file_dir")
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server is installed (scripts/services installs it)");
        let ports_file = self
            .store
            .join(format!("nats-server_{}.ports", process.id()));
        self.process = Some(process);

        let mut port = None;
        super::wait_until("the test's nats-server says which port it took", || {
            self.assert_running();
            port = read_port(&ports_file, "nats");
            std::future::ready(port.is_some())
        })
        .await;
        self.port = port;
        if let Some(cluster) = &mut self.cluster {
            cluster.port = read_port(&ports_file, "cluster");
            assert!(
                cluster.port.is_some(),
                "the ports file names the cluster port"
            );
        }
        let url = self.url();
        super::wait_until("the test's nats-server answers, as itself", || {
            self.assert_running();
            let (url, name) = (url.clone(), self.name.clone());
            async move {
                let (options, server) = actors::jetstream::options(&url.as_str().into(), "test");
                match options.connect(server).await {
                    Ok(client) => {
                        let answering = client.server_info().server_name;
                        assert_eq!(answering, name, "another server answers on {url}");
                        true
                    }
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    /// Panics, with the server's log, if the process has exited.
    fn assert_running(&mut self) {
        let process = self.process.as_mut().expect("started");
        if let Some(status) = process.try_wait().unwrap() {
            panic!("nats-server exited ({status}):\n{}", self.log());
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A port in a ports file (`{"nats":["nats://127.0.0.1:PORT"],"cluster":[…]}`),
/// once the server has written it: `kind` is `nats` (clients) or `cluster` (routes).
fn read_port(ports_file: &std::path::Path, kind: &str) -> Option<u16> {
    let text = std::fs::read_to_string(ports_file).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports[kind][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// How one node joins a cluster: its name, its route port, and the routes
/// to every node.
struct ClusterMembership {
    name: String,
    port: Option<u16>,
    routes: Vec<String>,
}

impl ClusterMembership {
    fn args(&self) -> Vec<String> {
        let port = self.port.map_or("-1".to_owned(), |p| p.to_string());
        let mut args = vec![
            "--cluster_name".to_owned(),
            self.name.clone(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{port}"),
        ];
        if !self.routes.is_empty() {
            args.extend(["--routes".to_owned(), self.routes.join(",")]);
        }
        args
    }
}

/// A JetStream cluster of nats-servers on loopback, each with its own store
/// directory, each routing to all.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// JetStream in a cluster wants its routes configured before it starts,
    /// so the route ports are picked free beforehand (a port taken by another
    /// process in between makes a node exit, and the test fail with its log).
    pub async fn start(size: usize) -> Self {
        let name = format!("products-test-{}", uuid::Uuid::new_v4().simple());
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect();
        let mut nodes: Vec<NatsServer> = ports
            .iter()
            .map(|&port| {
                let mut node = NatsServer::new();
                node.cluster = Some(ClusterMembership {
                    name: name.clone(),
                    port: Some(port),
                    routes: routes.clone(),
                });
                node
            })
            .collect();
        // Each node waits for its own start only: started together, the
        // cluster forms as the routes connect.
        for node in &mut nodes {
            node.start().await;
        }
        Self { nodes }
    }

    /// Every node's client URL, comma-separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- nats-server log ---\n{}", self.log());
        }
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
        // Bound here, on a port the system picks: nothing can take it first.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let listening = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(listener, up.subscribe(), listening.clone()));
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
        let what = if listening {
            format!("the proxy listens on port {} (again)", self.port)
        } else {
            "the proxy stops listening".to_owned()
        };
        super::wait_until(&what, || async {
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

async fn serve(first: TcpListener, mut up: watch::Receiver<bool>, listening: Arc<AtomicBool>) {
    let addr: SocketAddr = first.local_addr().unwrap();
    let mut bound = Some(first);
    loop {
        // Down: nothing listens, so connections are refused.
        while !*up.borrow_and_update() {
            if up.changed().await.is_err() {
                return;
            }
        }
        // Up again: the same port (the app has it in its URL). Should another
        // process have taken it, `up()` times out saying so.
        let listener = match bound.take() {
            Some(listener) => listener,
            None => loop {
                match TcpListener::bind(addr).await {
                    Ok(listener) => break listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            },
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
