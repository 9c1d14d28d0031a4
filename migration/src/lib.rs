//! Schema migrations, run at start-up by `products serve` and by `products migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_products;
mod m20261125_000002_create_rejected_messages;
mod m20261126_000003_add_product_revisions;
mod m20261126_000004_add_product_deletion_and_search;
mod m20261204_000005_add_product_operator;
mod m20261204_000006_assign_free_product_ids;
mod m20261205_000007_add_product_history;
mod m20261205_000008_stamp_updates_only;
mod m20261206_000009_search_in_memory;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_products::Migration),
            Box::new(m20261125_000002_create_rejected_messages::Migration),
            Box::new(m20261126_000003_add_product_revisions::Migration),
            Box::new(m20261126_000004_add_product_deletion_and_search::Migration),
            Box::new(m20261204_000005_add_product_operator::Migration),
            Box::new(m20261204_000006_assign_free_product_ids::Migration),
            Box::new(m20261205_000007_add_product_history::Migration),
            Box::new(m20261205_000008_stamp_updates_only::Migration),
            Box::new(m20261206_000009_search_in_memory::Migration),
        ]
    }
}
