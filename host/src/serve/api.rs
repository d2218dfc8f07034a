//! The HTTP API's vocabulary: what its handlers take and return.
//!
//! A handler returns typed values: a response type here (serialized once,
//! by [`Json`], with the headers every answer carries), or an
//! [`ApiError`], whose status, kind and `Retry-After` come from the host's
//! error table (`Error::http_status`, `ErrorKind`). Bodies and queries are
//! parsed by the extractors [`JsonBody`] and [`Query`], whose rejection is
//! an [`ApiError`] naming the shape expected.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::LoadFailure;
use super::status::Window;
use crate::Error;
use crate::limits::LimitKind;

/// A JSON answer: the value, a newline, `application/json` and `nosniff`.
pub(super) struct Json<T>(pub(super) T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    bytes,
                )
                    .into_response()
            }
            Err(e) => ApiError::internal(format!("encoding the answer: {e}")).into_response(),
        }
    }
}

/// A refusal: its status, a kind a client can match on, and a message.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// The resource limit behind it, for one.
    limit: Option<LimitKind>,
    /// The seconds of its `Retry-After`, if it sends one.
    retry_after: Option<u64>,
    /// Whether to send `WWW-Authenticate: Bearer`.
    challenge: bool,
}

impl ApiError {
    /// A refusal of `kind` with `status`.
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            limit: None,
            retry_after: None,
            challenge: false,
        }
    }

    /// 400 `invalid_request`.
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`.
    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The same, telling the client to try again in a second.
    pub(super) fn retry_after(mut self) -> Self {
        self.retry_after = Some(1);
        self
    }

    /// The same, telling the client the route takes a bearer token.
    pub(super) fn challenge(mut self) -> Self {
        self.challenge = true;
        self
    }

    /// Its status.
    #[cfg(test)]
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    /// A host error: the status of its kind, `Retry-After` when it says
    /// when to try again (a second on any other 429), and the limit it
    /// reports.
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = match e.retry_after() {
            Some(after) => Some((after.as_secs_f64().ceil() as u64).max(1)),
            None => (status == StatusCode::TOO_MANY_REQUESTS).then_some(1),
        };
        Self {
            status,
            kind: e.kind().as_str(),
            message: e.to_string(),
            limit: e.limit(),
            retry_after,
            challenge: false,
        }
    }
}

/// `{"error": {"kind", "message", "limit"?}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    kind: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<LimitKind>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind,
                message: &self.message,
                limit: self.limit,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What a body or query is, for the refusal of one that is not.
pub(super) trait Shape {
    /// Said as "the body is not {expected}" ("the query is not ...").
    fn expected() -> String;
}

impl Shape for crate::TaskInput {
    fn expected() -> String {
        format!("a task ({})", crate::TaskInput::SHAPE)
    }
}

/// A JSON body of shape `T`, refused (400 `invalid_request`, naming the
/// shape) when it is not one, 413 `too_large` when it is over the limit.
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Shape> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("the body is not {}: {e}", T::expected())))
    }
}

/// A body that could not be read.
fn body_rejection(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_request"
    };
    ApiError::new(status, kind, rejection.body_text())
}

/// A query string of shape `T`, refused (400 `invalid_request`, naming
/// the shape) when it is not one.
pub(super) struct Query<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned + Shape> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| Query(query))
            .map_err(|e| {
                ApiError::invalid(format!(
                    "the query is not {}: {}",
                    T::expected(),
                    e.body_text()
                ))
            })
    }
}

/// What `GET /v1/swarms` and `GET /v1/swarms/{id}` say of one swarm.
#[derive(Serialize)]
pub(super) struct SwarmSummary {
    pub(super) swarm_id: String,
    pub(super) version: String,
    pub(super) origin: String,
    pub(super) digest: String,
    pub(super) task_types: Vec<String>,
    pub(super) resource_limits: crate::contract::ResourceLimits,
    pub(super) slo_targets: crate::contract::SloTargets,
    pub(super) usage: crate::SwarmUsage,
    pub(super) slo: crate::slo::SloFigures,
    pub(super) reputation: crate::reputation::Reputation,
    pub(super) quarantined: bool,
    pub(super) recent: Window,
}

/// `GET /v1/swarms`.
#[derive(Serialize)]
pub(super) struct SwarmList {
    pub(super) swarms: Vec<SwarmSummary>,
}

/// `GET /readyz`.
#[derive(Serialize)]
pub(super) struct Readiness {
    pub(super) ready: bool,
    pub(super) loaded: Vec<String>,
    pub(super) failed: Vec<LoadFailure>,
    /// `ok`, or why the event sinks cannot record.
    pub(super) audit: String,
    /// `loading N of M` while the first load runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) loading: Option<String>,
    /// What this worker did with each deployment, when it follows the
    /// fleet's deployments (`nats.deployments`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deployments: Option<super::fleet::DeploymentsView>,
}

/// `GET /v1/audit`: the log's health, its chain head and its newest
/// records.
#[derive(Serialize)]
pub(super) struct AuditView {
    pub(super) enabled: bool,
    pub(super) healthy: bool,
    /// Absent without an audit log.
    #[serde(flatten)]
    pub(super) log: Option<AuditState>,
    pub(super) records: Vec<serde_json::Value>,
}

/// What `GET /v1/audit` says of a log there is.
#[derive(Serialize)]
pub(super) struct AuditState {
    /// Why the log cannot record, if it cannot.
    pub(super) failure: Option<String>,
    pub(super) head: Option<crate::audit::Head>,
    /// `linked`, or where the chain breaks.
    pub(super) chain: String,
    pub(super) scanned_bytes: u64,
    pub(super) restored: RestoredView,
}

/// How the audit log's writer restored its state when it was opened.
#[derive(Serialize)]
pub(super) struct RestoredView {
    /// The record the checkpoint used covers.
    pub(super) checkpoint: Option<u64>,
    pub(super) replayed: u64,
    pub(super) refused: Vec<String>,
}

/// The query of `GET /v1/audit`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Records to return, newest first (50; at most 500).
    pub(super) limit: Option<usize>,
    /// Only this swarm's records.
    pub(super) swarm_id: Option<String>,
    /// `notable` (the default) or `all`.
    pub(super) operations: Option<String>,
}

impl Shape for AuditQuery {
    fn expected() -> String {
        "limit, swarm_id, operations".into()
    }
}

/// The body of `POST /v1/admin/swarms`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadBody {
    pub(super) contract: std::path::PathBuf,
}

impl Shape for LoadBody {
    fn expected() -> String {
        "{\"contract\": PATH}".into()
    }
}

/// `DELETE /v1/admin/swarms/{id}`.
#[derive(Serialize)]
pub(super) struct Unloaded {
    pub(super) unloaded: String,
}

/// `POST /v1/admin/swarms/{id}/release`.
#[derive(Serialize)]
pub(super) struct Released {
    pub(super) reputation: crate::reputation::Reputation,
}

/// `GET /v1/capabilities`.
#[derive(Serialize)]
pub(super) struct CapabilitiesView {
    pub(super) capabilities: Vec<CapabilityView>,
}

/// One capability and the swarms that declare it.
#[derive(Serialize)]
pub(super) struct CapabilityView {
    pub(super) capability: String,
    pub(super) swarms: Vec<CapabilitySwarm>,
}

/// A swarm that declares a capability, and whether it can be chosen now.
#[derive(Serialize)]
pub(super) struct CapabilitySwarm {
    #[serde(flatten)]
    pub(super) candidate: crate::Candidate,
    pub(super) task_types: Vec<String>,
    pub(super) eligible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) excluded: Option<String>,
}

/// `GET /v1/fleet`.
#[derive(Serialize)]
pub(super) struct FleetView {
    pub(super) workers: super::fleet::Workers,
    /// Each swarm deployed to the fleet and how far the workers are with
    /// it (absent when nothing was ever deployed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deployments: Option<super::fleet::Convergences>,
}
