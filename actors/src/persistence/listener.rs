//! Persistence's listener: one connection of its own that `LISTEN`s on
//! `products_changed` (sent at commit by a trigger on `products`, whoever
//! wrote: this replica, another, or a person with psql) and raises the
//! [`ChangeSignal`]. After every (re)connection it raises it too, since what
//! was committed while it was away was not heard.

use crate::backoff::Backoff;
use crate::changes::ChangeSignal;
use crate::secret::SecretUrl;
use sea_orm::sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, warn};

/// The channel the migration's trigger notifies.
const CHANNEL: &str = "products_changed";

/// Listens until the returned guard is dropped.
pub fn spawn(database_url: SecretUrl, signal: ChangeSignal) -> Listening {
    Listening(tokio::spawn(listen(database_url, signal).in_current_span()))
}

/// The listening task; dropping it stops the task (also when persistence
/// fails and its state is dropped without `post_stop`).
pub struct Listening(JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn listen(database_url: SecretUrl, signal: ChangeSignal) {
    let mut backoff = Backoff::default();
    loop {
        match connect(database_url.expose()).await {
            Ok(mut listener) => {
                backoff.reset();
                signal.notify();
                // `Ok(None)`: the connection was lost; connect again ourselves,
                // so that the signal above follows the new LISTEN.
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => signal.notify(),
                        Ok(None) => break,
                        Err(error) => {
                            debug!(%error, "the change listener stopped");
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                warn!(%error, "cannot listen for changes to the products; the cache catches up on its timer")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
