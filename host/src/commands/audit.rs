//! `chassis audit verify | show`: the hash chain checked (against a head
//! kept elsewhere, or the NATS mirror's), and records read back.

use super::*;

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: prints "OK: N records" and the chain head
    /// (SEQ:HASH of the last record), or the first bad record and why, and
    /// exits with 1. Cutting records off the end leaves a valid chain: keep
    /// the printed head elsewhere and pass it to --expect-head to detect that.
    Verify {
        /// The audit log: its directory of segments (or an older single-file log).
        file: PathBuf,
        /// A head printed by an earlier verify (SEQ:HASH): the log must still
        /// hold that record with that hash.
        #[arg(long, value_name = "SEQ:HASH", conflicts_with = "nats")]
        expect_head: Option<crate::audit::Head>,
        /// Take the expected head from the audit mirror of a task queue: the
        /// last record of --worker that NATS holds (docs/scale-out.md).
        #[arg(long, value_name = "URL", requires = "worker")]
        nats: Option<String>,
        /// The worker whose mirrored head to check against (with --nats).
        #[arg(long, requires = "nats")]
        worker: Option<String>,
        #[command(flatten)]
        auth: NatsAuthArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Print records (JSON lines), filtered.
    Show {
        /// The audit log: its directory of segments (or an older single-file log).
        file: PathBuf,
        /// Only this swarm.
        #[arg(long)]
        swarm: Option<String>,
        /// Only operations containing this text (e.g. task_failed, credential, http_proxy).
        #[arg(long)]
        operation: Option<String>,
        /// Only records at or after this time (RFC 3339 UTC, e.g. 2026-11-21T12:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only records before this time (RFC 3339 UTC).
        #[arg(long)]
        until: Option<String>,
    },
}

impl AuditCommand {
    /// Verify the chain, or print the records asked for.
    pub async fn execute(self) -> Result<()> {
        match self {
            AuditCommand::Verify {
                file,
                mut expect_head,
                nats,
                worker,
                auth,
                trust,
            } => {
                if let (Some(url), Some(worker)) = (nats, worker) {
                    let trust = trust.trust()?;
                    let queue = crate::serve::queue::Queue::open_as(&url, &auth.auth()?).await?;
                    let check =
                        crate::serve::queue::mirror::verify_mirror(&queue, &worker, &trust).await?;
                    let head = check.head.with_context(|| {
                        format!("the audit mirror holds no record of worker {worker:?}")
                    })?;
                    let signed = if matches!(trust, crate::serve::queue::trust::Trust::Workers(_)) {
                        "each signed by a trusted worker key"
                    } else {
                        "signatures not checked (--insecure-unsigned)"
                    };
                    out(format_args!(
                        "mirror: {} records of worker {worker:?}, {signed}",
                        check.records
                    ))?;
                    expect_head = Some(head);
                } else if auth.given() || !trust.worker_key.is_empty() || trust.insecure_unsigned {
                    bail!("NATS credentials and worker keys go with --nats URL --worker ID");
                }
                let v = match &expect_head {
                    Some(head) => crate::audit::verify_against(&file, head)?,
                    None => crate::audit::verify(&file)?,
                };
                let partial = if v.partial_tail_bytes > 0 {
                    format!(
                        " ({} bytes of a partial last record ignored)",
                        v.partial_tail_bytes
                    )
                } else {
                    String::new()
                };
                let segments = if v.segments > 1 {
                    format!(" in {} segments", v.segments)
                } else {
                    String::new()
                };
                let from = match &v.anchor {
                    Some(anchor) => format!(
                        ", records {} to {}, from the checkpoint covering record {} (older segments removed by retention)",
                        v.first_seq, v.last_seq, anchor.seq
                    ),
                    None => String::new(),
                };
                out(format_args!(
                    "OK: {} records{segments}{from}{partial}",
                    v.records
                ))?;
                let held = match (&expect_head, &v.anchor) {
                    (Some(head), Some(anchor)) if head.seq < anchor.seq => {
                        " (the expected head is older than the log's first record: covered by its first checkpoint, not checked by hash)"
                    }
                    (Some(_), _) => " (holds the expected head)",
                    (None, _) => "",
                };
                out(format_args!("head: {}{held}", v.head()))
            }
            AuditCommand::Show {
                file,
                swarm,
                operation,
                since,
                until,
            } => {
                let time = |flag: &str, value: Option<String>| -> Result<Option<i64>> {
                    value
                        .map(|v| {
                            crate::audit::parse_rfc3339(&v).with_context(|| {
                        format!(
                            "--{flag} {v:?}: expected RFC 3339 UTC like 2026-11-21T12:00:00Z"
                        )
                    })
                        })
                        .transpose()
                };
                let filter = crate::audit::Filter {
                    swarm_id: swarm,
                    operation,
                    since_micros: time("since", since)?,
                    until_micros: time("until", until)?,
                };
                let mut written = Ok(());
                crate::audit::for_each(&file, &filter, |record| {
                    if written.is_ok() {
                        written = out(crate::text::json_for_terminal(&record.to_string()));
                    }
                })
                .context("audit log")?;
                written
            }
        }
    }
}
