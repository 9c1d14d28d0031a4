//! Start-up work on Postgres: create the database if it is missing, then apply
//! the migrations. The running service talks to Postgres only through the
//! persistence actor.

use actors::persistence::sqlstate;
use actors::secret::SecretUrl;
use anyhow::{Context, bail};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use std::time::Duration;
use tokio::time::{Instant, sleep};
use tracing::{info, warn};
use url::Url;

/// The advisory lock that serializes migrations across replicas (any fixed
/// number no other code of this database uses).
const MIGRATION_LOCK: i64 = 0x7072_6f64_7563_7473; // "products"

/// How long start-up waits for Postgres to accept connections.
const WAIT_FOR_POSTGRES: Duration = Duration::from_secs(30);

/// Creates the database named in `database_url` if it is missing, and applies
/// the migrations. Waits up to 30 s for Postgres to come up.
pub async fn prepare(database_url: &SecretUrl) -> anyhow::Result<()> {
    let (admin_url, name) = admin_url(database_url)?;
    let deadline = Instant::now() + WAIT_FOR_POSTGRES;
    let admin = loop {
        match connect(&admin_url).await {
            Ok(db) => break db,
            Err(e) if Instant::now() < deadline => {
                warn!(error = %e, "waiting for Postgres");
                sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("cannot connect to Postgres"),
        }
    };
    create_database_if_missing(&admin, &name).await?;
    admin.close().await?;

    let db = connect(database_url.expose())
        .await
        .with_context(|| format!("cannot connect to the database {name}"))?;
    // Replicas starting together migrate one at a time: the others wait on
    // this lock, then find nothing left to apply. (The pool has one
    // connection, so the lock and the migrations share a session.)
    db.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await
        .context("cannot take the migration lock")?;
    Migrator::up(&db, None)
        .await
        .context("cannot apply the migrations")?;
    db.execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await?;
    db.close().await?;
    info!(database = %name, "database ready");
    Ok(())
}

/// Drops the database named in `database_url`, closing its connections first.
pub async fn drop_database(database_url: &SecretUrl) -> anyhow::Result<()> {
    let (admin_url, name) = admin_url(database_url)?;
    let admin = connect(&admin_url).await?;
    admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ))
        .await?;
    admin.close().await?;
    Ok(())
}

async fn create_database_if_missing(admin: &DatabaseConnection, name: &str) -> anyhow::Result<()> {
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    match admin
        .execute_unprepared(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
    {
        Ok(_) => {
            info!(database = %name, "database created");
            Ok(())
        }
        // Another instance created it in the meantime: 42P04 once it has
        // committed, 23505 (on pg_database's unique name) while it commits.
        Err(e) if matches!(sqlstate(&e).as_deref(), Some("42P04" | "23505")) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the database {name}")),
    }
}

async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// The same server's `postgres` database (with the credentials: never log
/// it), and the name of the one in `url`.
fn admin_url(database_url: &SecretUrl) -> anyhow::Result<(String, String)> {
    let mut url = Url::parse(database_url.expose()).context("DATABASE_URL is not a valid URL")?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        bail!("DATABASE_URL names no database (expected e.g. postgres://host/products)");
    }
    url.set_path("/postgres");
    Ok((url.to_string(), name))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
