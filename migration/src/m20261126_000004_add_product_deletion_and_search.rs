//! Deletion as a message, and search by name or manufacturer:
//!
//! - `deleted`: a deletion message (`{"id": N, "deleted": true}`) is upserted
//!   like any update (the newest stream sequence wins), setting `deleted`; the
//!   row keeps its `stream` and `stream_seq`, so an older message redelivered
//!   later is still older and never brings the product back, and a newer
//!   update sets it back to `false`. Reads skip deleted rows; the change feed
//!   reports them as deletions.
//! - `pg_trgm` GIN indexes on `name` and `manufacturer` (lower-cased), so that
//!   a search for a part of either (`lower(name) LIKE '%pen%'`) reads the index
//!   instead of every row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE products ADD COLUMN deleted boolean NOT NULL DEFAULT false;

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX products_name_trgm ON products USING gin (lower(name) gin_trgm_ops);
CREATE INDEX products_manufacturer_trgm ON products USING gin (lower(manufacturer) gin_trgm_ops);
"#;

// The extension stays: other schemas of the database may use it.
const DOWN: &str = r#"
DROP INDEX products_manufacturer_trgm;
DROP INDEX products_name_trgm;
ALTER TABLE products DROP COLUMN deleted;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
