//! `guardian-council`: governance tasks.
//!
//! - `guardian_vote` `{"session", "proposal", "voting_period"}` →
//!   `{"vote", "guardian_id", "proposal", "session", "reasons", "signature"}`.
//!   The vote is signed on the host with the scoped `guardian_signing_key`
//!   (`signature` and `public_key` are `ed25519:<hex>`, over `signed_message`);
//!   the private key never enters the component. When the host refuses to
//!   sign, the vote is returned with `signature: null` and the refusal in
//!   `signature_error`.
//! - `quality_assessment` `{"tests_passed", "tests_total", "coverage_percent",
//!   "open_issues"}` → `{"quality_score", "assessment", "reviewer"}`.

use chassis_sdk::credentials;
use chassis_sdk::{Request, Swarm, TaskError, Value, export_swarm, info, json, warn};
use serde::Deserialize;

/// The id this guardian votes as.
pub const GUARDIAN_ID: &str = "guardian-3";

/// The scoped credential votes are signed with.
pub const SIGNING_KEY: &str = "guardian_signing_key";

/// The swarm.
pub struct GuardianCouncil;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    session: String,
    proposal: String,
    #[serde(default = "default_period")]
    voting_period: u64,
}

fn default_period() -> u64 {
    3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quality {
    tests_passed: u64,
    tests_total: u64,
    #[serde(default)]
    coverage_percent: f64,
    #[serde(default)]
    open_issues: u64,
}

/// Words that make this guardian reject a proposal.
const RED_FLAGS: &[&str] = &["disable audit", "bypass", "skip review", "unrestricted"];

/// Decide a vote and the reasons for it.
pub fn decide(proposal: &str, voting_period: u64) -> (&'static str, Vec<String>) {
    let lower = proposal.to_lowercase();
    let mut reasons = Vec::new();
    if proposal.trim().is_empty() {
        reasons.push("the proposal is empty".to_string());
        return ("abstain", reasons);
    }
    if voting_period < 60 {
        reasons.push(format!(
            "voting period of {voting_period} s is under one minute"
        ));
        return ("abstain", reasons);
    }
    for flag in RED_FLAGS {
        if lower.contains(flag) {
            reasons.push(format!("the proposal asks to {flag}"));
        }
    }
    if reasons.is_empty() {
        reasons.push("no red flags found".to_string());
        ("approve", reasons)
    } else {
        ("reject", reasons)
    }
}

/// The bytes that are signed for a vote.
pub fn signed_message(session: &str, proposal: &str, vote: &str) -> String {
    format!("{GUARDIAN_ID}|{session}|{proposal}|{vote}")
}

/// Score and assessment from test and coverage figures.
pub fn assess(q: &QualityInput) -> (f64, &'static str) {
    let pass_rate = if q.tests_total == 0 {
        0.0
    } else {
        q.tests_passed.min(q.tests_total) as f64 / q.tests_total as f64
    };
    let coverage = (q.coverage_percent / 100.0).clamp(0.0, 1.0);
    let issue_penalty = (q.open_issues as f64 * 0.02).min(0.3);
    let score = ((0.7 * pass_rate + 0.3 * coverage) - issue_penalty).clamp(0.0, 1.0);
    let score = (score * 100.0).round() / 100.0;
    let assessment = if score >= 0.9 {
        "Production-ready"
    } else if score >= 0.7 {
        "Needs work"
    } else {
        "Not ready"
    };
    (score, assessment)
}

/// Inputs of a quality assessment.
pub struct QualityInput {
    /// Passing tests.
    pub tests_passed: u64,
    /// All tests.
    pub tests_total: u64,
    /// Line coverage, percent.
    pub coverage_percent: f64,
    /// Open issues.
    pub open_issues: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Swarm for GuardianCouncil {
    const TASK_TYPES: &'static [&'static str] = &["guardian_vote", "quality_assessment"];

    fn execute(request: &Request) -> Result<Value, TaskError> {
        match request.task_type() {
            "guardian_vote" => {
                let v: Vote = request.payload()?;
                let (vote, reasons) = decide(&v.proposal, v.voting_period);
                info!("session {}: {vote} on {:?}", v.session, v.proposal);
                let message = signed_message(&v.session, &v.proposal, vote);
                let signed = credentials::sign(SIGNING_KEY, message.as_bytes())
                    .and_then(|sig| Ok((sig, credentials::public_key(SIGNING_KEY)?)));
                let (signature, public_key, signature_error) = match signed {
                    Ok((sig, key)) => (
                        Some(format!("ed25519:{}", hex(&sig))),
                        Some(format!("ed25519:{}", hex(&key))),
                        None,
                    ),
                    Err(e) => {
                        let why = e.to_string();
                        warn!("vote left unsigned: {why}");
                        (None, None, Some(why))
                    }
                };
                let mut out = json!({
                    "vote": vote,
                    "guardian_id": GUARDIAN_ID,
                    "session": v.session,
                    "proposal": v.proposal,
                    "reasons": reasons,
                    "signed_message": message,
                    "signature": signature,
                    "public_key": public_key,
                });
                if let Some(why) = signature_error {
                    out["signature_error"] = json!(why);
                }
                Ok(out)
            }
            "quality_assessment" => {
                let q: Quality = request.payload()?;
                if q.tests_passed > q.tests_total {
                    return Err(TaskError::invalid_payload(format!(
                        "tests_passed ({}) is more than tests_total ({})",
                        q.tests_passed, q.tests_total
                    )));
                }
                let (score, assessment) = assess(&QualityInput {
                    tests_passed: q.tests_passed,
                    tests_total: q.tests_total,
                    coverage_percent: q.coverage_percent,
                    open_issues: q.open_issues,
                });
                Ok(json!({
                    "quality_score": score,
                    "assessment": assessment,
                    "reviewer": "guardian-council",
                }))
            }
            other => Err(TaskError::UnknownTaskType(other.to_string())),
        }
    }
}

export_swarm!(GuardianCouncil);
