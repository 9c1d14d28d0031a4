//! Search off the write path: the trigram indexes move from `products` to
//! `product_search` (id, name, manufacturer), which persistence fills
//! behind the writes (`actors/src/persistence/search.rs`), so that a batch's
//! upsert no longer updates two GIN indexes (about 45% of a bare table's
//! speed, docs/BENCHMARKS.md).
//!
//! - `product_search`: the searchable text of every product not deleted,
//!   as of `product_search_filled.through`.
//! - `product_search_filled`: one row, `through`: every change by a
//!   transaction below it is in `product_search`; the changes from it on
//!   (`products.changed_by >= through`) are searched in `products` itself,
//!   so a search is exact however far behind the filling is.
//!
//! Filled here from the rows that this migration's snapshot sees, from the
//! oldest transaction then in progress on (`xmin`): the filling takes up
//! what those wrote, again if need be (it is idempotent).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE product_search_filled (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    through xid8 NOT NULL
);
INSERT INTO product_search_filled (through) VALUES (pg_snapshot_xmin(pg_current_snapshot()));
CREATE TABLE product_search (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    manufacturer text NOT NULL
);
INSERT INTO product_search (id, name, manufacturer)
    SELECT id, name, manufacturer FROM products WHERE NOT deleted;
CREATE INDEX product_search_name_trgm ON product_search USING gin (lower(name) gin_trgm_ops);
CREATE INDEX product_search_manufacturer_trgm
    ON product_search USING gin (lower(manufacturer) gin_trgm_ops);
DROP INDEX products_name_trgm;
DROP INDEX products_manufacturer_trgm;
"#;

const DOWN: &str = r#"
CREATE INDEX products_name_trgm ON products USING gin (lower(name) gin_trgm_ops);
CREATE INDEX products_manufacturer_trgm ON products USING gin (lower(manufacturer) gin_trgm_ops);
DROP TABLE product_search;
DROP TABLE product_search_filled;
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
