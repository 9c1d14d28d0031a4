//! A relay that gives the service's Postgres connections `TCP_NODELAY`.
//!
//! Why: sqlx 0.9.0, the driver under sea-orm 2.0.4, opens its TCP connections
//! without `TCP_NODELAY` (a regression of 0.9.0: transact-rs/sqlx issue #4335,
//! fixed by PR #4336 after 0.9.0 and not in a release yet). A message larger
//! than one TCP segment, such as a batch's upsert, then leaves its last,
//! partial segment waiting on Nagle's algorithm until the server acks the ones
//! before, which a server with delayed ACKs does after up to 40 ms: most of a
//! batch's time on this machine (docs/BENCHMARKS.md). Any remote Postgres
//! pays it too. sqlx gives no access to its socket, so this module stands
//! between: sqlx connects to a Unix socket of this process (no Nagle there) and
//! each of its connections is carried on to Postgres over a TCP connection
//! opened here, with `TCP_NODELAY`. The bytes pass unchanged, so TLS and
//! authentication are still between sqlx and Postgres.
//!
//! The socket lives in a directory of its own, readable by this user only
//! (0700), so that no other local user can reach Postgres through it from this
//! host's address. It is removed when the relay is dropped; a process killed
//! with `kill -9` leaves an empty directory and a dead socket in the temporary
//! directory.
//!
//! When to remove: once sea-orm depends on a sqlx release that sets
//! `TCP_NODELAY` again (the first after 0.9.0 with PR #4336), delete this
//! module and its use in `persistence::pool`.

use crate::timeouts::POSTGRES_CONNECT_TIMEOUT;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::copy_bidirectional_with_sizes;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

/// Bytes read at once on each side: a batch's statement in a few reads.
const BUFFER: usize = 64 * 1024;

/// A Unix socket that carries every connection made to it on to `host:port`
/// over TCP with `TCP_NODELAY`. Accepts until dropped; connections already
/// carried go on until one of their ends closes.
pub struct Relay {
    dir: PathBuf,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens in a new private directory, on the socket name sqlx derives
    /// from a socket directory and `port` (`.s.PGSQL.<port>`). Must be called
    /// inside a tokio runtime.
    pub fn start(host: &str, port: u16) -> io::Result<Relay> {
        let dir = private_dir()?;
        let listener = match UnixListener::bind(dir.join(format!(".s.PGSQL.{port}"))) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(error);
            }
        };
        // sqlx passes an IPv6 address in its URL form, `[::1]`.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let accept = tokio::spawn(accept_loop(listener, host, port).in_current_span());
        Ok(Relay { dir, accept })
    }

    /// The directory to give sqlx as its socket (`PgConnectOptions::socket`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

async fn accept_loop(listener: UnixListener, host: String, port: u16) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let host = host.clone();
                tokio::spawn(relay(client, host, port).in_current_span());
            }
            Err(error) => {
                // Out of file descriptors, say: the connection attempt fails
                // and sqlx tries again; do not spin.
                warn!(%error, "the Postgres relay cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Carries one connection to Postgres and back until either end closes it.
async fn relay(mut client: UnixStream, host: String, port: u16) {
    let mut server = match connect(&host, port).await {
        Ok(server) => server,
        Err(error) => {
            // sqlx only sees the connection closed: say here why.
            warn!(%error, host, port, "cannot connect to Postgres");
            return;
        }
    };
    if let Err(error) =
        copy_bidirectional_with_sizes(&mut client, &mut server, BUFFER, BUFFER).await
    {
        debug!(%error, "a relayed Postgres connection ended with an error");
    }
}

/// A TCP connection to Postgres with `TCP_NODELAY` set: what sqlx 0.9.0 omits.
pub async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let server = tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {POSTGRES_CONNECT_TIMEOUT:?}"),
            )
        })??;
    server.set_nodelay(true)?;
    Ok(server)
}

/// A new directory in the temporary directory that only this user can enter.
fn private_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let dir = std::env::temp_dir().join(format!(
            "products-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            // Left by an earlier process with the same pid, killed.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            result => return result.map(|()| dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn the_connection_to_postgres_has_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = connect("127.0.0.1", port).await.unwrap();
        assert!(stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_unchanged_and_the_socket_is_private() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let echo = tokio::spawn(async move {
            let (mut server, _) = listener.accept().await.unwrap();
            let mut received = vec![0; 200_000];
            server.read_exact(&mut received).await.unwrap();
            server.write_all(&received).await.unwrap();
        });
        let relay = Relay::start("127.0.0.1", port).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(relay.socket_dir()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);

        let socket = relay.socket_dir().join(format!(".s.PGSQL.{port}"));
        let mut client = UnixStream::connect(&socket).await.unwrap();
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        let mut back = vec![0; sent.len()];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(back, sent);
        echo.await.unwrap();

        let dir = relay.socket_dir().to_owned();
        drop(relay);
        assert!(!dir.exists(), "the relay's directory is removed with it");
    }
}
