//! The end of an access token's life, as a session waits for it.

use std::time::SystemTime;

/// Resolves when a token expires; never without one.
pub async fn expiry(at: Option<SystemTime>) {
    match at {
        Some(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(left).await
        }
        None => std::future::pending().await,
    }
}
