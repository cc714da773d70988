//! The server's ping frames: when the next one is due, and until when its pong may take.

use std::time::Duration;

use tokio::time::Instant;

pub(super) struct Heartbeat {
    interval: Option<Duration>,
    timeout: Duration,
    next_ping: Instant,
    /// Set while a ping is unanswered.
    pong_by: Option<Instant>,
}

impl Heartbeat {
    /// `interval` zero turns pings off.
    pub(super) fn new(interval: Duration, timeout: Duration) -> Heartbeat {
        let interval = (!interval.is_zero()).then_some(interval);
        Heartbeat {
            interval,
            timeout,
            next_ping: Instant::now() + interval.unwrap_or_default(),
            pong_by: None,
        }
    }

    /// Anything the client sends proves it is there.
    pub(super) fn heard(&mut self) {
        self.pong_by = None;
    }

    pub(super) fn pinged(&mut self) {
        let now = Instant::now();
        if let Some(interval) = self.interval {
            self.next_ping = now + interval;
        }
        if self.pong_by.is_none() {
            self.pong_by = Some(now + self.timeout);
        }
    }

    pub(super) async fn ping_due(&self) {
        match self.interval {
            Some(_) => tokio::time::sleep_until(self.next_ping).await,
            None => std::future::pending().await,
        }
    }

    pub(super) async fn pong_overdue(&self) {
        match self.pong_by {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}
