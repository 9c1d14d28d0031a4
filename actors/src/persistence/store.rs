//! The write path: one batch stored in one transaction (products upserted by
//! id, id-less ones inserted, invalid messages set aside), kept apart from the
//! actor that calls it. Reads are in `reads.rs`, the change feed in `feed.rs`.

use super::StoreError;
use super::reads::product;
use catalogue::batch::{Batch, Incoming, KEPT_PAYLOAD_BYTES, Outcome, Rejection, Stored};
use catalogue::product::{Product, ProductUpdate};
use entity::products;
use sea_orm::sea_query::ArrayType;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, Statement,
    TransactionTrait, Value,
};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
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

/// What identifies the product an id-less message created.
pub(super) fn creation_key(stream: &str, seq: u64) -> String {
    format!("{stream}#{seq}")
}

/// JetStream sequences are u64 but stay far below i64::MAX in practice.
fn seq_to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
