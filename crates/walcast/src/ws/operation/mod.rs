//! Running one GraphQL operation of a socket: a subscription streams, a query or mutation
//! answers once; both end with `complete`.

mod error;
mod outlet;
mod run;

pub use error::{Disconnected, OperationError};
pub use outlet::Outlet;
pub use run::run;
