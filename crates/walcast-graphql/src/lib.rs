//! The GraphQL stage: a juniper schema generated at run time from the catalog. One Rust type
//! serves every table through juniper's `TypeInfo`; the schema is rebuilt when the catalog
//! changes.

pub mod context;
pub mod info;
pub mod input;
pub mod objects;
pub mod query;
pub mod roots;
pub mod scalars;
pub mod session;

use std::sync::Arc;

use juniper::{EmptyMutation, RootNode};
use walcast_model::Catalog;

pub use context::{
    ConnectionHandle, Ctx, EventSource, EventStream, SubscribeError, SubscriptionRequest,
};
pub use info::{SchemaInfo, TableInfo};
pub use roots::{QueryRoot, SubscriptionRoot};
pub use session::QuerySession;

pub type Schema = RootNode<QueryRoot, EmptyMutation<Ctx>, SubscriptionRoot>;

/// Builds the schema of every table in the catalog.
pub fn build_schema(catalog: Arc<Catalog>) -> Schema {
    let tables = catalog
        .tables
        .iter()
        .map(|t| Arc::new(TableInfo::new(t.clone(), None)))
        .collect();
    let info = SchemaInfo {
        catalog,
        tables,
        mutations: false,
    };
    RootNode::new_with_info(
        QueryRoot,
        EmptyMutation::new(),
        SubscriptionRoot,
        info.clone(),
        (),
        info,
    )
}
