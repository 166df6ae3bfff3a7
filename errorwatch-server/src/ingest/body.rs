//! Reading a body: within the size limit, within the body-read timeout, and within the budget
//! of body bytes all requests may hold at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::rejection::Rejection;

/// The bytes every body being read or handled may hold, together. A request that would take
/// the total past it is answered 503 at once instead of waiting, so no mix of slow, large or
/// many clients can take the server's memory past the budget.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Budget units are KiB: a semaphore counts in `u32` per acquisition.
const UNIT: usize = 1024;

impl BodyBudget {
    /// A budget of `bytes` in all.
    pub(crate) fn new(bytes: usize) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(units)),
        }
    }

    /// Takes `bytes` more into `held`, or says the budget is spent.
    fn take(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Result<(), Rejection> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| Rejection::Overloaded)?;
        if units == 0 {
            return Ok(());
        }
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| Rejection::Overloaded)?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A body read whole, with its share of the budget.
#[derive(Debug)]
pub(crate) struct ReadBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their share of the budget.
    pub share: BudgetShare,
}

/// A share of the body budget, given back when dropped: it follows the event it paid for,
/// into the writer's queue, until the event is stored.
#[derive(Debug)]
pub(crate) struct BudgetShare {
    _permit: Option<OwnedSemaphorePermit>,
}

/// How a body is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// The largest body, counted on the bytes read.
    pub max_bytes: usize,
    /// The time the whole body may take to arrive.
    pub timeout: Duration,
}

/// Reads `body` whole. The budget is taken before the bytes are: a declared length up front
/// (the head step has refused one over the limit already), then each frame beyond it as it
/// arrives, so a lying or missing `Content-Length` changes nothing.
pub(crate) async fn read(
    body: Body,
    declared: Option<usize>,
    limits: ReadLimits,
    budget: &BodyBudget,
) -> Result<ReadBody, Rejection> {
    let mut held = None;
    let reserved = declared.unwrap_or(0);
    budget.take(&mut held, reserved)?;
    let mut bytes = Vec::with_capacity(reserved);
    let reading = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                Rejection::BodyUnreadable("The request body could not be read to its end")
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = bytes.len() + data.len();
            if total > limits.max_bytes {
                return Err(Rejection::PayloadTooLarge);
            }
            if total > reserved.max(bytes.len()) {
                budget.take(&mut held, total - reserved.max(bytes.len()))?;
            }
            bytes.extend_from_slice(&data);
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(limits.timeout, reading).await;
    match outcome {
        Ok(Ok(())) => Ok(ReadBody {
            bytes,
            share: BudgetShare { _permit: held },
        }),
        Ok(Err(rejection)) => Err(rejection),
        Err(_) => Err(Rejection::Http(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time".into(),
        )),
    }
}
