//! `products_stamp` fires on updates only: an insert takes `revision` and
//! `changed_by` from the columns' defaults (`nextval('products_revision_seq')`
//! and `pg_current_xact_id()`, the same values the trigger set), so a new
//! row no longer pays a PL/pgSQL call. An update (an `ON CONFLICT DO UPDATE`
//! among them) is still stamped by the trigger, after it has taken the row's
//! lock, so the later version of a row has the higher revision.
//!
//! Measured in docs/BENCHMARKS.md (issue 18).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
DROP TRIGGER products_stamp ON products;
CREATE TRIGGER products_stamp BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp();
"#;

const DOWN: &str = r#"
DROP TRIGGER products_stamp ON products;
CREATE TRIGGER products_stamp BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp();
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
