//! Host ports for processes: each process gets its own port on the host network, passed as
//! `PORT` (Nomad's default networking). Ports come from a configurable range and are checked
//! free on the host before they are handed out.
//!
//! This module only hands out and takes back numbers; it must never open a listener that
//! outlives the check.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// Hands out free host ports from a range.
#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    used: Mutex<BTreeSet<u16>>,
    next: Mutex<u16>,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let start = *range.start();
        PortAllocator {
            range,
            used: Mutex::new(BTreeSet::new()),
            next: Mutex::new(start),
        }
    }

    /// Mark a port as taken (a re-adopted process's port).
    pub fn reserve(&self, port: u16) {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port);
    }

    /// Give a port back.
    pub fn release(&self, port: u16) {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
    }

    /// A port that no process holds and that nothing on the host listens on, or `None` when
    /// the range is exhausted. Ports rotate through the range so a just-released port is not
    /// reused at once.
    pub fn allocate(&self) -> Option<u16> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let candidate = *next;
            *next = if candidate >= hi { lo } else { candidate + 1 };
            if used.contains(&candidate) || !free_on_host(candidate) {
                continue;
            }
            used.insert(candidate);
            return Some(candidate);
        }
        None
    }

    /// How many ports are handed out.
    pub fn in_use(&self) -> usize {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn free_on_host(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_free_ports_and_skips_busy_ones() {
        let busy = TcpListener::bind("0.0.0.0:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let lo = busy_port.saturating_sub(2).max(1025);
        let a = PortAllocator::new(lo..=lo + 5);
        let mut got = Vec::new();
        while let Some(p) = a.allocate() {
            got.push(p);
        }
        assert!(!got.contains(&busy_port));
        let mut dedup = got.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len());
        let first = got[0];
        a.release(first);
        assert_eq!(a.allocate(), Some(first));
        assert_eq!(a.in_use(), got.len());
    }
}
