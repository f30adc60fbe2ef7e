//! Passive health checking: endpoints skipped for a while after a failed connect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Endpoints that just refused or timed out a connect, skipped for a while by every
/// request (passive health checking): a pod that went away costs one failed connect, not
/// one per request until the config without it arrives. Shared by all config versions.
#[derive(Default)]
pub struct Ejections {
    /// Entries in `until`, so the common case (nothing ejected) takes no lock.
    count: AtomicUsize,
    /// Endpoints from config: a fast hash is safe.
    until: std::sync::Mutex<
        std::collections::HashMap<SocketAddr, std::time::Instant, rustc_hash::FxBuildHasher>,
    >,
}

impl Ejections {
    /// Skips `addr` for `duration` from now.
    pub fn eject(&self, addr: SocketAddr, duration: std::time::Duration) {
        if let Ok(mut map) = self.until.lock() {
            map.insert(addr, std::time::Instant::now() + duration);
            self.count.store(map.len(), Ordering::Relaxed);
        }
    }

    /// Whether `addr` is skipped now (entries that ran out are dropped on the way).
    pub fn is_ejected(&self, addr: &SocketAddr) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Ok(mut map) = self.until.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        map.retain(|_, until| *until > now);
        self.count.store(map.len(), Ordering::Relaxed);
        map.contains_key(addr)
    }
}
