//! Search: the products whose name or manufacturer contains a text, kept off
//! the write path. The `pg_trgm` indexes are on `product_search`, not on
//! `products`, so that a batch's upsert does not update them: [`fill`] brings
//! `product_search` up to date behind the writes, and a search reads it for
//! what it holds and `products` itself for the rest, so that it is exact
//! however far behind the filling is (the migration that adds
//! `product_search` tells the tables).

use super::ReadError;
use super::history::WATERMARK;
use catalogue::filter::Filter;
use catalogue::product::Product;
use entity::products;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, EntityTrait, Statement, TransactionTrait,
};
use std::time::Duration;

/// How often each replica tries to fill `product_search`; one at a time
/// does (the others find its row locked, and skip).
pub const FILL_EVERY: Duration = Duration::from_millis(250);

/// Brings `product_search` up to the watermark (every transaction below it
/// has ended): the changes since it was last filled, deletions too. Returns
/// how many of its rows changed, or `None` when another replica is filling.
///
/// Idempotent: a change filled twice (by a run that failed after its
/// writes, or from the migration's start) writes the same row again.
pub async fn fill(db: &DatabaseConnection) -> Result<Option<u64>, ReadError> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    // Ranges of the `(changed_by, id)` index, never the whole table (see
    // `feed::changes_since`).
    txn.execute_unprepared("SELECT set_config('enable_seqscan', 'off', true)")
        .await?;
    let sql = format!(
        "WITH filled AS ( \
             SELECT through FROM product_search_filled FOR UPDATE SKIP LOCKED), \
         mark AS (SELECT {WATERMARK}::xid8 AS below), \
         changed AS ( \
             SELECT p.id, p.name, p.manufacturer, p.deleted FROM products p, filled, mark \
             WHERE p.changed_by >= filled.through AND p.changed_by < mark.below), \
         written AS ( \
             INSERT INTO product_search (id, name, manufacturer) \
             SELECT id, name, manufacturer FROM changed WHERE NOT deleted \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, manufacturer = excluded.manufacturer \
             WHERE (product_search.name, product_search.manufacturer) \
                   IS DISTINCT FROM (excluded.name, excluded.manufacturer) \
             RETURNING 1), \
         deleted AS ( \
             DELETE FROM product_search s USING changed c WHERE s.id = c.id AND c.deleted \
             RETURNING 1), \
         gone AS ( \
             DELETE FROM product_search s USING product_tombstones t, filled, mark \
             WHERE t.id = s.id AND t.changed_by >= filled.through AND t.changed_by < mark.below \
               AND NOT EXISTS (SELECT 1 FROM products p WHERE p.id = s.id) \
             RETURNING 1), \
         truncated AS ( \
             DELETE FROM product_search s \
             WHERE EXISTS (SELECT 1 FROM product_tombstones t, filled, mark \
                           WHERE t.id IS NULL AND t.changed_by >= filled.through \
                             AND t.changed_by < mark.below) \
               AND NOT EXISTS (SELECT 1 FROM products p WHERE p.id = s.id) \
             RETURNING 1), \
         moved AS ( \
             UPDATE product_search_filled f SET through = mark.below FROM mark \
             WHERE f.only_row AND EXISTS (SELECT 1 FROM filled) AND mark.below > f.through \
             RETURNING 1) \
         SELECT (SELECT count(*) FROM filled) AS locked, \
                (SELECT count(*) FROM written) + (SELECT count(*) FROM deleted) \
                + (SELECT count(*) FROM gone) + (SELECT count(*) FROM truncated) AS changed, \
                (SELECT count(*) FROM moved) AS moved"
    );
    let row = txn
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("the filling's counts".into()))?;
    txn.commit().await?;
    if row.try_get::<i64>("", "locked")? == 0 {
        return Ok(None);
    }
    Ok(Some(
        u64::try_from(row.try_get::<i64>("", "changed")?).unwrap_or(0),
    ))
}

/// Up to `limit` products after the id `after`, in id order, that `filter`
/// asks for: a name or manufacturer that contains its text, in any case,
/// its manufacturer in any case, its price range. Only the conditions asked
/// for are in the statement (one text for each mix, prepared once), so that
/// the planner sees what it can use.
///
/// A text is looked for in `product_search` (its trigram indexes) for the
/// products unchanged since it was filled, and in `products` for those
/// changed since (a range of the `(changed_by, id)` index): both in id
/// order, merged.
pub async fn search(
    db: &DatabaseConnection,
    filter: &Filter,
    after: i64,
    limit: u64,
) -> Result<Vec<Product>, ReadError> {
    let mut conditions = String::new();
    let mut values: Vec<sea_orm::Value> = vec![after.into()];
    let mut bind = |clause: &str, value: sea_orm::Value| {
        values.push(value);
        conditions.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    let pattern = filter
        .text
        .as_ref()
        .map(|text| format!("%{}%", like_escaped(&text.to_lowercase())));
    if let Some(pattern) = &pattern {
        bind(
            " AND (lower(p.name) LIKE ? OR lower(p.manufacturer) LIKE ?)",
            pattern.clone().into(),
        );
    }
    if let Some(manufacturer) = &filter.manufacturer {
        bind(
            " AND lower(p.manufacturer) = ?",
            manufacturer.to_lowercase().into(),
        );
    }
    if let Some(min) = filter.min_price {
        bind(" AND p.price >= ?", min.into());
    }
    if let Some(max) = filter.max_price {
        bind(" AND p.price <= ?", max.into());
    }
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let limit = format!("${}", values.len());
    let sql = if pattern.is_some() {
        // `$2` is the pattern.
        format!(
            "SELECT p.* FROM product_search s JOIN products p ON p.id = s.id \
             WHERE s.id > $1 AND (lower(s.name) LIKE $2 OR lower(s.manufacturer) LIKE $2) \
               AND p.changed_by < (SELECT through FROM product_search_filled){conditions} \
             UNION ALL \
             SELECT p.* FROM products p \
             WHERE p.changed_by >= (SELECT through FROM product_search_filled) \
               AND p.id > $1 AND NOT p.deleted{conditions} \
             ORDER BY id LIMIT {limit}"
        )
    } else {
        format!(
            "SELECT p.* FROM products p WHERE NOT p.deleted AND p.id > $1{conditions} \
             ORDER BY p.id LIMIT {limit}"
        )
    };
    let statement = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    let rows = if pattern.is_some() {
        // The products changed since the filling: a range of the
        // `(changed_by, id)` index, however stale the statistics.
        let txn = db
            .begin_with_config(None, Some(AccessMode::ReadOnly))
            .await?;
        txn.execute_unprepared("SELECT set_config('enable_seqscan', 'off', true)")
            .await?;
        let rows = products::Entity::find()
            .from_raw_sql(statement)
            .all(&txn)
            .await?;
        txn.commit().await?;
        rows
    } else {
        products::Entity::find()
            .from_raw_sql(statement)
            .all(db)
            .await?
    };
    Ok(rows.into_iter().map(super::reads::product).collect())
}

/// `text` matched literally by `LIKE` (whose escape character is `\`).
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
