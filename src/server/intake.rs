//! Receiving a request body: within `--max-body-bytes`, before the review's
//! deadline, and against a byte budget shared by every request in the
//! process (`--max-body-buffer-bytes`).
//!
//! The budget is what bounds memory when many clients upload at once: each
//! body reserves what its buffer actually allocates as the bytes arrive
//! (never what `Content-Length` announces, so an idle uploader costs
//! nothing), and keeps it until its answer is sent. When the budget is
//! spent, readers stop reading; HTTP/2 flow control and TCP then hold the
//! clients back until memory is freed or their deadline passes. A review
//! slot is taken only after the whole body is here, so slow uploaders never
//! hold a slot.

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

/// Smallest buffer allocated for a body (most AdmissionReviews fit).
const FIRST_BUFFER_BYTES: usize = 16 * 1024;

/// Bytes that request bodies may hold, all requests together.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    held: Gauge,
}

impl BodyBudget {
    /// A budget of `bytes`, reported in `held`.
    pub fn new(bytes: usize, held: Gauge) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            held,
        }
    }
}

/// A complete body, with its share of the budget held until dropped.
#[derive(Debug)]
pub struct Received {
    bytes: Vec<u8>,
    reserved: Option<OwnedSemaphorePermit>,
    held: Gauge,
}

impl Received {
    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(permit) = &self.reserved {
            self.held.dec_by(permit.num_permits() as i64);
        }
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
    /// The client did not send the whole body before the deadline.
    #[error("the body did not arrive in time ({received} bytes received)")]
    TimedOut {
        /// Bytes received by then.
        received: usize,
    },
    /// The budget had no room for the body before the deadline.
    #[error("the server is busy: no room to receive the body in time ({received} bytes received; --max-body-buffer-bytes)")]
    Busy {
        /// Bytes received by then.
        received: usize,
    },
    /// The client stopped sending, or sent something hyper refused.
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// Reads `body` whole, or says why not.
pub async fn read(
    mut body: Body,
    budget: &BodyBudget,
    limit: usize,
    deadline: Instant,
) -> Result<Received, IntakeError> {
    let mut received = Received {
        bytes: Vec::new(),
        reserved: None,
        held: budget.held.clone(),
    };
    loop {
        let frame = match timeout_at(deadline, body.frame()).await {
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
        let need = received.bytes.len() + chunk.len();
        if need > limit {
            return Err(IntakeError::TooLarge { limit });
        }
        if need > received.bytes.capacity() {
            grow(&mut received, need, limit, budget, deadline).await?;
        }
        received.bytes.extend_from_slice(&chunk);
    }
}

/// Makes room for `need` bytes, doubling (at most to `limit`), after
/// reserving the growth from the budget.
async fn grow(
    received: &mut Received,
    need: usize,
    limit: usize,
    budget: &BodyBudget,
    deadline: Instant,
) -> Result<(), IntakeError> {
    let have = received.reserved.as_ref().map_or(0, |p| p.num_permits());
    let want = need
        .max(received.bytes.capacity().saturating_mul(2))
        .max(FIRST_BUFFER_BYTES)
        .min(limit)
        .max(need);
    let extra = want.saturating_sub(have);
    if extra > 0 {
        // `limit` is far below u32::MAX (checked at start-up).
        let n = u32::try_from(extra).unwrap_or(u32::MAX);
        let permit = timeout_at(deadline, budget.bytes.clone().acquire_many_owned(n))
            .await
            .map_err(|_| IntakeError::Busy {
                received: received.bytes.len(),
            })?
            .map_err(|_| IntakeError::Broken("the server is shutting down".into()))?;
        budget.held.inc_by(i64::from(n));
        match &mut received.reserved {
            Some(held) => held.merge(permit),
            None => received.reserved = Some(permit),
        }
    }
    received.bytes.reserve_exact(want - received.bytes.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(bytes: usize) -> BodyBudget {
        BodyBudget::new(bytes, Gauge::default())
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reads_a_body_and_returns_its_budget_when_dropped() {
        let b = budget(1 << 20);
        let got = read(Body::from(vec![7u8; 40_000]), &b, 1 << 20, later())
            .await
            .expect("read");
        assert_eq!(got.bytes().len(), 40_000);
        let held = b.held.get();
        assert!((40_000..=1 << 20).contains(&held), "held {held}");
        assert_eq!(b.bytes.available_permits() as i64, (1 << 20) - held);
        drop(got);
        assert_eq!(b.held.get(), 0);
        assert_eq!(b.bytes.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit() {
        let b = budget(1 << 20);
        let err = read(Body::from(vec![0u8; 2000]), &b, 1000, later())
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
    async fn waits_for_budget_and_times_out_when_none_frees() {
        let b = budget(64 * 1024);
        let first = read(Body::from(vec![1u8; 60_000]), &b, 1 << 20, later())
            .await
            .expect("fits the budget");
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = read(Body::from(vec![2u8; 60_000]), &b, 1 << 20, deadline)
            .await
            .expect_err("no budget left");
        assert!(matches!(err, IntakeError::Busy { .. }), "{err}");
        drop(first);
        let second = read(Body::from(vec![2u8; 60_000]), &b, 1 << 20, later())
            .await
            .expect("budget freed");
        assert_eq!(second.bytes().len(), 60_000);
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        use futures_util::StreamExt;
        let first =
            futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![
                0u8;
                10
            ]))]);
        let body = Body::from_stream(first.chain(futures_util::stream::pending()));
        let b = budget(1 << 20);
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = read(body, &b, 1 << 20, deadline)
            .await
            .expect_err("stalled");
        assert!(
            matches!(err, IntakeError::TimedOut { received: 10 }),
            "{err}"
        );
        assert_eq!(b.held.get(), 0, "a failed read returns its budget");
    }
}
