//! `operator`: who last changed the product through the web UI's forms (the
//! `Products-Operator` header of its message), `NULL` when its last message
//! came from another publisher.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE products ADD COLUMN operator text")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE products DROP COLUMN operator")
            .await?;
        Ok(())
    }
}
