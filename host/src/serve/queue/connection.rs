//! The connection to NATS and what it answers: connecting (named, signed
//! in, pinging every [`PING_INTERVAL`] so that a frozen server is left for
//! another of its cluster), which failed publishes are made again with the
//! same message id ([`publish_again`]), and which answers to the setting
//! up of the streams and buckets mean a JetStream not ready yet
//! ([`QueueError::Unavailable`], which a starting worker waits out).

use std::time::Duration;

use super::{QueueError, trust};

/// How often a connection pings its server. Two pings unanswered and the
/// next one due (about 12 s of silence) mean a server that is gone or
/// frozen while its socket stays open: the client then connects to
/// another of the cluster's servers instead of waiting on it (the NATS
/// default, 60 s, would hold a worker for minutes).
pub const PING_INTERVAL: Duration = Duration::from_secs(4);

/// A NATS connection to `url` (several comma-separated), signed in with
/// `auth` and named `name`; a failure names the URL without its user and
/// password.
pub(crate) async fn connect(
    url: &str,
    auth: &trust::NatsAuth,
    name: &str,
) -> Result<async_nats::Client, QueueError> {
    auth.options()?
        .name(name)
        .ping_interval(PING_INTERVAL)
        .connect(
            url.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect::<Vec<_>>(),
        )
        .await
        .map_err(|e| QueueError::Connect {
            url: redacted(url),
            reason: e.to_string(),
        })
}

/// `url` (several comma-separated) without the user and password it may
/// carry, for messages.
pub(crate) fn redacted(url: &str) -> String {
    url.split(',')
        .map(str::trim)
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &u[..scheme], &u[at + 1..])
            }
            (None, Some(at)) => format!("***@{}", &u[at + 1..]),
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a publish that failed with `e` is worth making again with the
/// same message id (the stream keeps one copy of it): its acknowledgement
/// did not come in time, the connection broke before it did, no stream
/// answered (on a cluster, while the stream's leader is elected anew), or
/// the stream is still storing an earlier copy ("duplicate message id is
/// in process").
pub(crate) fn publish_again(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::PublishErrorKind;
    use std::error::Error as _;
    match e.kind() {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::StreamNotFound => true,
        PublishErrorKind::Other => e
            .source()
            .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|error| {
                error.error_code() == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT
            }),
        _ => false,
    }
}

impl QueueError {
    /// A stream's making failed: [`QueueError::Unavailable`] when
    /// JetStream did not answer in time, is not there yet, or says its
    /// cluster has no leader or too few peers yet.
    pub(crate) fn making_stream(e: async_nats::jetstream::context::CreateStreamError) -> Self {
        if not_ready(&e) {
            QueueError::Unavailable(e.to_string())
        } else {
            QueueError::js(e)
        }
    }

    /// A bucket's making failed: the same, for a key-value bucket (whose
    /// error carries the stream's or the account's underneath).
    pub(crate) fn making_bucket(e: async_nats::jetstream::context::CreateKeyValueError) -> Self {
        use async_nats::jetstream::context::CreateKeyValueErrorKind;
        if e.kind() == CreateKeyValueErrorKind::TimedOut || not_ready(&e) {
            QueueError::Unavailable(e.to_string())
        } else {
            QueueError::js(e)
        }
    }
}

/// Whether `e`, or an error under it, says JetStream is not ready yet: a
/// request that timed out, JetStream not there yet, or an answer that its
/// cluster has no leader or too few peers yet.
fn not_ready(e: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::{
        AccountError, AccountErrorKind, CreateStreamError, CreateStreamErrorKind,
    };
    let leaderless = |error: &async_nats::jetstream::Error| {
        [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::CLUSTER_NO_PEERS,
        ]
        .contains(&error.error_code())
    };
    let mut next = Some(e);
    while let Some(error) = next {
        if let Some(e) = error.downcast_ref::<CreateStreamError>() {
            match e.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    return true;
                }
                CreateStreamErrorKind::JetStream(answer) if leaderless(&answer) => return true,
                _ => {}
            }
        }
        if let Some(e) = error.downcast_ref::<AccountError>() {
            match e.kind() {
                AccountErrorKind::TimedOut | AccountErrorKind::JetStreamUnavailable => return true,
                AccountErrorKind::JetStream(answer) if leaderless(&answer) => return true,
                _ => {}
            }
        }
        if let Some(answer) = error.downcast_ref::<async_nats::jetstream::Error>()
            && leaderless(answer)
        {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publish is sent again for what a leader election or a slow
    /// store causes, and for nothing that says the message was refused.
    #[test]
    fn a_publish_is_sent_again_only_for_what_passes() {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind};
        let answer = |code: u16, err_code: u32| {
            let error: async_nats::jetstream::Error = serde_json::from_value(
                serde_json::json!({ "code": code, "err_code": err_code, "description": "x" }),
            )
            .unwrap();
            PublishError::with_source(PublishErrorKind::Other, error)
        };
        for kind in [
            PublishErrorKind::TimedOut,
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::StreamNotFound,
        ] {
            assert!(publish_again(&PublishError::new(kind)), "{kind:?}");
        }
        // "duplicate message id is in process": the first copy is on its way.
        assert!(publish_again(&answer(409, 10158)));
        for refused in [
            PublishError::new(PublishErrorKind::WrongLastSequence),
            PublishError::new(PublishErrorKind::MaxPayloadExceeded),
            PublishError::new(PublishErrorKind::Other),
            answer(400, 10071),
            answer(503, 10077),
        ] {
            assert!(!publish_again(&refused), "{refused}");
        }
    }

    /// A worker's setting up is tried again for what a cluster that is
    /// starting answers, however deep in the error, and for nothing else.
    #[test]
    fn setting_up_waits_only_for_a_jetstream_not_ready_yet() {
        use async_nats::jetstream::context::{
            AccountError, AccountErrorKind, CreateKeyValueError, CreateKeyValueErrorKind,
            CreateStreamError, CreateStreamErrorKind,
        };
        let answer = |code: u16, err_code: u32| -> async_nats::jetstream::Error {
            serde_json::from_value(
                serde_json::json!({ "code": code, "err_code": err_code, "description": "x" }),
            )
            .unwrap()
        };
        let waits = |e: QueueError| matches!(e, QueueError::Unavailable(_));
        let stream = |kind| QueueError::making_stream(CreateStreamError::new(kind));
        assert!(waits(stream(CreateStreamErrorKind::TimedOut)));
        assert!(waits(stream(CreateStreamErrorKind::JetStreamUnavailable)));
        // No leader yet; too few peers for three replicas yet.
        assert!(waits(stream(CreateStreamErrorKind::JetStream(answer(
            503, 10008
        )))));
        assert!(waits(stream(CreateStreamErrorKind::JetStream(answer(
            500, 10005
        )))));
        // A stream of that name with another configuration: no waiting.
        assert!(!waits(stream(CreateStreamErrorKind::JetStream(answer(
            400, 10058
        )))));
        assert!(!waits(stream(CreateStreamErrorKind::InvalidStreamName)));
        // A bucket's error carries the stream's or the account's.
        let bucket = |source: Box<dyn std::error::Error + Send + Sync>| {
            QueueError::making_bucket(CreateKeyValueError::with_source(
                CreateKeyValueErrorKind::JetStream,
                source,
            ))
        };
        assert!(waits(bucket(Box::new(CreateStreamError::new(
            CreateStreamErrorKind::TimedOut
        )))));
        assert!(waits(bucket(Box::new(AccountError::new(
            AccountErrorKind::TimedOut
        )))));
        assert!(waits(bucket(Box::new(CreateStreamError::new(
            CreateStreamErrorKind::JetStream(answer(503, 10008))
        )))));
        assert!(!waits(bucket(Box::new(CreateStreamError::new(
            CreateStreamErrorKind::JetStream(answer(400, 10058))
        )))));
        assert!(!waits(QueueError::making_bucket(CreateKeyValueError::new(
            CreateKeyValueErrorKind::InvalidStoreName
        ))));
    }

    /// A server URL in a message keeps no user or password.
    #[test]
    fn urls_in_messages_hold_no_credentials() {
        assert_eq!(
            redacted("nats://user:pass@host:4222, tls://token@b:4222,nats://c:1"),
            "nats://***@host:4222,tls://***@b:4222,nats://c:1"
        );
    }
}
