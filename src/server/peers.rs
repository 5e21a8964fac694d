//! Fair shares per peer: the connections, the request-body bytes and the
//! review slots one source address may hold, so that no single peer on the
//! network can crowd the API server out of a port
//! (`--max-connections-per-peer`). A peer may
//! borrow connections past its share that no other peer can claim, so the
//! share limits a peer only when another needs the room; and a borrowed
//! connection is taken back (recalled) when a peer within its share needs
//! its seat, so what was lent never keeps another peer out.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore};

/// Bodies up to this size reserve from the small pool (intake's, and each
/// peer's share of it). Defined here, below intake, which uses the shares.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;
/// The small pool: 128 bodies of the largest small size at once (typical
/// AdmissionReviews are 5 to 20 KiB, so several hundred).
pub const SMALL_POOL_BYTES: usize = 128 * SMALL_BODY_BYTES;

/// `--max-connections-per-peer` when not given (or `--max-connections`
/// if lower): a quarter of the default 128, what a peer always gets. The API
/// server calls webhooks over HTTP/1.1, a connection per concurrent call, so
/// a burst of pod creations is a burst of connections from one address; it
/// may go past its share by borrowing what no other peer present can claim
/// (see [`PeerTable::admit`]), up to the port less one share. A flooder with
/// one address likewise holds at most the port less one share, and an
/// attacker needs four addresses to take every share of the default port.
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
    /// Review slots (of `--max-in-flight`), held from the body's arrival
    /// until its answer is written: a peer that does not read its answers
    /// holds at most these.
    pub reviews: usize,
}

impl Share {
    /// One peer's share of a port with `max_connections` open at most, of
    /// which a peer may hold `per_peer`: the same fraction of each body
    /// budget, but never less than one body of the largest size, so that a
    /// peer can always send any body the server accepts; and the same
    /// fraction of the `max_in_flight` review slots, but at least one.
    pub fn of(
        per_peer: usize,
        max_connections: usize,
        body_budget: usize,
        max_body_bytes: usize,
        max_in_flight: usize,
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
            reviews: fraction(max_in_flight).clamp(1, max_in_flight.max(1)),
        }
    }
}

/// One peer's room in the body budgets and among the review slots, held
/// by its connections and taken from by its requests before the shared
/// budget and slots.
#[derive(Debug)]
pub struct PeerRoom {
    /// Room for bodies over [`SMALL_BODY_BYTES`].
    pub(super) large: Arc<Semaphore>,
    /// Room for small bodies.
    pub(super) small: Arc<Semaphore>,
    /// Its review slots.
    pub(super) reviews: Arc<Semaphore>,
}

impl PeerRoom {
    fn new(share: &Share) -> PeerRoom {
        PeerRoom {
            large: Arc::new(Semaphore::new(
                share.large_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            small: Arc::new(Semaphore::new(share.small_body_bytes)),
            reviews: Arc::new(Semaphore::new(share.reviews)),
        }
    }
}

/// The peers of one port with a connection open, and their shares.
#[derive(Debug)]
pub struct PeerTable {
    share: Share,
    /// The port's `--max-connections`: what borrowing may not eat into.
    max_connections: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<IpAddr, Entry>,
    /// Connections open on the port, all peers together.
    open: usize,
    /// What the peers present have not used of their shares: the sum over
    /// them of `share - held`, where positive. Kept as connections come and
    /// go, so borrowing is decided without a walk of the table.
    unclaimed: usize,
    /// The peers past their shares, by how many they hold: the last is the
    /// one a recall takes from. Kept as connections come and go, so a
    /// recall finds it without a walk of the table (which may hold a peer
    /// for each of a million connections).
    borrowers: BTreeSet<(usize, IpAddr)>,
    /// The next seat's number: seats are numbered in the order they are
    /// taken.
    next_seat: u64,
}

#[derive(Debug)]
struct Entry {
    /// Its connections not recalled.
    connections: usize,
    room: Arc<PeerRoom>,
    /// Its connections not recalled, by seat number (oldest first).
    seats: BTreeMap<u64, Arc<Recall>>,
}

/// Seats looked at, newest first, for one still in its handshake or
/// answering before the newest is recalled whatever it is doing: a recall
/// costs a bounded time under the table's lock however many a peer holds.
const RECALL_LOOKS_AT: usize = 64;

/// Keeps `borrowers` in step with a peer's count going from `from` to `to`.
fn track(
    borrowers: &mut BTreeSet<(usize, IpAddr)>,
    ip: IpAddr,
    from: usize,
    to: usize,
    share: usize,
) {
    if from > share {
        borrowers.remove(&(from, ip));
    }
    if to > share {
        borrowers.insert((to, ip));
    }
}

/// A connection's notice that its seat was taken back for a peer within
/// its share: it should close, gracefully (a request in progress is
/// answered first).
#[derive(Debug, Default)]
pub struct Recall {
    /// Set under the table's lock when the seat is taken back; its
    /// connection no longer counts in the table from then on.
    recalled: AtomicBool,
    notify: Notify,
    /// Kept alive between requests, none in progress: closing it races the
    /// client's next request on it (a POST the client may not retry), so
    /// such a connection is recalled last.
    idle: AtomicBool,
}

impl Recall {
    /// Resolves once the connection is recalled (at once if it was already).
    pub async fn recalled(&self) {
        if self.is_recalled() {
            return;
        }
        // `notify_one` keeps a wake-up for a waiter still to come, and a
        // connection has one waiter: a recall before the wait is not lost.
        self.notify.notified().await;
    }

    /// Whether the connection's seat was taken back.
    pub fn is_recalled(&self) -> bool {
        self.recalled.load(Ordering::Acquire)
    }

    /// Marks the connection as kept alive with no request in progress (or
    /// no longer so). A hint for choosing which to recall: relaxed.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }
}

impl PeerTable {
    /// An empty table for a port of `max_connections`, giving each peer
    /// `share`.
    pub fn new(share: Share, max_connections: usize) -> Arc<PeerTable> {
        Arc::new(PeerTable {
            share,
            max_connections: max_connections.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// What each peer may hold.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Peers with a connection open now.
    pub fn len(&self) -> usize {
        self.lock().peers.len()
    }

    /// Whether no peer has a connection open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single insert, increment or removal with its
        // counters, and nothing in between can panic: a panic elsewhere
        // cannot leave an entry half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`, or `None` if it may not have one.
    ///
    /// A peer always gets its share. Past it, it may *borrow* a free
    /// connection while enough stay free for every other peer present to
    /// reach its own share and for one newcomer to get a whole one: the API
    /// server, which calls over HTTP/1.1 with a connection per concurrent
    /// call, can burst past its share when nobody else needs the room, and a
    /// flooder alone still leaves a share free for it. The returned seat
    /// gives the connection back when dropped.
    ///
    /// A connection within its peer's share that takes the port's last free
    /// seat while another peer holds borrowed ones recalls one of those (the
    /// peer furthest past its share gives one back, a connection still in
    /// its handshake or answering first): one seat stays free, so
    /// the next peer within its share is accepted at once too, and lending
    /// never keeps a peer from its share for longer than a borrowed
    /// connection takes to close.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Seat> {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d: one
        // peer, one key.
        let ip = ip.to_canonical();
        let share = self.share.connections;
        let mut state = self.lock();
        let State {
            peers,
            open,
            unclaimed,
            borrowers,
            next_seat,
        } = &mut *state;
        let held = peers.get(&ip).map_or(0, |e| e.connections);
        if held >= share {
            // Free after this one is taken (the listener holds a slot for
            // it, so `open < max_connections`).
            let free = self.max_connections.saturating_sub(*open + 1);
            if free < share.saturating_add(*unclaimed) {
                return None;
            }
        }
        let entry = peers.entry(ip).or_insert_with(|| Entry {
            connections: 0,
            room: Arc::new(PeerRoom::new(&self.share)),
            seats: BTreeMap::new(),
        });
        if entry.connections == 0 {
            *unclaimed += share;
        }
        if entry.connections < share {
            *unclaimed -= 1;
        }
        track(
            borrowers,
            ip,
            entry.connections,
            entry.connections + 1,
            share,
        );
        entry.connections += 1;
        *open += 1;
        let recall = Arc::new(Recall::default());
        let id = *next_seat;
        *next_seat += 1;
        entry.seats.insert(id, recall.clone());
        let room = entry.room.clone();
        if held < share && *open >= self.max_connections {
            Self::recall_one(&mut state, share);
        }
        Some(Seat {
            table: self.clone(),
            ip,
            id,
            room,
            recall,
        })
    }

    /// Takes back a connection of the peer furthest past its share, if
    /// any: its newest still in its handshake or
    /// answering, else its newest; counted out of the table now, told to
    /// close. Either closes without an error for its client (a request in
    /// progress is answered with `connection: close`); an idle kept-alive
    /// connection could be closed just as its client sends on it.
    fn recall_one(state: &mut State, share: usize) {
        let Some(&(held, ip)) = state.borrowers.last() else {
            return;
        };
        let Some(entry) = state.peers.get_mut(&ip) else {
            return;
        };
        let Some(&newest) = entry.seats.keys().next_back() else {
            return;
        };
        let at = entry
            .seats
            .iter()
            .rev()
            .take(RECALL_LOOKS_AT)
            .find(|(_, seat)| !seat.idle.load(Ordering::Relaxed))
            .map_or(newest, |(id, _)| *id);
        let Some(recall) = entry.seats.remove(&at) else {
            return;
        };
        recall.recalled.store(true, Ordering::Release);
        recall.notify.notify_one();
        track(&mut state.borrowers, ip, held, held - 1, share);
        entry.connections -= 1;
        state.open -= 1;
    }

    /// Connections held past their peers' shares now.
    pub fn borrowed(&self) -> usize {
        let share = self.share.connections;
        self.lock()
            .borrowers
            .iter()
            .map(|(held, _)| held - share)
            .sum()
    }

    fn leave(&self, ip: IpAddr, id: u64, recall: &Recall) {
        let share = self.share.connections;
        let mut state = self.lock();
        if recall.is_recalled() {
            // Counted out when it was recalled (under this lock).
            return;
        }
        let State {
            peers,
            open,
            unclaimed,
            borrowers,
            next_seat: _,
        } = &mut *state;
        if let Some(entry) = peers.get_mut(&ip) {
            entry.seats.remove(&id);
            track(
                borrowers,
                ip,
                entry.connections,
                entry.connections.saturating_sub(1),
                share,
            );
            if entry.connections <= share {
                *unclaimed += 1;
            }
            entry.connections = entry.connections.saturating_sub(1);
            *open = open.saturating_sub(1);
            if entry.connections == 0 {
                *unclaimed = unclaimed.saturating_sub(share);
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
    /// Its number in its peer's seats.
    id: u64,
    room: Arc<PeerRoom>,
    recall: Arc<Recall>,
}

impl Seat {
    /// The peer's room in the body budgets and the review slots, for the
    /// connection's requests.
    pub fn room(&self) -> Arc<PeerRoom> {
        self.room.clone()
    }

    /// The connection's notice that its seat was taken back.
    pub fn recall(&self) -> Arc<Recall> {
        self.recall.clone()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.table.leave(self.ip, self.id, &self.recall);
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
        PeerTable::new(Share::of(per_peer, 128, 32 * MIB, 4 * MIB, 20), 128)
    }

    /// Seats taken by `ip` until one is refused (at most `max`).
    fn fill(t: &Arc<PeerTable>, ip: IpAddr, max: usize) -> Vec<Seat> {
        std::iter::from_fn(|| t.admit(ip)).take(max).collect()
    }

    /// Which of these seats were recalled, by their place.
    fn recalled(seats: &[Seat]) -> Vec<usize> {
        (0..seats.len())
            .filter(|&i| seats[i].recall().is_recalled())
            .collect()
    }

    #[test]
    fn peers_within_their_shares_take_back_what_was_lent_a_seat_at_a_time() {
        // Share 4 of a port of 16: A alone borrows 8 past its share.
        let t = PeerTable::new(Share::of(4, 16, 32 * MIB, 4 * MIB, 20), 16);
        let a = fill(&t, ip(1), 16);
        assert_eq!((a.len(), t.borrowed()), (12, 8));
        // Three newcomers reach their shares. Each connection that takes
        // the port's last seat recalls one of A's, newest first; A keeps
        // its own share whatever happens.
        let b = fill(&t, ip(2), 16);
        let c = fill(&t, ip(3), 16);
        assert_eq!((b.len(), c.len()), (4, 4));
        assert_eq!(
            recalled(&a),
            (7..12).collect::<Vec<_>>(),
            "one for B's last, four for C's"
        );
        assert_eq!(t.borrowed(), 3);
        let d = fill(&t, ip(4), 16);
        assert_eq!(d.len(), 4, "the fourth peer gets its whole share too");
        assert_eq!(
            recalled(&a),
            (4..12).collect::<Vec<_>>(),
            "A is down to its share"
        );
        assert_eq!(t.borrowed(), 0);
        assert!(b
            .iter()
            .chain(&c)
            .chain(&d)
            .all(|s| !s.recall().is_recalled()));
        // A recalled seat was counted out when recalled: dropping it (its
        // connection closing) gives nothing back twice.
        drop(a);
        assert_eq!(t.len(), 3);
        let again = fill(&t, ip(1), 16);
        assert_eq!(
            again.len(),
            4,
            "A's share, and nothing to borrow: 12 held, 4 free"
        );
        drop((b, c, d, again));
        assert!(t.is_empty());
    }

    #[test]
    fn an_idle_kept_alive_connection_is_recalled_last() {
        let t = PeerTable::new(Share::of(1, 4, 32 * MIB, 4 * MIB, 20), 4);
        let a = fill(&t, ip(1), 4);
        assert_eq!(a.len(), 3, "its share and two borrowed");
        a[2].recall().set_idle(true);
        let _b = t.admit(ip(2)).expect("within its share");
        assert_eq!(recalled(&a), [1], "the newest not idle");
        a[0].recall().set_idle(true);
        let _c = t.admit(ip(3)).expect("within its share");
        assert_eq!(
            recalled(&a),
            [1, 2],
            "then the newest, idle or not (A keeps its share of one)"
        );
    }

    #[test]
    fn the_peer_furthest_past_its_share_gives_back_first() {
        let t = PeerTable::new(Share::of(2, 20, 32 * MIB, 4 * MIB, 20), 20);
        let mut a = fill(&t, ip(1), 20);
        assert_eq!(a.len(), 18);
        a.truncate(10);
        let b = fill(&t, ip(2), 20);
        assert_eq!(b.len(), 8, "A 10, B 8: 2 free");
        let _c = fill(&t, ip(3), 2);
        assert_eq!(
            (recalled(&a).len(), recalled(&b).len()),
            (1, 0),
            "A held more"
        );
        let _d = fill(&t, ip(4), 2);
        assert_eq!(
            (recalled(&a).len(), recalled(&b).len()),
            (2, 1),
            "A down to 9, then both at 8: one each"
        );
        assert_eq!(t.borrowed(), 2 * (8 - 2) - 1);
    }

    #[test]
    fn a_recall_looks_at_a_bounded_number_of_seats() {
        let t = PeerTable::new(Share::of(1, 100, 32 * MIB, 4 * MIB, 20), 100);
        let a = fill(&t, ip(1), 100);
        assert_eq!(a.len(), 99);
        for seat in &a {
            seat.recall().set_idle(true);
        }
        a[10].recall().set_idle(false);
        let _b = t.admit(ip(2)).expect("within its share");
        assert_eq!(
            recalled(&a),
            [98],
            "the busy one is older than the newest {RECALL_LOOKS_AT}: the newest is taken"
        );
        a[60].recall().set_idle(false);
        let _c = t.admit(ip(3)).expect("within its share");
        assert_eq!(
            recalled(&a),
            [60, 98],
            "a busy one among the newest is taken first"
        );
    }

    #[tokio::test]
    async fn a_recalled_connection_is_told_even_if_it_was_not_yet_listening() {
        // A share of 1 of a port of 3: alone, a peer borrows 1.
        let t = PeerTable::new(Share::of(1, 3, 32 * MIB, 4 * MIB, 20), 3);
        let borrower = fill(&t, ip(1), 3);
        assert_eq!(borrower.len(), 2);
        let recall = borrower[1].recall();
        let _newcomer = t.admit(ip(2)).expect("within its share");
        // Recalled before anyone waited: the wake-up is kept.
        tokio::time::timeout(std::time::Duration::from_secs(5), recall.recalled())
            .await
            .expect("the recall is seen");
        assert!(!borrower[0].recall().is_recalled(), "only the newest");
    }

    #[test]
    fn a_peer_alone_borrows_all_but_one_share_and_others_keep_theirs() {
        // Share 4 of a port of 16.
        let t = PeerTable::new(Share::of(4, 16, 32 * MIB, 4 * MIB, 20), 16);
        let a = fill(&t, ip(1), 16);
        assert_eq!(a.len(), 12, "its share and all the free room but one share");
        let b = fill(&t, ip(2), 16);
        assert_eq!(b.len(), 4, "a newcomer gets exactly its share, no more");
        assert_eq!(
            recalled(&a),
            [11],
            "B's last took the port's last seat: A's newest was recalled, so one stays free"
        );
        assert!(
            t.admit(ip(3)).is_some(),
            "and so would a third (the listener's slots bound the port)"
        );
        assert_eq!(recalled(&a), [10, 11], "and it recalled the next newest");
        drop(a);
        assert_eq!(
            fill(&t, ip(1), 16).len(),
            8,
            "room again once they close: 16 - B's 4 - a share"
        );
        drop(b);
    }

    #[test]
    fn borrowing_leaves_room_for_what_present_peers_have_not_used_of_their_shares() {
        let t = PeerTable::new(Share::of(4, 16, 32 * MIB, 4 * MIB, 20), 16);
        let b = t.admit(ip(2)).expect("one connection of B");
        let a = fill(&t, ip(1), 16);
        // 16 minus B's 1, B's 3 unused, a newcomer's 4: A may reach 8.
        assert_eq!(a.len(), 8);
        let more_b = fill(&t, ip(2), 16);
        assert_eq!(
            more_b.len(),
            3,
            "B still reaches its share of 4, and no more"
        );
        let c = fill(&t, ip(3), 16);
        assert_eq!(c.len(), 4, "a newcomer still gets its whole share");
        assert_eq!(
            recalled(&a),
            [7],
            "C's last took the last seat: one of A's recalled"
        );
        drop((b, more_b));
        let back = t
            .admit(ip(1))
            .expect("B gone: 16 - 11 - 1 = a share, A may borrow again");
        assert!(
            t.admit(ip(1)).is_none(),
            "C holds its share and 16 - 12 - 1 < a share: A may not borrow more"
        );
        drop((c, back));
    }

    #[test]
    fn with_the_share_equal_to_the_port_a_peer_gets_every_connection() {
        let t = PeerTable::new(Share::of(16, 16, 32 * MIB, 4 * MIB, 20), 16);
        assert_eq!(fill(&t, ip(1), 32).len(), 16);
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
        // A port of one share: nothing to borrow.
        let t = PeerTable::new(Share::of(1, 2, 32 * MIB, 4 * MIB, 20), 2);
        let _seat = t.admit(ip(7)).expect("first");
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert!(t.admit(mapped).is_none(), "the same peer, mapped");
        assert!(t.admit(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_some());
    }

    #[test]
    fn shares_are_the_connection_fraction_but_fit_one_largest_body_and_one_review() {
        let cases = [
            // (per peer, max connections, budget, max body, max in flight)
            //   -> (large, small, reviews)
            (
                (32, 128, 32 * MIB, 4 * MIB, 20),
                (8 * MIB, 2 * MIB, 5),
                "the default: a quarter",
            ),
            (
                (16, 128, 32 * MIB, 4 * MIB, 20),
                (4 * MIB, MIB, 2),
                "an eighth",
            ),
            (
                (1, 128, 32 * MIB, 4 * MIB, 20),
                (4 * MIB, 64 * 1024, 1),
                "one body of each kind and one review at least",
            ),
            (
                (128, 128, 32 * MIB, 4 * MIB, 20),
                (32 * MIB, 8 * MIB, 20),
                "per peer = total: the whole budget and every slot",
            ),
            (
                (1, 1, 4 * MIB, 8 * MIB, 1),
                (4 * MIB, 8 * MIB, 1),
                "never more than the budget or the slots",
            ),
        ];
        for ((per_peer, max, budget, body, in_flight), (large, small, reviews), why) in cases {
            let s = Share::of(per_peer, max, budget, body, in_flight);
            assert_eq!(
                (
                    s.connections,
                    s.large_body_bytes,
                    s.small_body_bytes,
                    s.reviews
                ),
                (per_peer, large, small, reviews),
                "{why}"
            );
        }
    }
}
