//! The tools `chassis build` runs for swarms not written in Rust, at pinned
//! versions, installed on first use into a per-user tools directory
//! (`CHASSIS_TOOLS_DIR`, else the user's cache directory's `chassis/tools`):
//! componentize-py and zig (`ziglang`, for C and C++) each into a Python
//! virtual environment, componentize-js, jco, TypeScript, AssemblyScript and
//! Binaryen (`wasm-opt`) each into an npm prefix of its own.
//! Each lives in a directory named after its version, so a newer `chassis`
//! installs beside an older one's; the same layout is what `cargo xtask`
//! installs under `target/tools/`. An install that cannot happen (no
//! Python, no npm, no network) is an error naming the tool and the command
//! that installs it by hand.

use std::process::{Command, Stdio};

use super::*;

/// A pinned tool from PyPI or npm.
pub(crate) struct Tool {
    /// Its name in messages and its directory's prefix.
    pub(crate) name: &'static str,
    /// The registry's package.
    pub(crate) package: &'static str,
    /// The pinned version.
    pub(crate) version: &'static str,
    /// Where it comes from.
    pub(crate) registry: Registry,
    /// The program, relative to the tool's directory.
    pub(crate) program: &'static str,
    /// PyPI: the argument that makes the program print its version.
    pub(crate) version_arg: &'static str,
}

/// A package registry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registry {
    /// PyPI, through pip in a virtual environment.
    Pypi,
    /// npm, into a prefix.
    Npm,
}

/// componentize-py: Python source to a component.
pub(crate) const COMPONENTIZE_PY: Tool = Tool {
    name: "componentize-py",
    package: "componentize-py",
    version: "0.25.1",
    registry: Registry::Pypi,
    program: "bin/componentize-py",
    version_arg: "--version",
};

/// componentize-js: JavaScript modules to a component.
pub(crate) const COMPONENTIZE_JS: Tool = Tool {
    name: "componentize-js",
    package: "@bytecodealliance/componentize-js",
    version: "0.23.0",
    registry: Registry::Npm,
    program: "node_modules/@bytecodealliance/componentize-js/src/cli.js",
    version_arg: "",
};

/// jco: TypeScript declarations of the WIT's imports and exports.
pub(crate) const JCO: Tool = Tool {
    name: "jco",
    package: "@bytecodealliance/jco",
    version: "1.15.1",
    registry: Registry::Npm,
    program: "node_modules/@bytecodealliance/jco/src/jco.js",
    version_arg: "",
};

/// The TypeScript compiler.
pub(crate) const TYPESCRIPT: Tool = Tool {
    name: "typescript",
    package: "typescript",
    version: "5.9.3",
    registry: Registry::Npm,
    program: "node_modules/typescript/bin/tsc",
    version_arg: "",
};

/// zig (PyPI `ziglang`): clang with wasi-libc and libc++, for C and C++.
pub(crate) const ZIGLANG: Tool = Tool {
    name: "ziglang",
    package: "ziglang",
    version: "0.17.1",
    registry: Registry::Pypi,
    program: "bin/python-zig",
    version_arg: "version",
};

/// The AssemblyScript compiler.
pub(crate) const ASSEMBLYSCRIPT: Tool = Tool {
    name: "assemblyscript",
    package: "assemblyscript",
    version: "0.28.20",
    registry: Registry::Npm,
    program: "node_modules/assemblyscript/bin/asc.js",
    version_arg: "",
};

/// Binaryen, for `wasm-opt`.
pub(crate) const BINARYEN: Tool = Tool {
    name: "binaryen",
    package: "binaryen",
    version: "132.0.0",
    registry: Registry::Npm,
    program: "node_modules/binaryen/bin/wasm-opt",
    version_arg: "",
};

/// The per-user tools directory: `CHASSIS_TOOLS_DIR`, else the user's
/// cache directory's `tools`.
pub(crate) fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CHASSIS_TOOLS_DIR").filter(|v| !v.is_empty()) {
        return Ok(dir.into());
    }
    let platform = directories::ProjectDirs::from("", "", "chassis")
        .context("no tools directory: set CHASSIS_TOOLS_DIR (or HOME)")?;
    Ok(platform.cache_dir().join("tools"))
}

impl Tool {
    /// The tool's directory under `tools`.
    fn dir(&self, tools: &Path) -> PathBuf {
        tools.join(format!("{}-{}", self.name, self.version))
    }

    /// Whether the pinned version is installed in `dir`: the package's own
    /// record of its version, and the program.
    fn installed(&self, dir: &Path) -> bool {
        let program = dir.join(self.program);
        match self.registry {
            Registry::Npm => {
                let manifest = dir
                    .join("node_modules")
                    .join(self.package)
                    .join("package.json");
                program.is_file()
                    && std::fs::read_to_string(manifest)
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .is_some_and(|p| p["version"] == self.version)
            }
            Registry::Pypi => Command::new(&program)
                .arg(self.version_arg)
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains(self.version)
                }),
        }
    }

    /// The command that installs the tool by hand into `dir`.
    fn by_hand(&self, dir: &Path) -> String {
        match self.registry {
            Registry::Pypi => format!(
                "python3 -m venv {0} && {0}/bin/pip install {1}=={2}",
                dir.display(),
                self.package,
                self.version
            ),
            Registry::Npm => format!(
                "npm install --prefix {} {}@{}",
                dir.display(),
                self.package,
                self.version
            ),
        }
    }

    /// The tool's own cache (zig's compiled libraries): in its directory.
    pub(crate) fn cache_dir(&self) -> Result<PathBuf> {
        Ok(self.dir(&tools_dir()?).join("cache"))
    }

    /// The program, installed first if it is missing: the registry's own
    /// progress is shown on stderr.
    pub(crate) fn ensure(&self) -> Result<PathBuf> {
        let tools = tools_dir()?;
        let dir = self.dir(&tools);
        if self.installed(&dir) {
            return Ok(dir.join(self.program));
        }
        std::fs::create_dir_all(&tools)
            .with_context(|| format!("making the tools directory {}", tools.display()))?;
        // One install at a time (builds in parallel wait for it).
        let lock_path = tools.join(format!("{}-{}.lock", self.name, self.version));
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        if self.installed(&dir) {
            return Ok(dir.join(self.program));
        }
        let by_hand = self.by_hand(&dir);
        let from = match self.registry {
            Registry::Pypi => "PyPI",
            Registry::Npm => "npm",
        };
        eprintln!(
            "installing {} {} from {from} into {} (once: later builds reuse it)",
            self.name,
            self.version,
            dir.display()
        );
        // What an interrupted install left is not trusted.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the incomplete {}", dir.display()))?;
        }
        let result = match self.registry {
            Registry::Pypi => self.pip_install(&dir),
            Registry::Npm => self.npm_install(&dir),
        };
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            bail!(
                "{} {} could not be installed: {e:#}. To install it by hand: {by_hand} (or set CHASSIS_TOOLS_DIR to a directory that holds {}-{})",
                self.name,
                self.version,
                self.name,
                self.version
            );
        }
        if !self.installed(&dir) {
            bail!(
                "{} {} was installed into {}, but {} is not there; to install it by hand: {by_hand}",
                self.name,
                self.version,
                dir.display(),
                self.program
            );
        }
        Ok(dir.join(self.program))
    }

    fn pip_install(&self, dir: &Path) -> Result<()> {
        let python = std::env::var_os("CHASSIS_PYTHON").unwrap_or_else(|| "python3".into());
        let status = Command::new(&python)
            .args(["-m", "venv"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => bail!(
                "`{} -m venv` failed ({s}): on Debian the venv module is the python3-venv package",
                python.to_string_lossy()
            ),
            Err(e) => bail!(
                "Python 3 ({}) could not be run ({e}): install Python 3.10 or later, or set CHASSIS_PYTHON to one",
                python.to_string_lossy()
            ),
        }
        let status = Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--disable-pip-version-check",
                "--progress-bar=off",
            ])
            .arg(format!("{}=={}", self.package, self.version))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .context("running pip in the new virtual environment")?;
        if !status.success() {
            bail!("pip failed ({status}): is https://pypi.org reachable?");
        }
        Ok(())
    }

    fn npm_install(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("making {}", dir.display()))?;
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg(format!("{}@{}", self.package, self.version))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => bail!("npm failed ({s}): is https://registry.npmjs.org reachable?"),
            Err(e) => bail!(
                "npm could not be run ({e}): install Node.js 18 or later with npm (Debian: apt install nodejs npm)"
            ),
        }
    }
}

/// `node`, which runs the npm tools: a clear error when it is missing
/// (looked for once per run).
pub(crate) fn node() -> Result<Command> {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("node")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        bail!(
            "node could not be run: JavaScript and TypeScript swarms need Node.js 18 or later (Debian: apt install nodejs npm)"
        );
    }
    Ok(Command::new("node"))
}
