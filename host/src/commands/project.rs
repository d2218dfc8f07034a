//! A swarm's project directory, as `chassis new` makes it and `chassis
//! build`, `test` and `run` read it: the language's project file, the
//! contract `NAME.toml` (NAME the project's name) and the test file
//! `tests.toml`. Building runs the language's own tools; the component is
//! then loaded under the contract in a host of its own, as any load is
//! checked.

use std::process::{Command, Stdio};

use super::*;

/// The languages of a swarm project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `chassis-sdk` crate.
    Rust,
}

/// A swarm project.
pub(crate) struct Project {
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// Its language, from its project file.
    pub(crate) lang: Lang,
    /// Its name: the project file's, and the contract's file name.
    pub(crate) name: String,
    /// Its contract, `NAME.toml`.
    pub(crate) contract: PathBuf,
}

/// A component built from a project, and what its load under the contract
/// said.
pub(crate) struct Built {
    /// The component file.
    pub(crate) wasm: PathBuf,
    /// The contract, as parsed.
    pub(crate) contract: ServiceContract,
    /// A host with the swarm loaded.
    pub(crate) chassis: Chassis,
    /// What the load found.
    pub(crate) info: crate::SwarmInfo,
}

impl Project {
    /// The project in `dir`: a `Cargo.toml` (Rust) naming a package, and
    /// its contract beside it.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            bail!(
                "{}: not a swarm project (no Cargo.toml); make one with `chassis new NAME`",
                dir.display()
            );
        }
        let text = crate::files::read_bounded_text(&manifest, 1024 * 1024)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
        let name = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: no [package] name", manifest.display()))?
            .to_string();
        let contract = dir.join(format!("{name}.toml"));
        if !contract.is_file() {
            bail!(
                "{}: no contract {name}.toml beside {}: a swarm project's contract is named after it",
                dir.display(),
                manifest.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            lang: Lang::Rust,
            name,
            contract,
        })
    }

    /// Build the component with the language's tools, their messages shown
    /// as they print them; its path.
    pub(crate) fn compile(&self) -> Result<PathBuf> {
        match self.lang {
            Lang::Rust => self.cargo_build(),
        }
    }

    /// `cargo build --release --target wasm32-wasip2`; the cdylib's `.wasm`.
    fn cargo_build(&self) -> Result<PathBuf> {
        check_rust_target()?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "building {} (cargo build --release --target {WASM_TARGET})",
            self.name
        );
        let out = Command::new(&cargo)
            .args(["build", "--release", "--target", WASM_TARGET])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
        if !out.status.success() {
            bail!(
                "cargo build failed ({}): its messages are above",
                out.status
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter(|m| {
                m["target"]["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
            .flat_map(|m| {
                m["filenames"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|f| f.as_str().map(PathBuf::from))
            })
            .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
            .with_context(|| {
                format!(
                    "cargo built no .wasm: is {} a `crate-type = [\"cdylib\"]` library?",
                    self.dir.join("Cargo.toml").display()
                )
            })
    }

    /// Build, then load the component under the contract in a host of its
    /// own: refused as a load would be (not a component, no task export,
    /// an import the contract does not grant, bad task types).
    pub(crate) async fn build(&self, global: &Global) -> Result<Built> {
        let wasm = self.compile()?;
        let contract = ServiceContract::from_file(&self.contract)?;
        if let Some(module) = &contract.wasm_module {
            let declared = self
                .contract
                .parent()
                .unwrap_or(Path::new("."))
                .join(module);
            if declared.canonicalize().ok() != wasm.canonicalize().ok() {
                eprintln!(
                    "warning: {} names wasm_module {}, but the component built is {}",
                    self.contract.display(),
                    declared.display(),
                    wasm.display()
                );
            }
        }
        let bytes = crate::files::read_bounded(&wasm, global.max_component_bytes)
            .with_context(|| format!("reading {}", wasm.display()))?;
        let chassis = host_for(
            &contract,
            global.max_component_bytes,
            crate::EventSinks::default(),
            None,
            (false, None),
            None,
        )?;
        let info = chassis
            .load_bytes(&bytes, contract.clone())
            .await
            .with_context(|| {
                format!(
                    "{} does not load under {}",
                    wasm.display(),
                    self.contract.display()
                )
            })?;
        Ok(Built {
            wasm,
            contract,
            chassis,
            info,
        })
    }
}

/// The target swarms are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Where rustup manages the toolchain, that it has the wasm target: a
/// missing one is named with the command that adds it.
fn check_rust_target() -> Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    if out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == WASM_TARGET)
    {
        bail!(
            "the Rust target {WASM_TARGET} is not installed: run `rustup target add {WASM_TARGET}`"
        );
    }
    Ok(())
}

/// What `chassis serve` serves for a path it is given: a swarm project's
/// contract for the project's directory (one with a `Cargo.toml`); any
/// other path as it is (a contract file, or a directory of contracts).
pub(crate) fn served(path: PathBuf) -> Result<PathBuf> {
    if path.is_dir() && path.join("Cargo.toml").is_file() {
        return Ok(Project::open(&path)?.contract);
    }
    Ok(path)
}

/// The contract a command was pointed at: a contract file, or a swarm
/// project's directory (its `NAME.toml`).
pub(crate) fn contract_of(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        Ok(Project::open(path)?.contract)
    } else {
        Ok(path.to_path_buf())
    }
}
