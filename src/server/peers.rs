//! Fair shares per peer: the connections and the request-body bytes one
//! source address may hold, so that no single peer on the network can crowd
//! the API server out of a port (`--max-connections-per-peer`).
//!
//! The table is touched only when a connection is accepted and when it
//! closes, never per request: a connection carries its peer's share with
//! it and hands it to each of its requests. An entry lives exactly as long
//! as its peer has a connection open, so the table holds at most one entry
//! per open connection (bounded by `--max-connections`) and nothing about
//! peers that have gone.
//!
//! It must not decide anything else: what happens to a connection over its
//! share (closed at once, counted) is the listener's, and how a body waits
//! for room is intake's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Semaphore;

/// Bodies up to this size reserve from the small pool (intake's, and each
/// peer's share of it). Defined here, below intake, which uses the shares.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;
/// The small pool: 128 bodies of the largest small size at once (typical
/// AdmissionReviews are 5 to 20 KiB, so several hundred).
pub const SMALL_POOL_BYTES: usize = 128 * SMALL_BODY_BYTES;

/// `--max-connections-per-peer` when not given (or `--max-connections`
/// if lower): a quarter of the default 128. The API server multiplexes its
/// reviews over HTTP/2 (one or two connections per API server, up to 32
/// streams each, while reviews run 4 at a time), so 32 leaves a control
/// plane that reaches us through one proxy address room for a burst over
/// HTTP/1.1 as wide as one HTTP/2 connection's streams, and a connection
/// refused to the API server fails a pod creation. An attacker needs four
/// addresses to fill the port instead of one.
pub const DEFAULT_CONNECTIONS_PER_PEER: usize = 32;

/// What one peer may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Open connections (`--max-connections-per-peer`, at most the port's
    /// `--max-connections`).
    pub connections: usize,
    /// Bytes of bodies over the small-body size (of `--max-body-buffer-bytes`).
    pub large_body_bytes: usize,
    /// Bytes of small bodies (of the fixed small-body pool).
    pub small_body_bytes: usize,
}

impl Share {
    /// One peer's share of a port with `max_connections` open at most, of
    /// which a peer may hold `per_peer`: the same fraction of each body
    /// budget, but never less than one body of the largest size, so that a
    /// peer can always send any body the server accepts.
    pub fn of(
        per_peer: usize,
        max_connections: usize,
        body_budget: usize,
        max_body_bytes: usize,
    ) -> Share {
        let max_connections = max_connections.max(1);
        let per_peer = per_peer.clamp(1, max_connections);
        let fraction = |total: usize| {
            // u128: budgets up to 4 GiB times a million connections.
            let part = total as u128 * per_peer as u128 / max_connections as u128;
            usize::try_from(part).unwrap_or(total)
        };
        Share {
            connections: per_peer,
            large_body_bytes: fraction(body_budget).max(max_body_bytes).min(body_budget),
            small_body_bytes: fraction(SMALL_POOL_BYTES).max(SMALL_BODY_BYTES),
        }
    }
}

/// One peer's room in the body budgets, held by its connections and
/// reserved from by its requests before the shared budget.
#[derive(Debug)]
pub struct PeerBodies {
    /// Room for bodies over [`SMALL_BODY_BYTES`].
    pub(super) large: Arc<Semaphore>,
    /// Room for small bodies.
    pub(super) small: Arc<Semaphore>,
}

impl PeerBodies {
    fn new(share: &Share) -> PeerBodies {
        PeerBodies {
            large: Arc::new(Semaphore::new(
                share.large_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            small: Arc::new(Semaphore::new(share.small_body_bytes)),
        }
    }
}

/// The peers of one port with a connection open, and their shares.
#[derive(Debug)]
pub struct PeerTable {
    share: Share,
    peers: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug)]
struct Entry {
    connections: usize,
    bodies: Arc<PeerBodies>,
}

impl PeerTable {
    /// An empty table giving each peer `share`.
    pub fn new(share: Share) -> Arc<PeerTable> {
        Arc::new(PeerTable {
            share,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// What each peer may hold.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Peers with a connection open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no peer has a connection open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Every update is a single insert, increment or removal: a panic
        // elsewhere cannot leave an entry half-written.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`, or `None` if the peer already
    /// holds its share of connections. The returned seat gives the
    /// connection back when dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Seat> {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d: one
        // peer, one key.
        let ip = ip.to_canonical();
        let mut peers = self.lock();
        let entry = peers.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            bodies: Arc::new(PeerBodies::new(&self.share)),
        });
        if entry.connections >= self.share.connections {
            return None;
        }
        entry.connections += 1;
        Some(Seat {
            table: self.clone(),
            ip,
            bodies: entry.bodies.clone(),
        })
    }

    fn leave(&self, ip: IpAddr) {
        let mut peers = self.lock();
        if let Some(entry) = peers.get_mut(&ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                peers.remove(&ip);
            }
        }
    }
}

/// One connection's place in its peer's share, given back when dropped.
#[derive(Debug)]
pub struct Seat {
    table: Arc<PeerTable>,
    ip: IpAddr,
    bodies: Arc<PeerBodies>,
}

impl Seat {
    /// The peer's room in the body budgets, for the connection's requests.
    pub fn bodies(&self) -> Arc<PeerBodies> {
        self.bodies.clone()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.table.leave(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MIB: usize = 1 << 20;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn table(per_peer: usize) -> Arc<PeerTable> {
        PeerTable::new(Share::of(per_peer, 128, 32 * MIB, 4 * MIB))
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_others_are_not_affected() {
        let t = table(3);
        let seats: Vec<_> = (0..3)
            .map(|i| t.admit(ip(1)).unwrap_or_else(|| panic!("seat {i} of 3")))
            .collect();
        assert!(t.admit(ip(1)).is_none(), "a fourth connection is refused");
        assert!(t.admit(ip(2)).is_some(), "another peer has its own share");
        drop(seats);
        assert!(t.admit(ip(1)).is_some(), "room again once one closes");
    }

    #[test]
    fn an_entry_is_removed_when_its_peer_has_no_connection_left() {
        let t = table(4);
        let a = t.admit(ip(1)).expect("first");
        let b = t.admit(ip(1)).expect("second");
        let c = t.admit(ip(2)).expect("other peer");
        assert_eq!(t.len(), 2);
        drop(a);
        assert_eq!(t.len(), 2, "the peer still has a connection");
        drop(b);
        drop(c);
        assert!(t.is_empty(), "no entry outlives its peer's last connection");
        // 10,000 peers coming and going leave nothing behind.
        for n in 0..10_000u32 {
            let seat = t.admit(IpAddr::V4(Ipv4Addr::from(n))).expect("room");
            drop(seat);
        }
        assert!(t.is_empty());
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_is_one_peer() {
        let t = table(1);
        let _seat = t.admit(ip(7)).expect("first");
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert!(t.admit(mapped).is_none(), "the same peer, mapped");
        assert!(t.admit(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_some());
    }

    #[test]
    fn body_shares_are_the_connection_fraction_but_always_fit_one_largest_body() {
        let cases = [
            // (per peer, max connections, budget, max body) -> (large, small)
            (
                (32, 128, 32 * MIB, 4 * MIB),
                (8 * MIB, 2 * MIB),
                "the default: a quarter",
            ),
            ((16, 128, 32 * MIB, 4 * MIB), (4 * MIB, MIB), "an eighth"),
            (
                (1, 128, 32 * MIB, 4 * MIB),
                (4 * MIB, 64 * 1024),
                "one body of each kind at least",
            ),
            (
                (128, 128, 32 * MIB, 4 * MIB),
                (32 * MIB, 8 * MIB),
                "per peer = total: the whole budget",
            ),
            (
                (1, 1, 4 * MIB, 8 * MIB),
                (4 * MIB, 8 * MIB),
                "never more than the budget",
            ),
        ];
        for ((per_peer, max, budget, body), (large, small), why) in cases {
            let s = Share::of(per_peer, max, budget, body);
            assert_eq!(
                (s.connections, s.large_body_bytes, s.small_body_bytes),
                (per_peer, large, small),
                "{why}"
            );
        }
    }
}
