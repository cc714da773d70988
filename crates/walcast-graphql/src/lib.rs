//! The GraphQL stage: a juniper schema generated at run time from the catalog. One Rust type
//! serves every table through juniper's `TypeInfo`; the schema is rebuilt when the catalog
//! changes.

pub mod context;
pub mod cost;
pub mod error;
pub mod guard;
pub mod hints;
pub mod info;
pub mod input;
pub mod messages;
pub mod mutation_type;
pub mod mutations;
pub mod objects;
pub mod payload;
pub mod query;
pub mod relations;
pub mod resolver;
pub mod roots;
pub mod scalars;
pub mod session;
pub mod shared;

use std::sync::Arc;

use juniper::RootNode;
use walcast_access::{TableGrant, Writes};
use walcast_model::Catalog;

pub use context::{
    Access, ConnectionHandle, Ctx, EventSource, EventStream, Limits, MessagePrefixes,
    MessageRequest, MessageStream, SharedAccess, SubscriptionRequest,
};
pub use error::{Error, SubscribeError};
pub use info::{SchemaInfo, TableInfo};
pub use mutations::MutationRoot;
pub use roots::{QueryRoot, SubscriptionRoot};
pub use session::QuerySession;
pub use shared::{Member, Outbox, Payload, PayloadGroups, Sharing};
pub use walcast_access::full_view;

pub type Schema = RootNode<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Deepest selection accepted: relations nest, and each level can cost a query. The standard
/// introspection query (GraphiQL, codegen tools) needs 13.
pub const MAX_DEPTH: usize = 20;
/// Most fields in one document.
pub const MAX_FIELDS: usize = 2_000;

/// Builds the schema of a view of the catalog. `mutations`: `WALCAST_MUTATIONS`; `messages`:
/// the `_logical_message` subscription (the view may read some prefix and the server sends
/// messages: Postgres 14+).
pub fn build_schema(
    catalog: Arc<Catalog>,
    view: &[TableGrant],
    mutations: bool,
    messages: bool,
) -> Schema {
    let tables: Vec<Arc<TableInfo>> = view
        .iter()
        .map(|v| {
            let grants = if mutations { v.writes } else { Writes::NONE };
            Arc::new(TableInfo::new(
                catalog.clone(),
                v.table().clone(),
                v.columns(),
                grants,
            ))
        })
        .collect();
    TableInfo::link(&catalog, &tables);
    let info = SchemaInfo {
        catalog,
        tables,
        mutations,
        messages,
    };
    RootNode::new_with_info(
        QueryRoot,
        MutationRoot,
        SubscriptionRoot,
        info.clone(),
        info.clone(),
        info,
    )
    .limit_depth(MAX_DEPTH)
    .limit_fields(MAX_FIELDS)
}
