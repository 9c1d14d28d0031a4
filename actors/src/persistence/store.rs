//! The SeaORM queries and mutations, kept apart from the actors that call them.

use super::StoreError;
use catalogue::batch::{Batch, Incoming, KEPT_PAYLOAD_BYTES, Outcome, Rejection, Stored};
use catalogue::feed::{Changes, Deleted, TooMany, Version};
use catalogue::product::{Product, ProductUpdate};
use entity::products;
use sea_orm::prelude::DateTimeWithTimeZone;
use sea_orm::sea_query::ArrayType;
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
    Value,
};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tracing::warn;

/// Stores one batch in one transaction: the valid messages as products, the
/// invalid ones in `rejected_messages`. Returns what became of each message and
/// the current version of every product the batch names, changed or not (a
/// redelivery after a commit whose reply was lost still refreshes the cache).
///
/// Idempotent: a message is applied to a product only if it is newer (stream
/// and sequence) than the one last applied, and an id-less message creates at
/// most one product (its `stream#seq` is unique), so a redelivered batch
/// changes nothing.
///
/// If Postgres refuses the products for their data (not for being
/// unreachable), each message is tried on its own (a savepoint each): one
/// whose data Postgres cannot hold is set aside, one that breaks a rule of the
/// database (a constraint the contract does not know) is left to be
/// redelivered (set aside too on its last delivery), and the others are
/// stored.
pub async fn store_batch(db: &DatabaseConnection, batch: &Batch) -> Result<Stored, StoreError> {
    let mut outcomes: Vec<Outcome> = batch
        .messages
        .iter()
        .map(|message| match &message.decoded {
            Ok(_) => Outcome::Stored,
            Err(reason) => Outcome::SetAside(Rejection::Invalid(reason.clone())),
        })
        .collect();
    let valid: Vec<&Incoming> = batch
        .messages
        .iter()
        .filter(|message| message.decoded.is_ok())
        .collect();

    let txn = db.begin().await?;
    let current = match write_products(&txn, &batch.stream, &valid).await {
        Ok(current) => current,
        Err(error) if error.is_refusal() => {
            warn!(%error, messages = valid.len(), "Postgres refused a batch; trying its messages one by one");
            one_by_one(&txn, batch, &mut outcomes).await?
        }
        Err(error) => return Err(error),
    };
    set_aside(&txn, batch, &outcomes).await?;
    txn.commit().await?;
    Ok(Stored { current, outcomes })
}

/// Writes each valid message in a savepoint of its own, and records in
/// `outcomes` those Postgres refused.
async fn one_by_one(
    txn: &DatabaseTransaction,
    batch: &Batch,
    outcomes: &mut [Outcome],
) -> Result<Vec<Product>, StoreError> {
    let mut current = Vec::new();
    let mut refusals = Vec::new();
    let mut tried = 0;
    for (message, outcome) in batch.messages.iter().zip(outcomes.iter_mut()) {
        if message.decoded.is_err() {
            continue;
        }
        tried += 1;
        match write_products(txn, &batch.stream, &[message]).await {
            Ok(stored) => current.extend(stored),
            Err(error) if error.is_refusal() => {
                // A unique key taken meanwhile is never final: the next try
                // takes another (an id assigned by two replicas at once).
                let last = message.last_delivery && !error.is_unique_violation();
                *outcome = if error.is_data_exception() || last {
                    Outcome::SetAside(Rejection::RefusedByPostgres(error.to_string()))
                } else {
                    Outcome::Retry {
                        reason: error.to_string(),
                    }
                };
                if !last {
                    refusals.push(error);
                }
            }
            Err(error) => return Err(error),
        }
    }
    if tried > 1 && refusals.len() == tried {
        // Every message refused, none on its last delivery: the database is
        // at fault (a schema change, say), not the messages. Keep them all
        // for a retry.
        return Err(refusals.swap_remove(0));
    }
    Ok(current)
}

/// Applies the products of `messages` in a savepoint, so that a refusal rolls
/// back only this write. Returns the current version of each product named.
async fn write_products(
    txn: &DatabaseTransaction,
    stream: &str,
    messages: &[&Incoming],
) -> Result<Vec<Product>, StoreError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let (by_id, id_less) = newest_per_id(messages);
    let ids: Vec<i64> = by_id.keys().copied().collect();
    let created_by: Vec<String> = id_less
        .iter()
        .map(|sequenced| creation_key(stream, sequenced.seq))
        .collect();

    let savepoint = txn.begin().await?;
    let mut current = upsert_by_id(&savepoint, stream, by_id).await?;
    current.extend(insert_new(&savepoint, stream, id_less).await?);
    current.extend(read_unchanged(&savepoint, &current, ids, created_by).await?);
    savepoint.commit().await?;
    // A deletion reaches the cache through the change feed, as a deletion.
    Ok(current
        .into_iter()
        .filter(|row| !row.deleted)
        .map(product)
        .collect())
}

/// An update with the stream sequence of its message, and the operator who
/// sent it from a form (if one did).
#[derive(Clone, Copy)]
struct Sequenced<'a> {
    seq: u64,
    update: &'a ProductUpdate,
    operator: Option<&'a str>,
}

/// One update per id, the newest message winning: a statement may not touch a
/// row twice. Newest by stream sequence, not by place in the batch: a
/// redelivered message can come after a newer one. Id-less messages come
/// apart, each with its sequence.
fn newest_per_id<'a>(
    messages: &[&'a Incoming],
) -> (BTreeMap<i64, Sequenced<'a>>, Vec<Sequenced<'a>>) {
    let mut by_id: BTreeMap<i64, Sequenced<'a>> = BTreeMap::new();
    let mut id_less = Vec::new();
    for message in messages {
        let Ok(update) = &message.decoded else {
            continue;
        };
        let seq = message.stream_seq;
        let sequenced = Sequenced {
            seq,
            update,
            operator: message.operator.as_deref(),
        };
        match update.id() {
            Some(id) => match by_id.entry(id) {
                Entry::Occupied(mut kept) => {
                    if seq > kept.get().seq {
                        kept.insert(sequenced);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(sequenced);
                }
            },
            None => id_less.push(sequenced),
        }
    }
    (by_id, id_less)
}

/// Creates or replaces the products by id, where the message is newer than the
/// one last applied. Returns the rows it wrote.
///
/// The rows go as one array per column (`UNNEST`), so that the statement's
/// text is the same whatever the batch's size and each connection prepares it
/// once; a `VALUES` list would be a new statement for every size.
async fn upsert_by_id(
    txn: &DatabaseTransaction,
    stream: &str,
    by_id: BTreeMap<i64, Sequenced<'_>>,
) -> Result<Vec<products::Model>, StoreError> {
    if by_id.is_empty() {
        return Ok(Vec::new());
    }
    let ids = by_id.keys().copied();
    let columns = Columns::of(by_id.values().copied());
    let sql = "INSERT INTO products \
             (id, name, price, manufacturer, description, attributes, stream, stream_seq, deleted, \
              operator) \
         SELECT u.id, u.name, u.price, u.manufacturer, \
                CASE WHEN u.has_description THEN u.description END, u.attributes, $1, u.stream_seq, \
                u.deleted, CASE WHEN u.has_operator THEN u.operator END \
         FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
                     $7::bool[], $8::jsonb[], $9::bigint[], $10::bool[], $11::text[], $12::bool[]) \
              AS u(id, name, price, manufacturer, description, has_description, attributes, stream_seq, \
                   deleted, operator, has_operator) \
         ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, price = excluded.price, manufacturer = excluded.manufacturer, \
             description = excluded.description, attributes = excluded.attributes, \
             stream = excluded.stream, stream_seq = excluded.stream_seq, \
             updated_at = excluded.updated_at, deleted = excluded.deleted, \
             operator = excluded.operator \
         WHERE products.stream <> excluded.stream OR products.stream_seq < excluded.stream_seq \
         RETURNING *";
    let mut values = vec![stream.into(), array(ArrayType::BigInt, ids)];
    values.extend(columns.into_values());
    rows(txn, sql, values).await
}

/// The columns of a product's update, one array each, in the order of
/// `$2`... of the statements that take them after their own first arrays.
struct Columns {
    name: Vec<String>,
    price: Vec<i64>,
    manufacturer: Vec<String>,
    /// A text array cannot carry a NULL here (sea-query binds `Vec<String>`):
    /// an absent description is an empty string with `has_description` false.
    description: Vec<String>,
    has_description: Vec<bool>,
    attributes: Vec<serde_json::Value>,
    stream_seq: Vec<i64>,
    /// A deletion (`{"id": N, "deleted": true}`): kept as a deleted row.
    deleted: Vec<bool>,
    /// Who sent it from a form; as `description`, `has_operator` says if any.
    operator: Vec<String>,
    has_operator: Vec<bool>,
}

impl Columns {
    fn of<'a>(updates: impl Iterator<Item = Sequenced<'a>>) -> Columns {
        let mut columns = Columns {
            name: Vec::new(),
            price: Vec::new(),
            manufacturer: Vec::new(),
            description: Vec::new(),
            has_description: Vec::new(),
            attributes: Vec::new(),
            stream_seq: Vec::new(),
            deleted: Vec::new(),
            operator: Vec::new(),
            has_operator: Vec::new(),
        };
        for Sequenced {
            seq,
            update,
            operator,
        } in updates
        {
            columns
                .operator
                .push(operator.unwrap_or_default().to_owned());
            columns.has_operator.push(operator.is_some());
            columns.stream_seq.push(seq_to_i64(seq));
            match update {
                ProductUpdate::Upsert(upsert) => {
                    columns.name.push(upsert.name.clone());
                    columns.price.push(upsert.price);
                    columns.manufacturer.push(upsert.manufacturer.clone());
                    columns
                        .description
                        .push(upsert.description.clone().unwrap_or_default());
                    columns.has_description.push(upsert.description.is_some());
                    columns
                        .attributes
                        .push(serde_json::Value::Object(upsert.attributes.clone()));
                    columns.deleted.push(false);
                }
                // A deletion is kept as a deleted row, its fields blank.
                ProductUpdate::Delete { .. } => {
                    columns.name.push(String::new());
                    columns.price.push(0);
                    columns.manufacturer.push(String::new());
                    columns.description.push(String::new());
                    columns.has_description.push(false);
                    columns
                        .attributes
                        .push(serde_json::Value::Object(serde_json::Map::new()));
                    columns.deleted.push(true);
                }
            }
        }
        columns
    }

    fn into_values(self) -> [Value; 10] {
        [
            array(ArrayType::String, self.name),
            array(ArrayType::BigInt, self.price),
            array(ArrayType::String, self.manufacturer),
            array(ArrayType::String, self.description),
            array(ArrayType::Bool, self.has_description),
            array(ArrayType::Json, self.attributes),
            array(ArrayType::BigInt, self.stream_seq),
            array(ArrayType::Bool, self.deleted),
            array(ArrayType::String, self.operator),
            array(ArrayType::Bool, self.has_operator),
        ]
    }
}

/// A Postgres array parameter.
fn array<T: Into<Value>>(kind: ArrayType, items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(
        kind,
        Some(Box::new(items.into_iter().map(Into::into).collect())),
    )
}

/// Runs a statement that returns product rows.
async fn rows(
    txn: &DatabaseTransaction,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<products::Model>, StoreError> {
    Ok(products::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            txn.get_database_backend(),
            sql,
            values,
        ))
        .all(txn)
        .await?)
}

/// Creates the id-less products, each once: a redelivered message finds its
/// `created_by` key taken and writes nothing. Ids are given in stream order,
/// by the column's default (`next_product_id()`: the sequence's next id, or
/// the first free one after it, never past 2^53).
async fn insert_new(
    txn: &DatabaseTransaction,
    stream: &str,
    id_less: Vec<Sequenced<'_>>,
) -> Result<Vec<products::Model>, StoreError> {
    if id_less.is_empty() {
        return Ok(Vec::new());
    }
    let keys = id_less
        .iter()
        .map(|sequenced| creation_key(stream, sequenced.seq));
    let keys = array(ArrayType::String, keys);
    let columns = Columns::of(id_less.iter().copied());
    let sql = "INSERT INTO products \
             (name, price, manufacturer, description, attributes, stream, stream_seq, created_by, \
              operator) \
         SELECT u.name, u.price, u.manufacturer, \
                CASE WHEN u.has_description THEN u.description END, u.attributes, $1, \
                u.stream_seq, u.created_by, CASE WHEN u.has_operator THEN u.operator END \
         FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], \
                     $7::bool[], $8::jsonb[], $9::bigint[], $10::bool[], $11::text[], $12::bool[]) \
                     WITH ORDINALITY \
              AS u(created_by, name, price, manufacturer, description, has_description, \
                   attributes, stream_seq, deleted, operator, has_operator, n) \
         ORDER BY u.n \
         ON CONFLICT (created_by) DO NOTHING \
         RETURNING *";
    let mut values = vec![stream.into(), keys];
    values.extend(columns.into_values());
    rows(txn, sql, values).await
}

/// Reads the rows the statements before left alone (older or redelivered
/// messages) as they stand; usually there are none, and no query is made.
async fn read_unchanged(
    txn: &DatabaseTransaction,
    written: &[products::Model],
    ids: Vec<i64>,
    created_by: Vec<String>,
) -> Result<Vec<products::Model>, StoreError> {
    let written_ids: HashSet<i64> = written.iter().map(|row| row.id).collect();
    let written_keys: HashSet<&str> = written
        .iter()
        .filter_map(|row| row.created_by.as_deref())
        .collect();
    let ids: Vec<i64> = ids
        .into_iter()
        .filter(|id| !written_ids.contains(id))
        .collect();
    let keys: Vec<String> = created_by
        .into_iter()
        .filter(|key| !written_keys.contains(key.as_str()))
        .collect();
    if ids.is_empty() && keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = "SELECT * FROM products WHERE id = ANY($1::bigint[]) OR created_by = ANY($2::text[])";
    let values = vec![
        array(ArrayType::BigInt, ids),
        array(ArrayType::String, keys),
    ];
    rows(txn, sql, values).await
}

/// Keeps the messages set aside in `rejected_messages`, once each.
async fn set_aside(
    txn: &DatabaseTransaction,
    batch: &Batch,
    outcomes: &[Outcome],
) -> Result<(), StoreError> {
    let (mut seq, mut subject, mut payload, mut payload_len, mut reason) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (message, outcome) in batch.messages.iter().zip(outcomes) {
        let Outcome::SetAside(rejection) = outcome else {
            continue;
        };
        seq.push(seq_to_i64(message.stream_seq));
        subject.push(message.subject.clone());
        payload.push(message.payload[..message.payload.len().min(KEPT_PAYLOAD_BYTES)].to_vec());
        payload_len.push(message.payload.len() as i64);
        reason.push(rejection.to_string());
    }
    if seq.is_empty() {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        "INSERT INTO rejected_messages (stream, stream_seq, subject, payload, payload_len, reason) \
         SELECT $1, u.stream_seq, u.subject, u.payload, u.payload_len, u.reason \
         FROM UNNEST($2::bigint[], $3::text[], $4::bytea[], $5::bigint[], $6::text[]) \
              AS u(stream_seq, subject, payload, payload_len, reason) \
         ON CONFLICT (stream, stream_seq) DO NOTHING",
        [
            batch.stream.as_str().into(),
            array(ArrayType::BigInt, seq),
            array(ArrayType::String, subject),
            array(ArrayType::Bytes, payload),
            array(ArrayType::BigInt, payload_len),
            array(ArrayType::String, reason),
        ],
    ))
    .await?;
    Ok(())
}

/// One product by id.
#[cfg(feature = "testing")]
pub async fn find(db: &DatabaseConnection, id: i64) -> Result<Option<Product>, StoreError> {
    Ok(products::Entity::find_by_id(id)
        .filter(products::Column::Deleted.eq(false))
        .one(db)
        .await?
        .map(product))
}

/// Up to `limit` products with an id greater than `after`, in id order.
pub async fn page(
    db: &DatabaseConnection,
    after: i64,
    limit: u64,
) -> Result<Vec<Product>, StoreError> {
    Ok(products::Entity::find()
        .filter(products::Column::Id.gt(after))
        .filter(products::Column::Deleted.eq(false))
        .order_by_asc(products::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(product)
        .collect())
}

/// Every version of the ids from `from` to `until` (both included; deleted
/// ones as such), in id order, at most `limit`.
pub async fn versions(
    db: &DatabaseConnection,
    from: i64,
    until: i64,
    limit: u64,
) -> Result<Vec<Version>, StoreError> {
    Ok(products::Entity::find()
        .filter(products::Column::Id.gte(from))
        .filter(products::Column::Id.lte(until))
        .order_by_asc(products::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            if row.deleted {
                Version::Deleted {
                    id: row.id,
                    revision: row.revision,
                }
            } else {
                Version::Stored(Arc::new(product(row)))
            }
        })
        .collect())
}

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
) -> Result<Changes, StoreError> {
    // One snapshot for every read, so that the next `since` is exact.
    let txn = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let backend = txn.get_database_backend();
    let read = txn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT pg_current_snapshot()::text AS snapshot, clock_timestamp() AS read_at",
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
async fn too_many(txn: &DatabaseTransaction, since: &str) -> Result<TooMany, StoreError> {
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

/// What identifies the product an id-less message created.
pub(super) fn creation_key(stream: &str, seq: u64) -> String {
    format!("{stream}#{seq}")
}

/// JetStream sequences are u64 but stay far below i64::MAX in practice.
fn seq_to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The product a row holds, as it is served.
pub fn product(row: products::Model) -> Product {
    let attributes = match row.attributes {
        serde_json::Value::Object(attributes) => attributes,
        _ => serde_json::Map::new(),
    };
    Product {
        id: row.id,
        name: row.name,
        price: row.price,
        manufacturer: row.manufacturer,
        description: row.description,
        attributes,
        revision: row.revision,
        stream_seq: row.stream_seq,
        updated_at: row
            .updated_at
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        changed_by: row.operator,
    }
}
