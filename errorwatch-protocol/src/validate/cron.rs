//! `POST /api/v1/cron/checkin`: a scheduled job reports that it started, finished or failed.

use serde_json::Value;

use super::checker::{Checker, Int, Str};
use super::Detail;
use crate::limits::cron as limit;

/// What a check-in says about the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckInStatus {
    /// It finished.
    Ok,
    /// It started (answered with a `checkinId` to finish it with).
    InProgress,
    /// It failed.
    Error,
}

impl CheckInStatus {
    /// The name the contract gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckInStatus::Ok => "ok",
            CheckInStatus::InProgress => "in_progress",
            CheckInStatus::Error => "error",
        }
    }
}

/// A check-in that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    /// The job (its monitor is created on first sight).
    pub slug: String,
    /// Started, finished or failed.
    pub status: CheckInStatus,
    /// The id that ties a finish to its start.
    pub checkin_id: Option<String>,
    /// How long it ran, in milliseconds.
    pub duration: Option<i64>,
    /// Its environment.
    pub env: Option<String>,
    /// Anything the job adds.
    pub payload: Option<Value>,
}

/// Validates a check-in.
///
/// ```
/// use errorwatch_protocol::validate::{checkin, CheckInStatus};
/// let body = serde_json::json!({ "slug": "nightly-backup", "status": "ok", "duration": 1200 });
/// assert_eq!(checkin(&body).unwrap().status, CheckInStatus::Ok);
/// ```
///
/// # Errors
/// The details of every violation, each with the path production gives it.
pub fn checkin(body: &Value) -> Result<CheckIn, Vec<Detail>> {
    let mut c = Checker::new();
    let Some(body) = c.object("", Some(body), false) else {
        return Err(c.into_details());
    };
    let slug = c.required_string("slug", body.get("slug"), Str::between(1, limit::SLUG));
    let options = ["ok", "in_progress", "error"];
    let status = c
        .one_of(
            "status",
            Some(body.get("status").unwrap_or(&Value::Null)),
            &options,
        )
        .map(|status| match status {
            "ok" => CheckInStatus::Ok,
            "in_progress" => CheckInStatus::InProgress,
            _ => CheckInStatus::Error,
        });
    let checkin_id = c.string("checkinId", body.get("checkinId"), Str::ANY);
    let duration = c.int(
        "duration",
        body.get("duration"),
        Int {
            min: Some(0),
            ..Int::default()
        },
    );
    let env = c.string("env", body.get("env"), Str::ANY);
    c.finish(|| CheckIn {
        slug: slug.unwrap_or_default().to_owned(),
        status: status.unwrap_or(CheckInStatus::Ok),
        checkin_id: checkin_id.map(str::to_owned),
        duration,
        env: env.map(str::to_owned),
        payload: body.get("payload").cloned(),
    })
}
