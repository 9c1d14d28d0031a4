//! The change stream's reads (see `catalogue::history` for positions, and
//! the migration that adds the history for the horizon): the history after a
//! position, the snapshot a client starts from, and the pruning of old
//! tombstones.
//!
//! A change's position is `(changed_by, id)`: the writing transaction's id
//! and the product's. Only changes of transactions below the watermark
//! ([`WATERMARK`]) are served: every transaction of this database below it
//! has ended, so nothing can be committed later at a position already served.
//! A transaction of this database left open (a `psql` session in `BEGIN`,
//! say) holds the watermark, and so the stream, until it ends.

use super::ReadError;
use super::reads::product;
use catalogue::history::{Change, Event, HistoryPage, Position};
use catalogue::product::Product;
use entity::products;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, IsolationLevel,
    QueryResult, Statement, TransactionTrait,
};
use std::sync::Arc;
use std::time::Duration;

/// The watermark, as text: the oldest transaction of the read's snapshot
/// still in progress (its `xip`), or the snapshot's `xmax` when there is none,
/// leaving out transactions that `pg_stat_activity` shows in another
/// database (they cannot write here: a long one elsewhere on the server does
/// not hold this stream). One whose database it cannot see (another role's
/// session, unless the role has `pg_read_all_stats`) counts, to be safe; one
/// that ended since the snapshot counts for this read.
const WATERMARK: &str = "coalesce( \
     (SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
      WHERE NOT EXISTS ( \
          SELECT 1 FROM pg_stat_activity a \
          WHERE a.backend_xid IS NOT NULL \
            AND a.datname IS DISTINCT FROM current_database() \
            AND a.backend_xid::text = (x::text::numeric % 4294967296)::text) \
      ORDER BY x LIMIT 1), \
     pg_snapshot_xmax(pg_current_snapshot()))::text";

/// A read of the history.
#[derive(Debug, Clone, PartialEq)]
pub enum History {
    /// The changes after the position asked for.
    Page(HistoryPage),
    /// The history after that position was pruned in part: the client
    /// starts again from a snapshot. `horizon` is the newest pruned change.
    Gone { horizon: Position },
}

/// Up to `limit` changes after `after`, in position order, each product's
/// latest; a deletion whose product was written again since is left out
/// (the write, later, says what the product is).
pub async fn changes_after(
    db: &DatabaseConnection,
    after: Position,
    limit: u64,
) -> Result<History, ReadError> {
    // One snapshot for the horizon, the watermark and both tables, so that a
    // pruning in between cannot hide a deletion from a client told it may go on.
    let txn = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let backend = txn.get_database_backend();
    let bounds = txn
        .query_one_raw(Statement::from_string(
            backend,
            format!(
                "SELECT {WATERMARK} AS below, horizon_xid::text AS horizon_xid, horizon_slot \
                 FROM product_history"
            ),
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("product_history".into()))?;
    let horizon = Position {
        xid: xid(&bounds, "horizon_xid")?,
        slot: bounds.try_get("", "horizon_slot")?,
    };
    if after < horizon {
        txn.commit().await?;
        return Ok(History::Gone { horizon });
    }
    let below = xid(&bounds, "below")?;
    let take = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let values = || {
        [
            after.xid.to_string().into(),
            after.slot.into(),
            below.to_string().into(),
            take.into(),
        ]
    };
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT *, changed_by::text AS xid FROM products \
             WHERE (changed_by, id) > ($1::text::xid8, $2) AND changed_by < $3::text::xid8 \
             ORDER BY changed_by, id LIMIT $4",
            values(),
        ))
        .await?;
    let tombstones = txn
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT changed_by::text AS xid, id FROM product_tombstones t \
             WHERE (changed_by > $1::text::xid8 \
                    OR (changed_by = $1::text::xid8 AND coalesce(id, 0) > $2)) \
               AND changed_by < $3::text::xid8 \
               AND (id IS NULL OR NOT EXISTS (SELECT 1 FROM products p WHERE p.id = t.id)) \
             ORDER BY changed_by, id NULLS FIRST LIMIT $4",
            values(),
        ))
        .await?;
    txn.commit().await?;

    let mut events = Vec::with_capacity(rows.len() + tombstones.len());
    for row in rows {
        let position = Position {
            xid: xid(&row, "xid")?,
            slot: row.try_get("", "id")?,
        };
        let model = products::Model::from_query_result(&row, "")?;
        let change = match model.deleted {
            true => Change::Delete { id: model.id },
            false => Change::Upsert(Arc::new(product(model))),
        };
        events.push(Event { position, change });
    }
    for row in tombstones {
        let id: Option<i64> = row.try_get("", "id")?;
        events.push(Event {
            position: Position {
                xid: xid(&row, "xid")?,
                slot: id.unwrap_or(0),
            },
            change: id.map_or(Change::Clear, |id| Change::Delete { id }),
        });
    }
    events.sort_by_key(|event| event.position);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let complete = events.len() <= limit;
    events.truncate(limit);
    let through = match complete {
        true => Some(Position::end_of(below.saturating_sub(1))),
        false => events.last().map(|event| event.position),
    };
    Ok(History::Page(HistoryPage {
        events,
        through,
        complete,
    }))
}

/// The watermark now: every change at or before it may be served.
pub async fn served_through(db: &DatabaseConnection) -> Result<Position, ReadError> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {WATERMARK} AS below"),
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("pg_current_snapshot()".into()))?;
    Ok(Position::end_of(xid(&row, "below")?.saturating_sub(1)))
}

/// A page of the snapshot at `through` (from [`served_through`]): up to
/// `limit` products after the id `after`, in id order, whose latest change is
/// at or before `through`. Pages are read apart, so a product changed while
/// a client reads them is left out of the later pages: the changes after
/// `through` bring it, so the snapshot and those changes make the catalogue.
pub async fn snapshot_page(
    db: &DatabaseConnection,
    through: Position,
    after: i64,
    limit: u64,
) -> Result<Vec<Product>, ReadError> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT * FROM products \
             WHERE id > $1 AND NOT deleted AND changed_by <= $2::text::xid8 \
             ORDER BY id LIMIT $3",
            [
                after.into(),
                through.xid.to_string().into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|row| Ok(product(products::Model::from_query_result(row, "")?)))
        .collect()
}

/// Deletes the tombstones older than `retention` and moves the horizon to
/// the newest of them; answers how many. Safe on every replica at once.
pub async fn prune(db: &DatabaseConnection, retention: Duration) -> Result<u64, ReadError> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "WITH pruned AS ( \
                 DELETE FROM product_tombstones \
                 WHERE deleted_at < now() - make_interval(secs => $1) \
                 RETURNING changed_by, coalesce(id, 0) AS slot), \
             newest AS ( \
                 SELECT changed_by, slot FROM pruned ORDER BY changed_by DESC, slot DESC LIMIT 1), \
             moved AS ( \
                 UPDATE product_history h \
                 SET horizon_xid = newest.changed_by, horizon_slot = newest.slot \
                 FROM newest \
                 WHERE (newest.changed_by, newest.slot) > (h.horizon_xid, h.horizon_slot) \
                 RETURNING 1) \
             SELECT (SELECT count(*) FROM pruned) AS pruned, (SELECT count(*) FROM moved) AS moved",
            [retention.as_secs_f64().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("prune".into()))?;
    let pruned: i64 = row.try_get("", "pruned")?;
    Ok(u64::try_from(pruned).unwrap_or(0))
}

/// A transaction id read as text (`xid8` has no binary form SeaORM reads).
fn xid(row: &QueryResult, column: &str) -> Result<u64, ReadError> {
    let text: String = row.try_get("", column)?;
    text.parse()
        .map_err(|_| DbErr::Type(format!("{column} is not a transaction id: {text}")).into())
}
