use super::*;
use crate::serve::queue::workers::{DeploymentState, WorkerEntry};

fn deployer() -> WorkerKey {
    WorkerKey::from_seed([3; 32])
}

fn trusted() -> DeployerKeys {
    DeployerKeys::new(vec![deployer().public()])
}

fn entry(swarm_id: &str, action: Action, bundle: Option<&str>, generation: u64) -> Deployment {
    Deployment {
        swarm_id: swarm_id.to_string(),
        action,
        bundle: bundle.map(str::to_string),
        version: bundle.map(|_| "1.0.0".to_string()),
        previous: None,
        generation,
        deployed_at_ms: 1,
        deployer: deployer().public_hex(),
    }
}

fn signed(key: &WorkerKey, kind: Signed, context: &str, body: &impl Serialize) -> Vec<u8> {
    let doc = SignedDoc::sign(key, kind, context, serde_json::to_string(body).unwrap());
    serde_json::to_vec(&doc).unwrap()
}

const BUNDLE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// An entry is believed when a trusted deployer signed it for its own
/// key; every other case is refused with its kind.
#[test]
fn an_entry_is_believed_only_when_signed_for_its_key_by_a_trusted_deployer() {
    let ok = entry("hello", Action::Deploy, Some(BUNDLE), 1);
    let value = signed(
        &deployer(),
        Signed::Deployment,
        &entry_context("hello"),
        &ok,
    );
    assert_eq!(verify_entry("hello", &value, &trusted()).unwrap(), ok);

    let kind = |key: &str, value: &[u8]| verify_entry(key, value, &trusted()).unwrap_err().kind;
    // Another key: the signature was for "hello".
    assert_eq!(kind("other", &value), RefusalKind::Signature);
    // A byte changed.
    let mut tampered = value.clone();
    let at = tampered
        .windows(7)
        .position(|w| w == b"deploy\\")
        .unwrap_or(20);
    tampered[at] ^= 1;
    assert!(matches!(
        kind("hello", &tampered),
        RefusalKind::Signature | RefusalKind::Malformed
    ));
    // A stranger's key.
    let stranger = WorkerKey::from_seed([4; 32]);
    let theirs = signed(&stranger, Signed::Deployment, &entry_context("hello"), &ok);
    assert_eq!(kind("hello", &theirs), RefusalKind::UntrustedKey);
    // A bundle's signature does not stand for an entry's.
    let bundle_sig = signed(&deployer(), Signed::Bundle, &entry_context("hello"), &ok);
    assert_eq!(kind("hello", &bundle_sig), RefusalKind::Signature);
    // Signed for its key but naming another swarm.
    let elsewhere = entry("other", Action::Deploy, Some(BUNDLE), 1);
    let value = signed(
        &deployer(),
        Signed::Deployment,
        &entry_context("hello"),
        &elsewhere,
    );
    assert_eq!(kind("hello", &value), RefusalKind::Mismatch);
    // A deploy without a bundle, an undeploy with one.
    for bad in [
        entry("hello", Action::Deploy, None, 1),
        entry("hello", Action::Undeploy, Some(BUNDLE), 1),
        entry("hello", Action::Rollback, Some("not-a-digest"), 1),
    ] {
        let value = signed(
            &deployer(),
            Signed::Deployment,
            &entry_context("hello"),
            &bad,
        );
        assert_eq!(kind("hello", &value), RefusalKind::Malformed, "{bad:?}");
    }
    // Not JSON at all; too long.
    assert_eq!(kind("hello", b"\x00\xff"), RefusalKind::Malformed);
    assert_eq!(
        kind("hello", &vec![b' '; MAX_ENTRY_BYTES + 1]),
        RefusalKind::TooLarge
    );
}

/// What a hostile entry says is escaped before it is kept or shown.
#[test]
fn a_refusal_is_bounded_and_escaped() {
    let refusal = Refusal::new(
        RefusalKind::Malformed,
        format!("\u{1b}[2J{}", "x".repeat(5000)),
    );
    assert!(refusal.reason.len() < 700, "{}", refusal.reason.len());
    assert!(!refusal.reason.contains('\u{1b}'));
}

#[test]
fn swarm_ids_that_cannot_be_keys_are_refused() {
    for ok in ["hello", "a.b", "x-1_2"] {
        assert!(valid_key(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a.", "a..b", "a b", "a*", "a>"] {
        assert!(valid_key(bad).is_err(), "{bad:?}");
    }
}

fn worker(name: &str, states: Option<Vec<DeploymentState>>) -> WorkerEntry {
    WorkerEntry {
        worker: name.to_string(),
        signer: None,
        heartbeat_seconds: 1.0,
        last_seen_ms: 0,
        swarms: Vec::new(),
        labels: Vec::new(),
        deployments: states,
    }
}

fn state(revision: u64, state: &str, serving: Option<&str>) -> DeploymentState {
    DeploymentState {
        swarm_id: "hello".to_string(),
        revision,
        generation: 1,
        serving: serving.map(str::to_string),
        state: state.to_string(),
        kind: (state == "refused").then(|| "digest".to_string()),
        reason: (state == "refused").then(|| "no".to_string()),
    }
}

/// Converged once every worker that follows deployments applied the
/// current entry, none refused it and one serves it; workers that do not
/// follow deployments are not waited for.
#[test]
fn convergence_counts_what_each_worker_did_with_the_current_entry() {
    let current = |action, bundle| Current {
        revision: 5,
        deployment: entry("hello", action, bundle, 2),
        verified: serde_json::Value::Bool(false),
    };
    let deployed = [current(Action::Deploy, Some(BUNDLE))];
    let all = |workers: &[WorkerEntry]| convergence(&deployed, workers).remove(0);

    let view = all(&[
        worker("a", Some(vec![state(5, "serving", Some(BUNDLE))])),
        worker("b", Some(vec![state(5, "not_placed", None)])),
        worker("plain", None),
    ]);
    assert!(view.converged, "{view:?}");
    assert_eq!(view.serving, ["a"]);
    assert_eq!(view.not_placed, ["b"]);

    let view = all(&[
        worker("a", Some(vec![state(5, "serving", Some(BUNDLE))])),
        worker("b", Some(vec![state(4, "serving", Some("old"))])),
        worker("c", Some(Vec::new())),
    ]);
    assert!(!view.converged);
    assert_eq!(view.pending, ["b", "c"]);

    let view = all(&[
        worker("a", Some(vec![state(5, "serving", Some(BUNDLE))])),
        worker("b", Some(vec![state(5, "refused", Some("old"))])),
    ]);
    assert!(!view.converged);
    assert_eq!(view.refused, [("b".to_string(), "digest: no".to_string())]);

    // No worker follows deployments: nothing has converged.
    let view = all(&[worker("plain", None)]);
    assert!(!view.converged && view.followers == 0, "{view:?}");

    // Placed nowhere: not converged.
    let view = all(&[worker("b", Some(vec![state(5, "not_placed", None)]))]);
    assert!(!view.converged);

    // An undeploy converges when every worker applied it.
    let undeployed = [current(Action::Undeploy, None)];
    let view = convergence(
        &undeployed,
        &[worker("a", Some(vec![state(5, "undeployed", None)]))],
    )
    .remove(0);
    assert!(view.converged, "{view:?}");
    let view = convergence(
        &undeployed,
        &[worker("a", Some(vec![state(4, "serving", Some(BUNDLE))]))],
    )
    .remove(0);
    assert!(!view.converged);
}
