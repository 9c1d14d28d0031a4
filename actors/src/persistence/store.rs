//! The SeaORM queries and mutations, kept apart from the actor that calls them.

use super::{Batch, Incoming, Refused, StoreError, Stored};
use crate::product::{Product, Version};
use entity::{products, rejected_messages};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionSession, TransactionTrait,
};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use tracing::warn;

/// Stores one batch in one transaction and returns the current version of
/// every product it names, changed or not (a redelivery after a commit whose
/// reply was lost still refreshes the cache).
///
/// Idempotent: a message is applied to a product only if its stream sequence is
/// newer than the one last applied, and an id-less message creates at most one
/// product (its `stream#seq` is unique), so a redelivered batch changes nothing.
///
/// If Postgres refuses the batch for its data (not for being unreachable), each
/// message is tried on its own, still in one transaction (a savepoint each),
/// and those refused on their own are returned in [`Stored::refused`], so that
/// one bad message never holds up the others.
pub async fn store_batch(db: &DatabaseConnection, batch: Batch) -> Result<Stored, StoreError> {
    match write(db, batch.clone()).await {
        Ok(current) => Ok(Stored {
            current,
            refused: Vec::new(),
        }),
        Err(error) if error.is_refusal() => {
            warn!(%error, messages = batch.products.len(), "Postgres refused a batch; trying its messages one by one");
            store_one_by_one(db, batch).await
        }
        Err(error) => Err(error),
    }
}

async fn store_one_by_one(db: &DatabaseConnection, batch: Batch) -> Result<Stored, StoreError> {
    let Batch {
        stream,
        products,
        rejected,
    } = batch;
    let alone = |products, rejected| Batch {
        stream: stream.clone(),
        products,
        rejected,
    };
    let mut stored = Stored {
        current: Vec::new(),
        refused: Vec::new(),
    };
    let total = products.len();
    let mut first_refusal = None;
    let txn = db.begin().await?;
    write(&txn, alone(Vec::new(), rejected)).await?;
    for message in products {
        let stream_seq = message.stream_seq;
        // `write` on a transaction opens a savepoint: a refusal rolls back only this message.
        match write(&txn, alone(vec![message], Vec::new())).await {
            Ok(current) => stored.current.extend(current),
            Err(error) if error.is_refusal() => {
                stored.refused.push(Refused {
                    stream_seq,
                    reason: format!("Postgres refused it: {error}"),
                });
                first_refusal.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
    }
    if total > 1 && stored.refused.len() == total {
        // Every message refused: the database is at fault (a schema change, say),
        // not the messages. Keep them for a retry rather than set them aside.
        return Err(first_refusal.expect("a refusal was recorded"));
    }
    txn.commit().await?;
    Ok(stored)
}

/// One transaction (or savepoint, inside a transaction) for the whole batch.
async fn write<C: TransactionTrait>(db: &C, batch: Batch) -> Result<Vec<Product>, StoreError> {
    let Batch {
        stream,
        products: incoming,
        rejected,
    } = batch;

    // One row per id, the newest message wins: a statement may not touch a row
    // twice. Newest by stream sequence, not by place in the batch: a redelivered
    // message can come after a newer one.
    let mut by_id: BTreeMap<i64, Incoming> = BTreeMap::new();
    let mut id_less = Vec::new();
    for message in incoming {
        match message.update.id {
            Some(id) => match by_id.entry(id) {
                Entry::Occupied(mut kept) => {
                    if message.stream_seq > kept.get().stream_seq {
                        kept.insert(message);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(message);
                }
            },
            None => id_less.push(message),
        }
    }
    let ids: Vec<i64> = by_id.keys().copied().collect();
    let created_by: Vec<String> = id_less
        .iter()
        .map(|message| format!("{stream}#{}", message.stream_seq))
        .collect();

    let txn = db.begin().await?;
    let mut current = Vec::with_capacity(ids.len() + created_by.len());

    if let Some(&max_id) = ids.last() {
        let rows = by_id
            .into_iter()
            .map(|(id, message)| products::ActiveModel {
                id: Set(id),
                ..row(&stream, message.stream_seq, message.update, None)
            });
        let excluded = |column: products::Column| {
            Expr::col((sea_orm::sea_query::Alias::new("excluded"), column))
        };
        let newer = Expr::col((products::Entity, products::Column::Stream))
            .ne(excluded(products::Column::Stream))
            .or(Expr::col((products::Entity, products::Column::StreamSeq))
                .lt(excluded(products::Column::StreamSeq)));
        let upsert = OnConflict::column(products::Column::Id)
            .update_columns([
                products::Column::Name,
                products::Column::Price,
                products::Column::Manufacturer,
                products::Column::Description,
                products::Column::Attributes,
                products::Column::Stream,
                products::Column::StreamSeq,
                products::Column::UpdatedAt,
            ])
            .action_and_where(newer)
            .to_owned();
        current.extend(
            products::Entity::insert_many(rows)
                .on_conflict(upsert)
                .exec_with_returning(&txn)
                .await?,
        );

        // Keep the id sequence ahead of the ids publishers chose, so that the next
        // id-less product does not collide with them.
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "SELECT setval('products_id_seq', $1) FROM products_id_seq \
             WHERE $1 > last_value OR ($1 = last_value AND NOT is_called)",
            [max_id.into()],
        ))
        .await?;
    }

    if !id_less.is_empty() {
        let rows = id_less.into_iter().zip(&created_by).map(|(message, key)| {
            row(
                &stream,
                message.stream_seq,
                message.update,
                Some(key.clone()),
            )
        });
        current.extend(
            products::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::column(products::Column::CreatedBy)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_with_returning(&txn)
                .await?,
        );
    }

    if !rejected.is_empty() {
        let rows = rejected
            .into_iter()
            .map(|r| rejected_messages::ActiveModel {
                id: NotSet,
                stream: Set(stream.clone()),
                stream_seq: Set(seq_to_i64(r.stream_seq)),
                subject: Set(r.subject),
                payload: Set(r.payload),
                payload_len: Set(r.payload_len as i64),
                reason: Set(r.reason),
                rejected_at: NotSet,
            });
        rejected_messages::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    rejected_messages::Column::Stream,
                    rejected_messages::Column::StreamSeq,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }

    // The rows the statements above left alone (older or redelivered messages)
    // are read as they stand; usually there are none.
    let returned_ids: HashSet<i64> = current.iter().map(|row| row.id).collect();
    let returned_keys: HashSet<&str> = current
        .iter()
        .filter_map(|row| row.created_by.as_deref())
        .collect();
    let unchanged_ids: Vec<i64> = ids
        .into_iter()
        .filter(|id| !returned_ids.contains(id))
        .collect();
    let unchanged_keys: Vec<String> = created_by
        .into_iter()
        .filter(|key| !returned_keys.contains(key.as_str()))
        .collect();
    if !unchanged_ids.is_empty() || !unchanged_keys.is_empty() {
        let unchanged = products::Entity::find()
            .filter(
                Condition::any()
                    .add(products::Column::Id.is_in(unchanged_ids))
                    .add(products::Column::CreatedBy.is_in(unchanged_keys)),
            )
            .all(&txn)
            .await?;
        current.extend(unchanged);
    }
    txn.commit().await?;
    Ok(current.into_iter().map(Product::from).collect())
}

/// One product by id.
pub async fn find(db: &DatabaseConnection, id: i64) -> Result<Option<Product>, StoreError> {
    Ok(products::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Product::from))
}

/// Up to `limit` products with an id greater than `after`, in id order.
pub async fn page(
    db: &DatabaseConnection,
    after: i64,
    limit: u64,
) -> Result<Vec<Product>, StoreError> {
    Ok(products::Entity::find()
        .filter(products::Column::Id.gt(after))
        .order_by_asc(products::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(Product::from)
        .collect())
}

fn row(
    stream: &str,
    stream_seq: u64,
    update: crate::product::ProductUpdate,
    created_by: Option<String>,
) -> products::ActiveModel {
    products::ActiveModel {
        id: NotSet,
        name: Set(update.name),
        price: Set(update.price),
        manufacturer: Set(update.manufacturer),
        description: Set(update.description),
        attributes: Set(serde_json::Value::Object(update.attributes)),
        stream: Set(stream.to_owned()),
        stream_seq: Set(seq_to_i64(stream_seq)),
        created_by: Set(created_by),
        updated_at: NotSet,
    }
}

/// JetStream sequences are u64 but stay far below i64::MAX in practice.
fn seq_to_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

impl From<products::Model> for Product {
    fn from(row: products::Model) -> Self {
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
            version: Version {
                stream: row.stream,
                seq: row.stream_seq,
            },
        }
    }
}
