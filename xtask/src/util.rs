//! What every command shares: running cargo (the one running xtask,
//! `$CARGO`) and other programs, progress lines, the workspace's
//! `cargo metadata`, and whether a built file is newer than its inputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// The workspace's metadata from `cargo metadata` (members only), run
/// where xtask was started: the checkout the user is in, wherever it is.
pub fn metadata() -> Result<serde_json::Value> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")
}

/// The root of the workspace xtask was started in.
pub fn workspace_root() -> Result<PathBuf> {
    let meta = metadata()?;
    let root = meta["workspace_root"]
        .as_str()
        .context("cargo metadata gave no workspace_root")?;
    Ok(PathBuf::from(root))
}

/// A command running the cargo that runs xtask (`$CARGO`, else `cargo`).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Whether this runs under CI: `CI` set, and not empty, `0` or `false`.
/// Under CI nothing is skipped: what cannot run is a failure.
pub fn in_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

/// Whether a value of `CI` means CI.
fn ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Announce the next step on stderr.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Run `cmd` to the end; an error naming `what` if it cannot start or fails.
pub fn run_cmd(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Whether `out` is newer than every file under `inputs` (files or
/// directories); says so when it is.
pub fn up_to_date(root: &Path, out: &Path, inputs: &[&Path]) -> bool {
    let sources = inputs
        .iter()
        .map(|p| newest(p))
        .max()
        .unwrap_or(std::time::UNIX_EPOCH);
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    let fresh = built.is_some_and(|t| t > sources);
    if fresh {
        eprintln!(
            "    {} (up to date)",
            out.strip_prefix(root).unwrap_or(out).display()
        );
    }
    fresh
}

/// Print a built component's path and size.
pub fn report_size(root: &Path, out: &Path) -> Result<()> {
    let size = std::fs::metadata(out)?.len();
    eprintln!(
        "    {} ({} KiB)",
        out.strip_prefix(root).unwrap_or(out).display(),
        size / 1024
    );
    Ok(())
}

/// Newest modification time of `path`, or of the files under it.
fn newest(path: &Path) -> SystemTime {
    let mut latest = std::time::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(path) else {
        // A file, or nothing there.
        return std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(latest);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "__pycache__" || n == "node_modules")
            {
                continue;
            }
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        };
        latest = latest.max(time);
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::ci_value;

    #[test]
    fn ci_is_any_value_but_empty_0_or_false() {
        for yes in ["true", "1", "yes", "TRUE"] {
            assert!(ci_value(Some(yes)), "{yes}");
        }
        for no in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!ci_value(no), "{no:?}");
        }
    }
}
