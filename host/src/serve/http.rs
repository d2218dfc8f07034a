//! The HTTP routes of `chassis serve` and how a host error becomes a
//! status code and a JSON body (`docs/serve.md` is the table).
//!
//! A task's payload passes through as JSON text: the body is read once,
//! its `payload` kept as a raw value and handed to the guest; the output
//! goes back as the guest's text. A swarm's own error is a normal answer
//! (200, `"status": "failed"`); the host's refusals are
//! `{"error": {"kind", "message", ...}}` with the status of their kind.
//!
//! The status page (`/`, its script and style sheet) and the audit trail
//! it reads (`/v1/audit`) are read-only, and absent (404) with
//! `status_page = false`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::api::{
    ApiError, AuditQuery, AuditState, AuditView, CapabilitiesView, CapabilitySwarm, CapabilityView,
    FleetView, Json, JsonBody, LoadBody, Query, Readiness, Released, RestoredView, SwarmList,
    SwarmSummary, Unloaded,
};
use super::{Service, status};
use crate::{Error, TaskInput};

/// Every route, over `service`.
pub(super) fn router(service: Arc<Service>) -> Router {
    let limit = service.config.max_body_bytes;
    Router::new()
        .route("/v1/swarms", get(list))
        .route("/v1/swarms/{id}", get(one))
        .route("/v1/swarms/{id}/tasks", post(task))
        .route("/v1/capabilities", get(capabilities))
        .route("/v1/capabilities/{capability}/tasks", post(capability_task))
        .route("/v1/fleet", get(fleet))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .nest("/v1/admin", admin(&service))
        .merge(status_page(&service))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            read_body,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            allowed_host,
        ))
        // A handler that panics answers 500; the server goes on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("the server failed on this request").into_response()
            },
        ))
        .with_state(service)
}

/// Refuse (403) a request whose `Host` names a host the server does not
/// answer for: on a loopback address, a web page the operator visits could
/// otherwise point a domain of its own at 127.0.0.1 (DNS rebinding) and read
/// the status page, the audit trail and the task routes with the browser's
/// help. `allowed_hosts` says which names pass (`ServeConfig::host_allowed`).
async fn allowed_host(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(host) = host
        && !service.config.host_allowed(host, service.on_loopback())
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "this server does not answer for the host {:?}: add its name to allowed_hosts",
                crate::text::escape(host, 256)
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Read the request's whole body before any route sees it: refused with
/// 413 when its `Content-Length` (or what arrives) is over
/// `max_body_bytes`, without reading on; with 408 when it has not all
/// arrived `request_read_timeout_seconds` after the headers (one deadline
/// for the whole body, however it trickles in).
async fn read_body(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = service.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over max_body_bytes ({limit} bytes)"),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(service.config.request_read_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if over_limit(&e) => return too_large(),
        Ok(Err(e)) => {
            return ApiError::invalid(format!("reading the request body: {e}")).into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive within request_read_timeout_seconds",
            )
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

/// Whether reading a body stopped at its size limit.
fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The status page and the audit trail it shows, or nothing with
/// `status_page = false`.
fn status_page(service: &Arc<Service>) -> Router<Arc<Service>> {
    if !service.config.status_page {
        return Router::new();
    }
    let asset = |body: &'static str, kind: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "no-cache"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (header::CONTENT_SECURITY_POLICY, status::CSP),
                    (header::REFERRER_POLICY, "no-referrer"),
                ],
                body,
            )
        })
    };
    Router::new()
        .route("/", asset(status::INDEX_HTML, "text/html; charset=utf-8"))
        .route(
            "/status.js",
            asset(status::STATUS_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            "/status.css",
            asset(status::STATUS_CSS, "text/css; charset=utf-8"),
        )
        .route("/v1/audit", get(audit))
}

/// How far back from its end `GET /v1/audit` reads the log.
const AUDIT_SCAN_BYTES: u64 = 4 * 1024 * 1024;

/// The audit log's health, its chain head, and its newest records.
async fn audit(
    State(service): State<Arc<Service>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditView>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let every = match query.operations.as_deref() {
        None | Some("notable") => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::invalid("operations is `notable` or `all`")),
    };
    let Some(log) = service.audit.log() else {
        return Ok(Json(AuditView {
            enabled: false,
            healthy: false,
            log: None,
            records: Vec::new(),
        }));
    };
    let failure = service.chassis.event_sink_failure();
    let path = log.path().to_path_buf();
    let restored = log.restored();
    let restored = RestoredView {
        checkpoint: restored.checkpoint.as_ref().map(|h| h.seq),
        replayed: restored.replayed,
        refused: restored.refused.clone(),
    };
    let swarm = query.swarm_id;
    let keep = move |record: &serde_json::Value| {
        swarm
            .as_deref()
            .is_none_or(|s| record["swarm_id"].as_str() == Some(s))
            && (every || status::notable(record["operation"].as_str().unwrap_or_default()))
    };
    // One read of the log at a time: the others wait their turn. The turn
    // goes with the read, so a client that leaves does not end it early.
    let Some(turn) = service.audit.read_turn().await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit",
            "the server is stopping",
        ));
    };
    let tail = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        crate::audit::tail(&path, limit, AUDIT_SCAN_BYTES, keep)
    })
    .await
    .map_err(|_| ApiError::internal("the server failed on this request"))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "audit",
            format!("reading the audit log: {e}"),
        )
    })?;
    Ok(Json(AuditView {
        enabled: true,
        healthy: failure.is_none() && tail.chain.is_ok(),
        log: Some(AuditState {
            failure,
            head: tail.head,
            chain: match tail.chain {
                Ok(()) => "linked".to_string(),
                Err(reason) => reason,
            },
            scanned_bytes: tail.scanned_bytes,
            restored,
        }),
        records: tail.records,
    }))
}

/// The admin routes: behind the bearer token, or absent (404) without one.
fn admin(service: &Arc<Service>) -> Router<Arc<Service>> {
    if service.admin_token.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/swarms", post(admin_load))
        .route("/swarms/{id}", axum::routing::delete(admin_unload))
        .route("/swarms/{id}/release", post(admin_release))
        .route_layer(axum::middleware::from_fn_with_state(
            service.clone(),
            require_token,
        ))
}

/// Lets a request through only with `Authorization: Bearer <token>`,
/// compared in constant time.
async fn require_token(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    use subtle::ConstantTimeEq;
    let Some(token) = &service.admin_token else {
        return Err(ApiError::not_found("no such route"));
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
        return Ok(next.run(request).await);
    }
    tracing::warn!(target: "chassis::serve", "admin request refused: {} token", if given.is_empty() { "no" } else { "a wrong" });
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin routes need `Authorization: Bearer <token>`",
    )
    .challenge())
}

/// Load a swarm from a contract file the server can read (201), or replace
/// the loaded swarm of the same id with it (200).
async fn admin_load(
    State(service): State<Arc<Service>>,
    JsonBody(body): JsonBody<LoadBody>,
) -> Result<(StatusCode, Json<SwarmSummary>), ApiError> {
    let loaded = service.load_or_replace(&body.contract).await?;
    let summary = summary(&service, &loaded.info.swarm_id)?;
    let status = if loaded.previous.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(summary)))
}

/// Unload a swarm: new tasks are refused at once; tasks already running
/// finish on it.
async fn admin_unload(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Unloaded>, ApiError> {
    if let Some(bundle) = service.fleet.deployed_bundle(&id) {
        return Err(crate::Error::Load(crate::LoadError::Deployed {
            swarm_id: id,
            bundle,
        })
        .into());
    }
    service.chassis.unload(&id)?;
    Ok(Json(Unloaded { unloaded: id }))
}

/// Release a quarantined swarm.
async fn admin_release(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<Released>, ApiError> {
    let reputation = service.chassis.release(&id)?;
    Ok(Json(Released { reputation }))
}

/// Run a task: the swarm's answer (200, whether it succeeded or failed),
/// or the host's refusal.
async fn task(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
    body: Result<JsonBody<TaskInput>, ApiError>,
) -> Result<Json<crate::TaskOutcome<Box<serde_json::value::RawValue>>>, ApiError> {
    not_loading(&service)?;
    let JsonBody(input) = body?;
    let outcome = service
        .chassis
        .execute_task_text(&id, input.into_request())
        .await?;
    Ok(Json(outcome))
}

/// Refuse a task while the first load runs (503 `loading`, try again).
fn not_loading(service: &Service) -> Result<(), ApiError> {
    if !service.loading() {
        return Ok(());
    }
    let (done, total) = service.load_progress();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "loading",
        format!("the server is still loading its swarms ({done} of {total}); try again shortly"),
    )
    .retry_after())
}

/// `POST /v1/capabilities/{capability}/tasks`: the task runs on a swarm
/// the governor chooses; the outcome (and the `Chassis-Swarm` header) names
/// it.
async fn capability_task(
    State(service): State<Arc<Service>>,
    Path(capability): Path<String>,
    body: Result<JsonBody<TaskInput>, ApiError>,
) -> Result<Response, ApiError> {
    not_loading(&service)?;
    let JsonBody(input) = body?;
    let outcome = service
        .chassis
        .execute_capability_text(&capability, input.into_request())
        .await?;
    let swarm = HeaderValue::from_str(&outcome.swarm_id).ok();
    let mut response = Json(outcome).into_response();
    if let Some(swarm) = swarm {
        response.headers_mut().insert("chassis-swarm", swarm);
    }
    Ok(response)
}

/// `GET /v1/capabilities`: each capability the loaded swarms declare, and
/// who declares it with their standing now.
async fn capabilities(State(service): State<Arc<Service>>) -> Json<CapabilitiesView> {
    let mut names: Vec<String> = service
        .chassis
        .list()
        .into_iter()
        .flat_map(|info| info.contract.capabilities.clone())
        .collect();
    names.sort();
    names.dedup();
    let capabilities = names
        .into_iter()
        .map(|capability| CapabilityView {
            swarms: service
                .chassis
                .candidates(&capability, None)
                .into_iter()
                .map(|c| CapabilitySwarm {
                    eligible: c.excluded().is_none(),
                    excluded: c.excluded(),
                    task_types: service
                        .chassis
                        .describe(&c.swarm_id)
                        .map(|i| i.task_types)
                        .unwrap_or_default(),
                    candidate: c,
                })
                .collect(),
            capability,
        })
        .collect();
    Json(CapabilitiesView { capabilities })
}

/// What `GET /v1/swarms` and `GET /v1/swarms/{id}` say of one swarm.
fn summary(service: &Service, id: &str) -> Result<SwarmSummary, Error> {
    let chassis = &service.chassis;
    let info = chassis.describe(id)?;
    let report = chassis.slo_report(id)?;
    let usage = chassis.resource_usage(id)?;
    Ok(SwarmSummary {
        swarm_id: info.swarm_id,
        version: info.version,
        origin: info.origin,
        digest: info.digest,
        task_types: info.task_types,
        resource_limits: info.contract.resource_limits.clone(),
        slo_targets: info.contract.slo_targets.clone(),
        usage,
        slo: report.slo,
        quarantined: report.reputation.quarantined,
        reputation: report.reputation,
        recent: service.observers.recent.of(id),
    })
}

async fn list(State(service): State<Arc<Service>>) -> Json<SwarmList> {
    let swarms = service
        .chassis
        .list()
        .iter()
        .filter_map(|info| summary(&service, &info.swarm_id).ok())
        .collect();
    Json(SwarmList { swarms })
}

/// The fleet's live workers and what each serves, from their heartbeats
/// (read at most once a second; a worker of a NATS queue only, 404
/// otherwise).
async fn fleet(State(service): State<Arc<Service>>) -> Result<Json<FleetView>, ApiError> {
    match service.fleet.live_workers().await {
        Some(Ok(workers)) => {
            let deployments = service.fleet.convergence(&workers).await;
            Ok(Json(FleetView {
                workers,
                deployments,
            }))
        }
        Some(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("reading the fleet's heartbeats: {e}"),
        )),
        None => Err(ApiError::not_found(
            "this server is not a worker of a NATS queue (--nats): it has no fleet",
        )),
    }
}

async fn one(
    State(service): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Json<SwarmSummary>, ApiError> {
    Ok(Json(summary(&service, &id)?))
}

/// Ready when at least one swarm is loaded (or the worker follows the
/// fleet's deployments) and the event sinks (the audit log) record; the
/// body lists what loaded and what did not, and what became of each
/// deployment.
async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, Json<Readiness>) {
    let loaded: Vec<String> = service
        .chassis
        .list()
        .into_iter()
        .map(|info| info.swarm_id)
        .collect();
    let audit = service.chassis.event_sink_failure();
    let loading = service.loading();
    let deployments = service.fleet.deployments_view();
    // A worker that follows deployments is ready with none: it serves
    // what the fleet has deployed, which may be nothing yet.
    let ready = !loading && (!loaded.is_empty() || deployments.is_some()) && audit.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let readiness = Readiness {
        ready,
        loaded,
        failed: service.failed(),
        audit: audit.unwrap_or_else(|| "ok".to_string()),
        loading: loading.then(|| {
            let (done, total) = service.load_progress();
            format!("loading {done} of {total}")
        }),
        deployments,
    };
    (status, Json(readiness))
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    service
        .fleet
        .queue_figures(&service.chassis, &service.observers.metrics)
        .await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.observers.metrics.render(&service.chassis),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadError, TaskError};

    /// Each refusal maps as documented, the failed audit log included,
    /// which the end-to-end tests cannot bring about on demand.
    #[test]
    fn refusals_map_to_their_documented_statuses() {
        let status_of = |e: Error| ApiError::from(e).status();
        let overloaded = ApiError::from(Error::Task(TaskError::Overloaded {
            swarm_id: "s".into(),
            reason: "full".into(),
        }))
        .into_response();
        assert_eq!(overloaded.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(overloaded.headers()[header::RETRY_AFTER], "1");
        let rate = Error::Task(TaskError::RateLimited {
            swarm_id: "s".into(),
            task_id: "t".into(),
            refused: 101,
            rate: 10,
        });
        assert_eq!(status_of(rate), StatusCode::TOO_MANY_REQUESTS);
        let quarantined = Error::Task(TaskError::Quarantined {
            swarm_id: "s".into(),
            score: 0.1,
            threshold: 0.3,
            reason: "r".into(),
        });
        assert_eq!(status_of(quarantined), StatusCode::SERVICE_UNAVAILABLE);
        let audit = Error::AuditUnavailable {
            reason: "disk full".into(),
        };
        assert_eq!(status_of(audit), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            status_of(Error::Load(LoadError::AlreadyLoaded("s".into()))),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(Error::NotLoaded("s".into())),
            StatusCode::NOT_FOUND
        );
    }
}
