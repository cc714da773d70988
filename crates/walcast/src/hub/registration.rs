//! A subscription's hold on the hub.

use std::sync::Arc;

use super::Hub;

/// Unregisters its subscription when the stream is dropped (complete, stop, disconnect).
pub(super) struct Registration {
    pub(super) hub: Arc<Hub>,
    pub(super) id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}
