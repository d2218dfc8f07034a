//! `chassis report`: each swarm's SLO figures and reputation, rebuilt
//! from an audit log.

use super::*;

/// `chassis report`'s arguments.
#[derive(clap::Args)]
pub struct ReportCommand {
    /// The audit log to read.
    #[arg(long)]
    audit: PathBuf,
    /// The swarms' contracts (for their targets and reputation settings).
    #[arg(required = true)]
    contracts: Vec<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
    /// Replay the whole log from its start instead of starting from its
    /// newest checkpoint (same figures, read the long way).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    full: bool,
    /// Only the records from this one on (a record number, as `audit
    /// show` prints them): the figures of that range alone.
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Only the records up to this one (included).
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
}

impl ReportCommand {
    /// Replay the log and print each contract's report.
    pub async fn execute(self) -> Result<()> {
        let Self {
            audit,
            contracts,
            json,
            full,
            from,
            to,
        } = self;
        let contracts = contracts
            .iter()
            .map(ServiceContract::from_file)
            .collect::<Result<Vec<_>, _>>()?;
        let start = match (full, from, to) {
            (true, ..) => crate::audit::From::Start,
            (false, None, None) => crate::audit::From::Latest,
            (false, from, to) => {
                crate::audit::From::Range(from.unwrap_or(1), to.unwrap_or(u64::MAX))
            }
        };
        let (reports, restored) =
            crate::report::from_log(&audit, &contracts, start).context("audit log")?;
        let v = &restored.verified;
        let origin = match (&restored.checkpoint, start) {
            (_, crate::audit::From::Range(a, b)) => {
                format!("records {a} to {} only", b.min(v.last_seq))
            }
            (Some(head), _) => format!("the checkpoint covering record {}", head.seq),
            (None, _) => "the log's start".to_string(),
        };
        let unchecked = if v.first_seq > 1 {
            " (the records before these are not checked here: `chassis audit verify` checks the whole log)"
        } else {
            ""
        };
        eprintln!(
            "audit log: read records {} to {}: state from {origin}, then {} records replayed{unchecked}",
            v.first_seq, v.last_seq, restored.replayed
        );
        let mut all_pass = true;
        for report in &reports {
            // No tasks: nothing to pass or fail.
            all_pass &= report.slo.tasks == 0 || report.slo.compliance.iter().all(|c| c.compliant);
            all_pass &= !report.reputation.quarantined;
        }
        if json {
            json_out(&reports)?;
        } else {
            for r in &reports {
                let s = &r.slo;
                out(format_args!(
                    "{} ({} tasks, {} failed)",
                    r.swarm_id, s.tasks, s.failed
                ))?;
                if s.tasks == 0 {
                    out("  NO DATA: no tasks of this swarm in the audit log")?;
                }
                for c in s.compliance.iter().filter(|_| s.tasks > 0) {
                    let mark = if c.compliant { "PASS" } else { "FAIL" };
                    let unit = if c.metric == "response_time" {
                        " ms p95"
                    } else {
                        " %"
                    };
                    out(format_args!(
                        "  {mark} {:<13} {:>10.2}{unit} (target {})",
                        c.metric, c.actual, c.target
                    ))?;
                }
                let quarantine = match &r.reputation.quarantine_reason {
                    Some(reason) if r.reputation.quarantined => {
                        format!(", QUARANTINED: {reason}")
                    }
                    _ => String::new(),
                };
                out(format_args!(
                    "  reputation {:.2} (SLO {:.2}, security {:.2}){quarantine}",
                    r.reputation.score,
                    r.reputation.slo_compliance,
                    r.reputation.security_compliance,
                ))?;
            }
        }
        if !all_pass {
            bail!("not every swarm meets its SLO targets");
        }
        Ok(())
    }
}
