//! The change stream's history (`GET /products/changes`, `catalogue::history`):
//!
//! - `products_changed_by_id` on `(changed_by, id)` (for `products_changed_by`,
//!   which it replaces, and for `product_tombstones` alike): the history is
//!   read in position order, `(changed_by, id)`, from any position, one
//!   index range per page.
//! - `product_history`: one row, the horizon. Tombstones older than the
//!   retention are pruned; the horizon is the position of the newest pruned,
//!   so that a client asking for changes after an older position is told
//!   its history is gone (410) instead of silently missing a deletion.
//!   `(0, END)` before anything was pruned. Rows deleted by a deletion
//!   message are kept in `products` (they order later messages), so they
//!   are never pruned.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX products_changed_by_id ON products (changed_by, id);
DROP INDEX products_changed_by;
CREATE INDEX product_tombstones_changed_by_id ON product_tombstones (changed_by, id);
DROP INDEX product_tombstones_changed_by;

CREATE TABLE product_history (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    horizon_xid xid8 NOT NULL DEFAULT '0',
    horizon_slot bigint NOT NULL DEFAULT 9223372036854775807
);
INSERT INTO product_history DEFAULT VALUES;
"#;

const DOWN: &str = r#"
DROP TABLE product_history;
CREATE INDEX product_tombstones_changed_by ON product_tombstones (changed_by);
DROP INDEX product_tombstones_changed_by_id;
CREATE INDEX products_changed_by ON products (changed_by);
DROP INDEX products_changed_by_id;
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
