//! Receiving a request body: within `--max-body-bytes`, on the client's own
//! time (`--body-read-timeout`), and against a byte budget shared by every
//! request in the process (`--max-body-buffer-bytes`).
//!
//! The budget is what bounds memory when many clients upload at once. A
//! body reserves its whole size (the announced `Content-Length`, or the
//! limit when none is announced) when its first bytes arrive, all at once or
//! not at all: bodies never hold part of the budget while waiting for more,
//! so they cannot deadlock each other. A body waiting for room holds nothing
//! and reads nothing (HTTP/2 flow control and TCP hold its client back),
//! until room frees or the request's deadline passes. Once it has room, only
//! the client's time counts: a body that stalls is cut at
//! `--body-read-timeout` and gives its room back.
//!
//! Bodies of at most [`SMALL_BODY_BYTES`] (every ordinary AdmissionReview)
//! reserve from a pool of their own, [`SMALL_POOL_BYTES`], so that large or
//! stalled uploads queued for the main budget never delay them. A review
//! slot is taken only after the whole body is here, so slow uploaders never
//! hold a slot.
//!
//! Each peer (source address) has a share of both pools (`peers`): a body
//! first reserves from its own peer's share, then from the shared pool, so
//! one peer's uploads can hold at most its share of either, and a body
//! waiting for its peer's room holds nothing of the shared pools.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::peers::PeerRoom;
pub use super::peers::{SMALL_BODY_BYTES, SMALL_POOL_BYTES};

/// Bytes that request bodies may hold, all requests together.
#[derive(Debug)]
pub struct BodyBudget {
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    held: Gauge,
}

impl BodyBudget {
    /// A budget of `bytes` for large bodies (plus the fixed small pool),
    /// reported in `held`.
    pub fn new(bytes: usize, held: Gauge) -> BodyBudget {
        BodyBudget {
            large: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            small: Arc::new(Semaphore::new(SMALL_POOL_BYTES)),
            held,
        }
    }
}

/// A complete body, with its share of the budget held until dropped.
#[derive(Debug)]
pub struct Received {
    bytes: Vec<u8>,
    reserved: Option<OwnedSemaphorePermit>,
    /// The same room in the peer's own share, when the request came
    /// through a connection that has one.
    peer_reserved: Option<OwnedSemaphorePermit>,
    held: Gauge,
}

impl Received {
    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn room(&self) -> usize {
        self.reserved.as_ref().map_or(0, |p| p.num_permits())
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.held.dec_by(self.room() as i64);
    }
}

/// Why no complete body was received.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// More than `--max-body-bytes`.
    #[error("the body is larger than the limit of {limit} bytes (--max-body-bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The client did not send the whole body in its time.
    #[error("the body did not arrive in time ({received} bytes received)")]
    TimedOut {
        /// Bytes received by then.
        received: usize,
    },
    /// No room for the body in the budget before the request's deadline.
    #[error("the server is busy: no room to receive the body in time (--max-body-buffer-bytes)")]
    Busy,
    /// No room in this peer's own share of the budget before the deadline:
    /// its other uploads hold it.
    #[error("this client's share of the body buffer is held by its other uploads: no room to receive the body in time (--max-connections-per-peer)")]
    PeerBusy,
    /// The client stopped sending, or sent something hyper refused.
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// How long a body may take, and whose time counts.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Time the *client* may spend sending the body: waits for its bytes
    /// count, the wait for room in the budget (the server's doing) does not.
    pub client: Duration,
    /// When the whole request must be answered; the wait for room ends here.
    pub request: Instant,
}

/// Reads `body` whole, or says why not. `announced` is its `Content-Length`;
/// `peer` is its peer's share of the budget, if it has one.
pub async fn read(
    mut body: Body,
    announced: Option<u64>,
    budget: &BodyBudget,
    peer: Option<&PeerRoom>,
    limit: usize,
    deadlines: Deadlines,
) -> Result<Received, IntakeError> {
    let mut received = Received {
        bytes: Vec::new(),
        reserved: None,
        peer_reserved: None,
        held: budget.held.clone(),
    };
    let mut client_left = deadlines.client;
    loop {
        let waiting = Instant::now();
        let deadline = deadlines.request.min(waiting + client_left);
        let frame = timeout_at(deadline, body.frame()).await;
        client_left = client_left.saturating_sub(waiting.elapsed());
        let frame = match frame {
            Err(_) => {
                return Err(IntakeError::TimedOut {
                    received: received.bytes.len(),
                })
            }
            Ok(None) => return Ok(received),
            Ok(Some(Err(e))) => return Err(IntakeError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers: nothing we read
        };
        if chunk.is_empty() {
            continue;
        }
        let need = received.bytes.len() + chunk.len();
        if need > limit {
            return Err(IntakeError::TooLarge { limit });
        }
        if received.reserved.is_none() {
            // An announced length over the limit was refused before
            // reading; without one, room for the largest body is reserved.
            let size = announced
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(limit)
                .clamp(chunk.len(), limit);
            reserve(&mut received, size, budget, peer, deadlines.request).await?;
        }
        if need > received.room() {
            // hyper holds a body to its announced length; this is only
            // reached if that ever changes.
            return Err(IntakeError::Broken(format!(
                "more bytes than the {} announced",
                received.room()
            )));
        }
        received.bytes.extend_from_slice(&chunk);
    }
}

/// Reserves room for the whole body, all at once, waiting (holding nothing
/// of the shared pools) until `deadline`: first in the peer's own share,
/// then in the pool every peer shares.
async fn reserve(
    received: &mut Received,
    size: usize,
    budget: &BodyBudget,
    peer: Option<&PeerRoom>,
    deadline: Instant,
) -> Result<(), IntakeError> {
    let small = size <= SMALL_BODY_BYTES;
    let pool = if small { &budget.small } else { &budget.large };
    // `size` is at most --max-body-bytes, far below u32::MAX.
    let n = u32::try_from(size).map_err(|_| IntakeError::TooLarge { limit: size })?;
    if let Some(peer) = peer {
        let own = if small { &peer.small } else { &peer.large };
        // A share always fits one body of the largest size (`Share::of`).
        let permit = timeout_at(deadline, own.clone().acquire_many_owned(n))
            .await
            .map_err(|_| IntakeError::PeerBusy)?
            .map_err(|_| IntakeError::Broken("the server is shutting down".into()))?;
        received.peer_reserved = Some(permit);
    }
    let permit = timeout_at(deadline, pool.clone().acquire_many_owned(n))
        .await
        .map_err(|_| IntakeError::Busy)?
        .map_err(|_| IntakeError::Broken("the server is shutting down".into()))?;
    received.held.inc_by(i64::from(n));
    received.reserved = Some(permit);
    received.bytes.reserve_exact(size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use futures_util::StreamExt;

    const MIB: usize = 1 << 20;

    fn budget(bytes: usize) -> BodyBudget {
        BodyBudget::new(bytes, Gauge::default())
    }

    fn later() -> Deadlines {
        within(Duration::from_secs(5))
    }

    fn within(d: Duration) -> Deadlines {
        Deadlines {
            client: d,
            request: Instant::now() + d,
        }
    }

    /// Reads a body of `n` bytes that announces its length, limit 1 MiB.
    async fn announced(
        b: &BodyBudget,
        n: usize,
        deadlines: Deadlines,
    ) -> Result<Received, IntakeError> {
        read(
            Body::from(vec![b'x'; n]),
            Some(n as u64),
            b,
            None,
            MIB,
            deadlines,
        )
        .await
    }

    /// A body that sends `frames` and then stalls forever.
    fn stalling(frames: &[usize]) -> Body {
        let frames: Vec<_> = frames
            .iter()
            .map(|n| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; *n])))
            .collect();
        Body::from_stream(futures_util::stream::iter(frames).chain(futures_util::stream::pending()))
    }

    #[tokio::test]
    async fn a_small_body_reserves_its_size_from_the_small_pool_until_dropped() {
        let b = budget(MIB);
        let got = announced(&b, 40_000, later()).await.expect("read");
        assert_eq!(got.bytes().len(), 40_000);
        assert_eq!(b.held.get(), 40_000);
        assert_eq!(b.small.available_permits(), SMALL_POOL_BYTES - 40_000);
        assert_eq!(
            b.large.available_permits(),
            MIB,
            "the main budget is untouched"
        );
        drop(got);
        assert_eq!(b.held.get(), 0);
        assert_eq!(b.small.available_permits(), SMALL_POOL_BYTES);
    }

    #[tokio::test]
    async fn a_body_with_no_length_reserves_the_limit() {
        let b = budget(4 * MIB);
        let got = read(
            Body::from(vec![7u8; 100_000]),
            None,
            &b,
            None,
            2 * MIB,
            later(),
        )
        .await
        .expect("read");
        assert_eq!(got.bytes().len(), 100_000);
        assert_eq!(b.held.get(), 2 * MIB as i64);
        assert_eq!(b.large.available_permits(), 2 * MIB);
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit() {
        let b = budget(MIB);
        let err = read(Body::from(vec![0u8; 2000]), None, &b, None, 1000, later())
            .await
            .expect_err("too large");
        assert!(
            matches!(err, IntakeError::TooLarge { limit: 1000 }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the body is larger than the limit of 1000 bytes (--max-body-bytes)"
        );
        assert_eq!(b.held.get(), 0);
    }

    #[tokio::test]
    async fn a_body_waits_for_room_holding_nothing_and_is_busy_at_the_deadline() {
        let b = budget(MIB);
        let first = announced(&b, 700_000, later())
            .await
            .expect("fits the budget");
        let err = announced(&b, 700_000, within(Duration::from_millis(200)))
            .await
            .expect_err("no room left");
        assert!(matches!(err, IntakeError::Busy), "{err}");
        assert_eq!(b.held.get(), 700_000, "the waiting body held nothing");
        // Small bodies have their own pool: not delayed by the full budget.
        let small = announced(&b, 10_000, later())
            .await
            .expect("small bodies pass");
        assert_eq!(small.bytes().len(), 10_000);
        drop(first);
        let second = announced(&b, 700_000, later()).await.expect("room freed");
        assert_eq!(second.bytes().len(), 700_000);
    }

    #[tokio::test]
    async fn waiting_for_room_is_not_the_clients_time() {
        // The client's time is 100 ms, the request's 5 s: the body waits for
        // room past the first without being cut, and is read once room frees.
        let b = budget(MIB);
        let first = announced(&b, 700_000, later()).await.expect("fits");
        let deadlines = Deadlines {
            client: Duration::from_millis(100),
            request: Instant::now() + Duration::from_secs(5),
        };
        let freeing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(first);
        });
        let got = announced(&b, 700_000, deadlines)
            .await
            .expect("read after the room freed");
        assert_eq!(got.bytes().len(), 700_000);
        freeing.await.expect("task");
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_on_the_clients_time_and_gives_its_room_back() {
        let b = budget(8 * MIB);
        let deadlines = Deadlines {
            client: Duration::from_millis(100),
            request: Instant::now() + Duration::from_secs(30),
        };
        let err = read(
            stalling(&[10]),
            Some(4 * MIB as u64),
            &b,
            None,
            4 * MIB,
            deadlines,
        )
        .await
        .expect_err("stalled");
        assert!(
            matches!(err, IntakeError::TimedOut { received: 10 }),
            "{err}"
        );
        assert_eq!(b.held.get(), 0, "a failed read returns its room");
        assert_eq!(b.large.available_permits(), 8 * MIB);
    }

    #[tokio::test]
    async fn one_peer_holds_at_most_its_share_and_another_peer_still_gets_room() {
        use crate::server::peers::{PeerTable, Share};
        use std::net::{IpAddr, Ipv4Addr};
        // A quarter of an 8 MiB budget per peer: 2 MiB, room for one 2 MiB body.
        let b = budget(8 * MIB);
        let table = PeerTable::new(Share::of(4, 16, 8 * MIB, 2 * MIB, 20), 16);
        let flooder = table
            .admit(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .expect("seat");
        let honest = table
            .admit(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
            .expect("seat");
        let read_as = |peer: Arc<PeerRoom>, n: usize, deadlines: Deadlines| {
            let b = &b;
            async move {
                read(
                    Body::from(vec![b'x'; n]),
                    Some(n as u64),
                    b,
                    Some(&peer),
                    2 * MIB,
                    deadlines,
                )
                .await
            }
        };
        let first = read_as(flooder.room(), 2 * MIB, later())
            .await
            .expect("the peer's first large body fits its share");
        let err = read_as(flooder.room(), 2 * MIB, within(Duration::from_millis(200)))
            .await
            .expect_err("its share is held");
        assert!(matches!(err, IntakeError::PeerBusy), "{err}");
        assert_eq!(
            err.to_string(),
            "this client's share of the body buffer is held by its other uploads: no room to receive the body in time (--max-connections-per-peer)"
        );
        assert_eq!(
            b.held.get(),
            2 * MIB as i64,
            "the waiting body held nothing shared"
        );
        let other = read_as(honest.room(), 2 * MIB, later())
            .await
            .expect("another peer's body still has room");
        assert_eq!(other.bytes().len(), 2 * MIB);
        // Small bodies: the flooder's small share (a quarter of the pool) runs
        // out while the shared small pool still has room for the other peer.
        let mut smalls = Vec::new();
        while let Ok(got) = read_as(
            flooder.room(),
            SMALL_BODY_BYTES,
            within(Duration::from_millis(50)),
        )
        .await
        {
            smalls.push(got);
        }
        assert_eq!(smalls.len() * SMALL_BODY_BYTES, SMALL_POOL_BYTES / 4);
        let small = read_as(honest.room(), SMALL_BODY_BYTES, later())
            .await
            .expect("the other peer's small body");
        drop((first, smalls, small, other));
        assert_eq!(b.held.get(), 0);
        let again = read_as(flooder.room(), 2 * MIB, later())
            .await
            .expect("room once the peer's bodies are answered");
        assert_eq!(again.bytes().len(), 2 * MIB);
    }
}
