//! Reads of the products, for the cache (blocks of versions, list pages) and
//! the tests, and the one conversion of a row into a served product.

use super::ReadError;
use catalogue::feed::Version;
use catalogue::product::Product;
use entity::products;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::sync::Arc;

/// One product by id.
#[cfg(feature = "testing")]
pub async fn find(db: &DatabaseConnection, id: i64) -> Result<Option<Product>, ReadError> {
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
) -> Result<Vec<Product>, ReadError> {
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
///
/// Up to the last id (a rebuild's pages), the statement has no upper bound:
/// for a range bounded on both sides the planner guesses a few rows, and on
/// a table filled faster than autovacuum analyzes it (after a bulk load, say)
/// it then reads and sorts every row after `from` for each page, on disk.
/// Bounded on one side, it walks the primary key and stops at `limit`.
pub async fn versions(
    db: &DatabaseConnection,
    from: i64,
    until: i64,
    limit: u64,
) -> Result<Vec<Version>, ReadError> {
    let mut query = products::Entity::find().filter(products::Column::Id.gte(from));
    if until < i64::MAX {
        query = query.filter(products::Column::Id.lte(until));
    }
    Ok(query
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
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
        changed_by: row.operator,
    }
}
