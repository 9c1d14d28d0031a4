//! Search moves to each replica's memory (`catalogue::search`, kept by the
//! cache with its blocks): the two `pg_trgm` indexes go, and with them the
//! quarter of every write's time their upkeep cost (measured in
//! docs/BENCHMARKS.md, issue 18). Postgres still answers a search while a
//! replica's cache is being rebuilt, by reading the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
DROP INDEX IF EXISTS products_name_trgm;
DROP INDEX IF EXISTS products_manufacturer_trgm;
"#;

const DOWN: &str = r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX products_name_trgm ON products USING gin (lower(name) gin_trgm_ops);
CREATE INDEX products_manufacturer_trgm ON products USING gin (lower(manufacturer) gin_trgm_ops);
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
