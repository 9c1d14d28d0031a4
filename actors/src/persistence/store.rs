//! The SeaORM queries and mutations, kept apart from the actor that calls them.

use super::{Batch, Incoming, Refused, StoreError, Stored};
use crate::product::{Product, Version};
use entity::{products, rejected_messages};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use tracing::warn;

/// Stores one batch in one transaction and returns the products whose stored
/// version changed.
///
/// Idempotent: a message is applied to a product only if its stream sequence is
/// newer than the one last applied, and an id-less message creates at most one
/// product (its `stream#seq` is unique), so a redelivered batch changes nothing.
///
/// If Postgres refuses the batch for its data (not for being unreachable), the
/// messages are stored one by one instead, and those it refuses on their own
/// are returned in [`Stored::refused`], so that one bad message never holds up
/// the others.
pub async fn store_batch(db: &DatabaseConnection, batch: Batch) -> Result<Stored, StoreError> {
    match write(db, batch.clone()).await {
        Ok(applied) => Ok(Stored {
            applied,
            refused: Vec::new(),
        }),
        Err(error) if error.is_refusal() => {
            warn!(%error, messages = batch.products.len(), "Postgres refused a batch; storing its messages one by one");
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
    let mut stored = Stored {
        applied: Vec::new(),
        refused: Vec::new(),
    };
    let alone = |products, rejected| Batch {
        stream: stream.clone(),
        products,
        rejected,
    };
    write(db, alone(Vec::new(), rejected)).await?;
    for message in products {
        let stream_seq = message.stream_seq;
        match write(db, alone(vec![message], Vec::new())).await {
            Ok(applied) => stored.applied.extend(applied),
            Err(error) if error.is_refusal() => stored.refused.push(Refused {
                stream_seq,
                reason: format!("Postgres refused it: {error}"),
            }),
            Err(error) => return Err(error),
        }
    }
    Ok(stored)
}

/// One transaction for the whole batch.
async fn write(db: &DatabaseConnection, batch: Batch) -> Result<Vec<Product>, StoreError> {
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

    let txn = db.begin().await?;
    let mut applied = Vec::with_capacity(by_id.len() + id_less.len());

    if let Some(&max_id) = by_id.keys().next_back() {
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
        let stored = products::Entity::insert_many(rows)
            .on_conflict(upsert)
            .exec_with_returning(&txn)
            .await?;
        applied.extend(stored.into_iter().map(Product::from));

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
        let rows = id_less.into_iter().map(|message| {
            let created_by = format!("{stream}#{}", message.stream_seq);
            row(
                &stream,
                message.stream_seq,
                message.update,
                Some(created_by),
            )
        });
        let stored = products::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(products::Column::CreatedBy)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_with_returning(&txn)
            .await?;
        applied.extend(stored.into_iter().map(Product::from));
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

    txn.commit().await?;
    Ok(applied)
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
