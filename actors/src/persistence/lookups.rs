//! Reads for the web UI's pages, apart from the ingest path's queries in
//! `store.rs`: search, the rejected messages, and what became of a message
//! a form published.

use super::store::creation_key;
use super::{MessageOutcome, REJECTED_PREVIEW_CHARS, ReadError, RejectedMessage};
use catalogue::filter::Filter;
use catalogue::product::Product;
use catalogue::search::lowercase;
use entity::{products, rejected_messages};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};

/// Up to `limit` products after the id `after`, in id order, that `filter`
/// asks for: a name or manufacturer that contains its text, in any case,
/// its manufacturer in any case, its price range. Only while the cache's
/// search index is being filled (a rebuild): this reads the table in id
/// order, with no index for the text (`catalogue::search` says why). Only the conditions asked
/// for are in the statement (one text for each mix, prepared once), so that
/// the planner sees what it can use.
pub async fn search(
    db: &DatabaseConnection,
    filter: &Filter,
    after: i64,
    limit: u64,
) -> Result<Vec<Product>, ReadError> {
    let mut sql = String::from("SELECT * FROM products WHERE NOT deleted AND id > $1");
    let mut values: Vec<sea_orm::Value> = vec![after.into()];
    let mut bind = |sql: &mut String, clause: &str, value: sea_orm::Value| {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    if let Some(text) = &filter.text {
        let pattern = format!("%{}%", like_escaped(&lowercase(text)));
        bind(
            &mut sql,
            " AND (lower(name) LIKE ? OR lower(manufacturer) LIKE ?)",
            pattern.into(),
        );
    }
    if let Some(manufacturer) = &filter.manufacturer {
        bind(
            &mut sql,
            " AND lower(manufacturer) = ?",
            lowercase(manufacturer).into(),
        );
    }
    if let Some(min) = filter.min_price {
        bind(&mut sql, " AND price >= ?", min.into());
    }
    if let Some(max) = filter.max_price {
        bind(&mut sql, " AND price <= ?", max.into());
    }
    bind(
        &mut sql,
        " ORDER BY id LIMIT ?",
        i64::try_from(limit).unwrap_or(i64::MAX).into(),
    );
    Ok(products::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .all(db)
        .await?
        .into_iter()
        .map(super::reads::product)
        .collect())
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

/// Up to `limit` rejected messages, newest first, older than `before`.
pub async fn rejected(
    db: &DatabaseConnection,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<RejectedMessage>, ReadError> {
    let mut query = rejected_messages::Entity::find();
    if let Some(before) = before {
        query = query.filter(rejected_messages::Column::Id.lt(before));
    }
    Ok(query
        .order_by_desc(rejected_messages::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(rejected_message)
        .collect())
}

/// The rejected message with the row id `id`, if there is one.
pub async fn rejected_one(
    db: &DatabaseConnection,
    id: i64,
) -> Result<Option<RejectedMessage>, ReadError> {
    Ok(rejected_messages::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(rejected_message))
}

fn rejected_message(row: rejected_messages::Model) -> RejectedMessage {
    RejectedMessage {
        id: row.id,
        stream: row.stream,
        stream_seq: row.stream_seq,
        subject: row.subject,
        payload: String::from_utf8_lossy(&row.payload)
            .chars()
            .take(REJECTED_PREVIEW_CHARS)
            .collect(),
        payload_len: row.payload_len,
        reason: row.reason,
        rejected_at: row
            .rejected_at
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    }
}

/// What became of the message `seq` of `stream`, which named the product
/// `id` (none: it created one).
pub async fn outcome(
    db: &DatabaseConnection,
    stream: &str,
    seq: i64,
    id: Option<i64>,
) -> Result<MessageOutcome, ReadError> {
    if let Some(rejected) = rejected_messages::Entity::find()
        .filter(rejected_messages::Column::Stream.eq(stream))
        .filter(rejected_messages::Column::StreamSeq.eq(seq))
        .one(db)
        .await?
    {
        return Ok(MessageOutcome::Rejected {
            reason: rejected.reason,
        });
    }
    let row = match id {
        Some(id) => {
            products::Entity::find_by_id(id)
                .filter(products::Column::Stream.eq(stream))
                .filter(products::Column::StreamSeq.gte(seq))
                .one(db)
                .await?
        }
        None => {
            products::Entity::find()
                .filter(products::Column::CreatedBy.eq(creation_key(stream, seq as u64)))
                .one(db)
                .await?
        }
    };
    Ok(match row {
        Some(row) => MessageOutcome::Stored {
            id: row.id,
            deleted: row.deleted,
        },
        None => MessageOutcome::Waiting,
    })
}
