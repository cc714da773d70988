//! Publication set-up over an ordinary (non-replication) connection.

use crate::quote::quote_ident;
use crate::WalError;

/// Creates `publication` for `tables` (`(schema, table)` pairs) unless it exists; true when it
/// was created. An existing publication is used as it is. No tables gives an empty publication,
/// never `FOR ALL TABLES`.
pub async fn ensure_publication(
    client: &tokio_postgres::Client,
    publication: &str,
    tables: &[(String, String)],
) -> Result<bool, WalError> {
    if publication.is_empty() {
        return Err(WalError::InvalidName {
            what: "publication",
            name: String::new(),
            reason: "it is empty",
        });
    }
    let context = || format!("looking up publication {publication:?}");
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|source| WalError::Query {
            context: context(),
            source,
        })?
        .is_some();
    if exists {
        return Ok(false);
    }
    let mut sql = format!("CREATE PUBLICATION {}", quote_ident(publication));
    if !tables.is_empty() {
        let list: Vec<String> = tables
            .iter()
            .map(|(schema, table)| format!("{}.{}", quote_ident(schema), quote_ident(table)))
            .collect();
        sql.push_str(" FOR TABLE ");
        sql.push_str(&list.join(", "));
    }
    match client.batch_execute(&sql).await {
        Ok(()) => {
            tracing::info!(publication, tables = tables.len(), "created publication");
            Ok(true)
        }
        // Created concurrently by someone else: use theirs, as with any existing one.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => Ok(false),
        Err(source) => Err(WalError::Query {
            context: format!("creating publication {publication:?}"),
            source,
        }),
    }
}
