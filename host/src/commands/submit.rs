//! `chassis submit`: tasks put on the NATS queue, and (with `--wait`)
//! their results printed.

use super::*;

/// `chassis submit`'s arguments.
#[derive(clap::Args)]
pub struct SubmitCommand {
    /// The NATS server (several comma-separated).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The swarm the tasks are for.
    #[arg(
        long,
        required_unless_present = "capability",
        conflicts_with = "capability"
    )]
    swarm: Option<String>,
    /// Address the tasks to a capability (e.g. demo:hello) instead: each
    /// goes to a swarm chosen from the live workers' heartbeats among those
    /// that declare it, serve the task type and can run it now, weighted by
    /// reputation (docs/governor.md).
    #[arg(long, value_name = "CAPABILITY")]
    capability: Option<String>,
    /// With --capability: the seed of the choices (the same seed and the
    /// same fleet make the same choices).
    #[arg(long, requires = "capability")]
    seed: Option<u64>,
    /// Task type (for one task).
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    task: Option<String>,
    /// Task payload as JSON (for one task).
    #[arg(long, default_value = "{}")]
    payload: String,
    /// The task's id (for one task; generated if not given).
    #[arg(long)]
    task_id: Option<String>,
    /// Tasks from a JSON-lines file (`-` for stdin): one
    /// `{"task_type", "payload", "task_id"?}` per line.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Wait for each result and print it.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait for each result with --wait.
    #[arg(long, default_value_t = 60.0, requires = "wait")]
    timeout: f64,
    /// Submit even when no live worker serves the swarm (one about to
    /// be started or deployed); by default that is refused at once.
    #[arg(long)]
    allow_unserved: bool,
    #[command(flatten)]
    auth: NatsAuthArgs,
    #[command(flatten)]
    trust: TrustArgs,
}

impl SubmitCommand {
    /// Submit the tasks.
    pub async fn execute(self) -> Result<()> {
        let Self {
            nats,
            swarm,
            capability,
            seed,
            task,
            payload,
            task_id,
            file,
            wait,
            timeout,
            allow_unserved,
            auth,
            trust,
        } = self;
        let tasks = match (task, file) {
            (Some(task), _) => {
                let payload =
                    crate::Payload::from_text(payload).context("--payload is not valid JSON")?;
                let mut request = TaskRequest::with_payload(task, payload);
                if let Some(id) = task_id {
                    request = request.with_id(id);
                }
                vec![request]
            }
            (None, Some(file)) => tasks_from_lines(&file)?,
            (None, None) => bail!("give --task (one task) or --file (tasks, one per line)"),
        };
        // Refused before anything is put on the queue.
        let trust = if wait { Some(trust.trust()?) } else { None };
        let target = match (&swarm, &capability) {
            (Some(swarm), _) => Target::Swarm(swarm),
            (None, Some(capability)) => {
                Target::Capability(capability, crate::governor::Draws::new(seed))
            }
            (None, None) => bail!("give --swarm or --capability"),
        };
        submit(
            &nats,
            &auth.auth()?,
            target,
            tasks,
            wait.then(|| std::time::Duration::from_secs_f64(timeout)),
            trust,
            allow_unserved,
        )
        .await
    }
}

/// Read tasks from a JSON-lines file (`-`: stdin), one
/// `{"task_type", "payload", "task_id"?}` per line; blank lines are skipped.
fn tasks_from_lines(file: &std::path::Path) -> Result<Vec<TaskRequest>> {
    let text = if file.as_os_str() == "-" {
        let bytes = crate::files::read_limited(std::io::stdin(), MAX_PAYLOAD_BYTES)
            .context("reading tasks from stdin")?;
        String::from_utf8(bytes).context("the tasks on stdin are not UTF-8")?
    } else {
        crate::files::read_bounded_text(file, MAX_PAYLOAD_BYTES)
            .with_context(|| format!("{}: cannot read tasks", file.display()))?
    };
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: crate::TaskInput = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a task ({})",
                file.display(),
                n + 1,
                crate::TaskInput::SHAPE
            )
        })?;
        tasks.push(line.into_request());
    }
    Ok(tasks)
}

/// Where the tasks go.
enum Target<'a> {
    /// To this swarm.
    Swarm(&'a str),
    /// To a swarm chosen for this capability, task by task.
    Capability(&'a str, crate::governor::Draws),
}

/// Submit `tasks` to `target`; print each id (and the swarm chosen), or
/// with `wait` each result, as a JSON line.
async fn submit(
    url: &str,
    auth: &crate::serve::config::NatsAuth,
    target: Target<'_>,
    tasks: Vec<TaskRequest>,
    wait: Option<std::time::Duration>,
    trust: Option<crate::serve::queue::trust::Trust>,
    allow_unserved: bool,
) -> Result<()> {
    use crate::serve::queue::{Queue, ResultStatus};
    let mut queue = Queue::open_as(url, auth).await?;
    if let Some(trust) = trust {
        queue = queue.trusting(trust);
    }
    if let Target::Swarm(swarm) = target
        && !allow_unserved
    {
        let serving = queue
            .serving(swarm)
            .await
            .context("reading the workers' heartbeats")?;
        if serving.is_empty() {
            let now = crate::serve::queue::workers::now_ms();
            let live: Vec<String> = queue
                .workers()
                .await?
                .into_iter()
                .filter(|w| w.live_at(now))
                .map(|w| {
                    let swarms: Vec<&str> = w.swarms.iter().map(|s| s.swarm_id.as_str()).collect();
                    format!("{} ({})", w.worker, swarms.join(", "))
                })
                .collect();
            let live = if live.is_empty() {
                "no worker is live".to_string()
            } else {
                format!("live workers: {}", live.join("; "))
            };
            bail!(
                "no live worker serves swarm {:?} ({live}); nothing was submitted. Give --allow-unserved to queue it for a worker yet to come (`chassis fleet` lists them)",
                crate::text::escape(swarm, 256)
            );
        }
    }
    let mut ids = Vec::with_capacity(tasks.len());
    for request in tasks {
        let (swarm, capability) = match &target {
            Target::Swarm(swarm) => (swarm.to_string(), None),
            Target::Capability(capability, draws) => {
                let swarm = queue
                    .route(capability, &request.task_type, draws.next())
                    .await?;
                (swarm, Some(*capability))
            }
        };
        let id = queue
            .submit(&swarm, request)
            .await
            .context("submitting a task")?;
        if wait.is_none() {
            let mut line = serde_json::json!({ "task_id": id, "swarm_id": swarm });
            if let Some(capability) = capability {
                line["capability"] = capability.into();
            }
            json_line(&line)?;
        }
        ids.push(id);
    }
    let Some(timeout) = wait else {
        return Ok(());
    };
    let mut all_succeeded = true;
    for id in ids {
        let result = queue.wait(&id, timeout).await?;
        all_succeeded &= result.status == ResultStatus::Success;
        json_line(&result)?;
    }
    if !all_succeeded {
        bail!("not every task succeeded");
    }
    Ok(())
}
