//! Conditions on related rows, answered by the database for a whole transaction.

use std::sync::atomic::Ordering::Relaxed;

use walcast_filter::RelationBatch;

use crate::metrics::Metrics;

/// Runs the batch's relation queries; a condition whose query fails stays unknown (no delivery).
pub(super) async fn answer_relations(
    batch: &mut RelationBatch,
    pool: &deadpool_postgres::Pool,
    metrics: &Metrics,
) {
    use tokio_postgres::types::ToSql;
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "relation conditions not evaluated: no database connection");
            return;
        }
    };
    for q in batch.queries() {
        let refs: Vec<&(dyn ToSql + Sync)> =
            q.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        metrics.relation_queries.fetch_add(1, Relaxed);
        match client.query(&q.sql, &refs).await {
            Ok(rows) => {
                let ordinals: Vec<i64> = rows
                    .iter()
                    .filter_map(|r| r.try_get::<_, i64>(0).ok())
                    .collect();
                batch.answer(&q, ordinals);
            }
            Err(e) => tracing::error!(error = %e, "relation condition query failed"),
        }
    }
}
