//! The change feed's read: what changed since a Postgres snapshot (see
//! `catalogue::feed` for the answer's shape, and the migration that adds
//! revisions for the columns it reads).

use super::ReadError;
use super::reads::product;
use catalogue::feed::{Changes, Deleted, TooMany};
use entity::products;
use sea_orm::prelude::DateTimeWithTimeZone;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    IsolationLevel, Statement, TransactionTrait,
};

/// Every change committed since the snapshot `since` (what Postgres's
/// `pg_current_snapshot()` said at the reader's last read), and the snapshot
/// to ask from next time. Exact: a row written by a transaction that `since`
/// did not see is in the answer, whatever order transactions committed in.
/// With no `since`, only the snapshot (a starting point).
///
/// What `since` did not see is what transactions in progress then (its
/// `xip` list) and transactions begun after it (from its `xmax`) wrote:
/// point lookups and one range of the `changed_by` index, so that the read
/// grows with what was written since, never with how long some transaction
/// has been held open (which pins the snapshot's `xmin`, not its `xmax`).
/// Past `max_rows` changed rows, only the blocks they are in are answered.
pub async fn changes_since(
    db: &DatabaseConnection,
    since: Option<&str>,
    max_rows: u64,
    blocks: bool,
) -> Result<Changes, ReadError> {
    // One snapshot for every read, so that the next `since` is exact.
    let txn = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let backend = txn.get_database_backend();
    // `pruned`: a tombstone `since` may not have seen was pruned (the change
    // stream's retention, `history::prune`): the reader cannot know which
    // products it deleted, and reads everything again, as after a TRUNCATE.
    //
    // No sequential scan, for this transaction: the reads below are two
    // ranges of the `(changed_by, id)` index (the `xip` list, and from
    // `xmax` on). Without statistics fresh enough to know how few rows they
    // select (a table filled faster than autovacuum analyzes it, or a
    // generic plan, which Postgres switches a prepared statement to after
    // five runs), the planner reads the whole table instead, on every
    // catch-up of every replica.
    let read = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "SELECT pg_current_snapshot()::text AS snapshot, clock_timestamp() AS read_at, \
                    coalesce((SELECT horizon_xid >= pg_snapshot_xmin($1::pg_snapshot) \
                              FROM product_history), false) AS pruned, \
                    set_config('enable_seqscan', 'off', true) AS enable_seqscan",
            [since.map(str::to_owned).into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("pg_current_snapshot()".into()))?;
    let read_at: DateTimeWithTimeZone = read.try_get("", "read_at")?;
    let mut changes = Changes {
        snapshot: read.try_get("", "snapshot")?,
        ..Changes::default()
    };
    let Some(since) = since else {
        txn.commit().await?;
        return Ok(changes);
    };
    if read.try_get::<bool>("", "pruned")? {
        changes.deleted.push(Deleted {
            id: None,
            revision: 0,
        });
        txn.commit().await?;
        return Ok(changes);
    }
    const UNSEEN: &str = "(changed_by = ANY (ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot))) \
          OR changed_by >= pg_snapshot_xmax($1::pg_snapshot))";
    let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let rows = products::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            format!("SELECT * FROM products WHERE {UNSEEN} LIMIT $2"),
            [since.into(), limit.saturating_add(1).into()],
        ))
        .all(&txn)
        .await?;
    let tombstones = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT id, revision, deleted_at FROM product_tombstones WHERE {UNSEEN} LIMIT $2"
            ),
            [since.into(), limit.saturating_add(1).into()],
        ))
        .await?;
    if (rows.len() + tombstones.len()) as u64 > max_rows {
        // A TRUNCATE among them (looked for apart: the rows read are only
        // the first ones) changed every block.
        let truncated = txn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT revision FROM product_tombstones WHERE id IS NULL AND {UNSEEN} LIMIT 1"
                ),
                [since.into()],
            ))
            .await?;
        if let Some(row) = truncated {
            changes.deleted.push(Deleted {
                id: None,
                revision: row.try_get("", "revision")?,
            });
        } else if blocks {
            changes.too_many = Some(too_many(&txn, since).await?);
        } else {
            changes.too_many = Some(TooMany::default());
        }
        txn.commit().await?;
        return Ok(changes);
    }
    // The newest change's time (Postgres's clock, as `read_at`).
    let mut newest: Option<DateTimeWithTimeZone> = None;
    for row in rows {
        newest = Ord::max(newest, Some(row.updated_at));
        if row.deleted {
            changes.deleted.push(Deleted {
                id: Some(row.id),
                revision: row.revision,
            });
        } else {
            changes.products.push(product(row));
        }
    }
    for row in tombstones {
        let deleted_at: DateTimeWithTimeZone = row.try_get("", "deleted_at")?;
        newest = Ord::max(newest, Some(deleted_at));
        changes.deleted.push(Deleted {
            id: row.try_get("", "id")?,
            revision: row.try_get("", "revision")?,
        });
    }
    txn.commit().await?;
    changes.age = newest.map(|at| (read_at - at).to_std().unwrap_or_default());
    Ok(changes)
}

/// The blocks that changed since `since`, and how many rows did.
async fn too_many(txn: &DatabaseTransaction, since: &str) -> Result<TooMany, ReadError> {
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "WITH unseen AS ( \
                 SELECT id FROM products \
                 WHERE changed_by = ANY (ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot))) \
                    OR changed_by >= pg_snapshot_xmax($1::pg_snapshot) \
                 UNION ALL \
                 SELECT id FROM product_tombstones \
                 WHERE id IS NOT NULL \
                   AND (changed_by = ANY (ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot))) \
                    OR changed_by >= pg_snapshot_xmax($1::pg_snapshot))) \
             SELECT id >> 6 AS block, count(*) AS rows FROM unseen GROUP BY 1 ORDER BY 1",
            [since.into()],
        ))
        .await?;
    let mut found = TooMany::default();
    for row in rows {
        found.blocks.push(row.try_get("", "block")?);
        found.rows += u64::try_from(row.try_get::<i64>("", "rows")?).unwrap_or(0);
    }
    Ok(found)
}
