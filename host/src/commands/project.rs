//! A swarm's project directory, as `chassis new` makes it and `chassis
//! build`, `test` and `run` read it: the language's project file, the
//! contract `NAME.toml` (NAME the project's name) and the test file
//! `tests.toml`. Building runs the language's own tools; the component is
//! then loaded under the contract in a host of its own, as any load is
//! checked.

use std::process::{Command, Stdio};

use super::script::{self, Script};
use super::*;

/// The languages of a swarm project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `chassis-sdk` crate.
    Rust,
    /// Python, with componentize-py and `chassis_swarm`.
    #[value(alias = "py")]
    Python,
    /// JavaScript, with componentize-js and `chassis-swarm.js`.
    #[value(alias = "js")]
    Javascript,
    /// TypeScript, type-checked with `tsc`, then as JavaScript.
    #[value(alias = "ts")]
    Typescript,
    /// C, with zig's clang, wasi-libc and the C bindings of the WIT.
    C,
    /// C++, as C, with libc++ (no exceptions).
    #[value(alias = "c++", alias = "cxx")]
    Cpp,
    /// AssemblyScript, with `asc` and the SDK's canonical-ABI glue.
    #[value(alias = "as")]
    Assemblyscript,
}

impl Lang {
    /// The language's name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Javascript => "JavaScript",
            Lang::Typescript => "TypeScript",
            Lang::C => "C",
            Lang::Cpp => "C++",
            Lang::Assemblyscript => "AssemblyScript",
        }
    }
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
    /// Every language but Rust: the world and entry module.
    script: Option<Script>,
    /// Whether builds run `wasm-opt` (the project file's `optimize`).
    pub(crate) optimize: bool,
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

/// The project files, in the order a directory is recognized by.
const PROJECT_FILES: &[&str] = &[
    "Cargo.toml",
    "pyproject.toml",
    "package.json",
    "chassis.toml",
];

/// A C or C++ project's `chassis.toml`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeManifest {
    swarm: NativeSwarm,
}

/// `chassis.toml`'s `[swarm]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeSwarm {
    name: String,
    language: String,
    #[serde(default = "logging_swarm")]
    world: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    optimize: bool,
}

fn logging_swarm() -> String {
    "logging-swarm".to_string()
}

/// The boolean `key` of a manifest's chassis section (as JSON), false
/// where it is absent.
fn chassis_flag(
    table: Option<&serde_json::Value>,
    key: &str,
    manifest: &Path,
    section: &str,
) -> Result<bool> {
    match table.and_then(|t| t.get(key)) {
        None => Ok(false),
        Some(v) => v.as_bool().with_context(|| {
            format!(
                "{}: {section}{key} is not true or false",
                manifest.display()
            )
        }),
    }
}

/// Largest project file read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The string `key` of a manifest's chassis section (as JSON), or
/// `default` where it is absent; `section` names the section in the error.
fn chassis_field(
    table: &serde_json::Value,
    key: &str,
    default: &str,
    manifest: &Path,
    section: &str,
) -> Result<String> {
    match table.get(key) {
        None => Ok(default.to_string()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: {section}{key} is not a string", manifest.display())),
    }
}

/// Whether `dir` holds a swarm project's file.
pub(crate) fn is_project(dir: &Path) -> bool {
    dir.is_dir() && PROJECT_FILES.iter().any(|f| dir.join(f).is_file())
}

impl Project {
    /// The project in `dir`: a `Cargo.toml` (Rust), `pyproject.toml`
    /// (Python) or `package.json` (JavaScript, or TypeScript when its entry
    /// is a `.ts` file) naming it, and its contract beside it.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let Some(file) = PROJECT_FILES.iter().find(|f| dir.join(f).is_file()) else {
            bail!(
                "{}: not a swarm project (no {}); make one with `chassis new NAME`",
                dir.display(),
                PROJECT_FILES.join(", ")
            );
        };
        let manifest = dir.join(file);
        let text = crate::files::read_bounded_text(&manifest, MAX_MANIFEST_BYTES)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let (lang, name, script, optimize) = match *file {
            "Cargo.toml" => {
                let table: toml::Table =
                    toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
                let name = table
                    .get("package")
                    .and_then(|p| p.get("name"))
                    .and_then(|n| n.as_str())
                    .with_context(|| format!("{}: no [package] name", manifest.display()))?;
                let chassis = table
                    .get("package")
                    .and_then(|p| p.get("metadata"))
                    .and_then(|m| m.get("chassis"))
                    .map(serde_json::to_value)
                    .transpose()?;
                let optimize = chassis_flag(
                    chassis.as_ref(),
                    "optimize",
                    &manifest,
                    "[package.metadata.chassis] ",
                )?;
                (Lang::Rust, name.to_string(), None, optimize)
            }
            "pyproject.toml" => {
                let table: toml::Table =
                    toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
                let name = table
                    .get("project")
                    .and_then(|p| p.get("name"))
                    .and_then(|n| n.as_str())
                    .with_context(|| format!("{}: no [project] name", manifest.display()))?;
                let chassis = table
                    .get("tool")
                    .and_then(|t| t.get("chassis"))
                    .with_context(|| {
                        format!(
                            "{}: no [tool.chassis] table (world = \"logging-swarm\", module = \"app\")",
                            manifest.display()
                        )
                    })?;
                let chassis = serde_json::to_value(chassis)?;
                let field = |key, default| {
                    chassis_field(&chassis, key, default, &manifest, "[tool.chassis] ")
                };
                let script = Script {
                    world: field("world", "logging-swarm")?,
                    entry: field("module", "app")?,
                    flags: Vec::new(),
                };
                let optimize =
                    chassis_flag(Some(&chassis), "optimize", &manifest, "[tool.chassis] ")?;
                (Lang::Python, name.to_string(), Some(script), optimize)
            }
            "chassis.toml" => {
                let parsed: NativeManifest =
                    toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
                let swarm = parsed.swarm;
                let lang = match swarm.language.as_str() {
                    "c" => Lang::C,
                    "cpp" | "c++" => Lang::Cpp,
                    other => bail!(
                        "{}: [swarm] language {:?} is not one chassis.toml is for: \"c\" or \"cpp\"",
                        manifest.display(),
                        crate::text::escape(other, 40)
                    ),
                };
                if swarm.name == "chassis" {
                    bail!(
                        "{}: a C or C++ swarm cannot be named \"chassis\": its contract chassis.toml would be the project file",
                        manifest.display()
                    );
                }
                let script = Script {
                    world: swarm.world,
                    entry: String::new(),
                    flags: swarm.flags,
                };
                (lang, swarm.name, Some(script), swarm.optimize)
            }
            _ => {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not valid JSON", manifest.display()))?;
                let name = json["name"]
                    .as_str()
                    .with_context(|| format!("{}: no \"name\"", manifest.display()))?;
                let chassis = json.get("chassis").with_context(|| {
                    format!(
                        "{}: no \"chassis\" object ({{\"world\": \"logging-swarm\", \"main\": \"app.js\"}})",
                        manifest.display()
                    )
                })?;
                let field =
                    |key, default| chassis_field(chassis, key, default, &manifest, "chassis.");
                let script = Script {
                    world: field("world", "logging-swarm")?,
                    entry: field("main", "app.js")?,
                    flags: Vec::new(),
                };
                let entry = Path::new(&script.entry);
                if entry.is_absolute()
                    || entry
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    bail!(
                        "{}: chassis.main must be a path inside the project, not {:?}",
                        manifest.display(),
                        crate::text::escape(&script.entry, 200)
                    );
                }
                let lang = match chassis.get("language").map(|l| l.as_str()) {
                    None if script.entry.ends_with(".ts") => Lang::Typescript,
                    None => Lang::Javascript,
                    Some(Some("javascript")) => Lang::Javascript,
                    Some(Some("typescript")) => Lang::Typescript,
                    Some(Some("assemblyscript")) => Lang::Assemblyscript,
                    Some(other) => bail!(
                        "{}: chassis.language {} is not \"javascript\", \"typescript\" or \"assemblyscript\"",
                        manifest.display(),
                        crate::text::escape(
                            &other
                                .map_or_else(|| "(not a string)".to_string(), |o| format!("{o:?}")),
                            60
                        )
                    ),
                };
                let optimize = chassis_flag(Some(chassis), "optimize", &manifest, "chassis.")?;
                (lang, name.to_string(), Some(script), optimize)
            }
        };
        super::new::check_name(&name).with_context(|| format!("{}", manifest.display()))?;
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
            lang,
            name,
            contract,
            script,
            optimize,
        })
    }

    /// Where a project's component goes.
    fn script_output(&self) -> PathBuf {
        PathBuf::from("target").join(format!("{}.wasm", self.name))
    }

    /// Build the component with the language's tools, their messages shown
    /// as they print them; its path. `always`: build even when a script
    /// project's component is newer than its sources (cargo decides that
    /// for Rust).
    pub(crate) fn compile(&self, always: bool, optimize: bool) -> Result<PathBuf> {
        let optimize = optimize || self.optimize;
        let Some(script) = &self.script else {
            // Cargo's artifact, as every language's component is:
            // `target/NAME.wasm`, optimized on the way when asked.
            let built = self.cargo_build()?;
            let out = self.dir.join(self.script_output());
            if optimize {
                super::optimize::component_file(&built, &out)?;
            } else if std::fs::read(&out).ok() != Some(std::fs::read(&built)?) {
                std::fs::copy(&built, &out)
                    .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
            }
            return Ok(out);
        };
        let out = self.script_output();
        let path = self.dir.join(&out);
        if !always && !script::stale(&self.dir, &path, self.lang) {
            eprintln!("{} is up to date", path.display());
            return Ok(path);
        }
        match self.lang {
            Lang::C | Lang::Cpp | Lang::Assemblyscript => {
                super::compiled::build(&self.dir, &self.name, self.lang, script, &out, optimize)?
            }
            _ => {
                script::build(&self.dir, &self.name, self.lang, script, &out)?;
                if optimize {
                    super::optimize::component_file(&path, &path)?;
                }
            }
        }
        Ok(path)
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
    pub(crate) async fn build(
        &self,
        global: &Global,
        always: bool,
        optimize: bool,
    ) -> Result<Built> {
        let wasm = self.compile(always, optimize)?;
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
/// contract for the project's directory (one with a project file); any
/// other path as it is (a contract file, or a directory of contracts).
pub(crate) fn served(path: PathBuf) -> Result<PathBuf> {
    if is_project(&path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory holding `files` (name, text), made anew.
    fn project(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("chassis-project-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    fn refusal(dir: &Path) -> String {
        let err = Project::open(dir).err().expect("refused");
        let _ = std::fs::remove_dir_all(dir);
        format!("{err:#}")
    }

    #[test]
    fn each_language_is_known_by_its_project_file() {
        for (file, text, lang, entry) in [
            (
                "pyproject.toml",
                "[project]\nname = \"g\"\n[tool.chassis]\n",
                Lang::Python,
                "app",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"world": "swarm"}}"#,
                Lang::Javascript,
                "app.js",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"main": "src/app.ts"}}"#,
                Lang::Typescript,
                "src/app.ts",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"language": "assemblyscript", "main": "assembly/index.ts"}}"#,
                Lang::Assemblyscript,
                "assembly/index.ts",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"g\"\nlanguage = \"c\"\n",
                Lang::C,
                "",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"g\"\nlanguage = \"cpp\"\noptimize = true\n",
                Lang::Cpp,
                "",
            ),
        ] {
            let dir = project("lang", &[(file, text), ("g.toml", "")]);
            let opened = Project::open(&dir).unwrap();
            assert_eq!(opened.lang, lang);
            assert_eq!(opened.script.as_ref().unwrap().entry, entry);
            assert_eq!(opened.optimize, text.contains("optimize = true"));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_hostile_or_broken_project_file_is_refused_naming_what_is_wrong() {
        let cases: &[(&str, &str, &str)] = &[
            // A name that would leave the project as a path.
            (
                "package.json",
                r#"{"name": "../up", "chassis": {}}"#,
                "is not a swarm name",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"main": "../outside.js"}}"#,
                "chassis.main must be a path inside the project",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"main": "/etc/x.js"}}"#,
                "chassis.main must be a path inside the project",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"world": 3}}"#,
                "chassis.world is not a string",
            ),
            ("package.json", r#"{"name": "g"}"#, "no \"chassis\" object"),
            ("package.json", "{", "not valid JSON"),
            (
                "pyproject.toml",
                "[project]\nname = \"g\"\n",
                "no [tool.chassis] table",
            ),
            (
                "pyproject.toml",
                "[project]\nname = \"g\"\n[tool.chassis]\nmodule = 1\n",
                "[tool.chassis] module is not a string",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"language": "cobol"}}"#,
                "chassis.language \"cobol\" is not",
            ),
            (
                "package.json",
                r#"{"name": "g", "chassis": {"optimize": "yes"}}"#,
                "chassis.optimize is not true or false",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"g\"\nlanguage = \"fortran\"\n",
                "language \"fortran\" is not one chassis.toml is for",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"g\"\nlanguage = \"c\"\ncflags = []\n",
                "unknown field `cflags`",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"chassis\"\nlanguage = \"c\"\n",
                "cannot be named \"chassis\"",
            ),
            (
                "chassis.toml",
                "[swarm]\nname = \"../g\"\nlanguage = \"c\"\n",
                "is not a swarm name",
            ),
        ];
        for (file, text, expected) in cases {
            let dir = project("bad", &[(file, text), ("g.toml", "")]);
            let err = refusal(&dir);
            assert!(err.contains(expected), "{text}: {err}");
        }
        let dir = project(
            "no-contract",
            &[("package.json", r#"{"name": "g", "chassis": {}}"#)],
        );
        assert!(refusal(&dir).contains("no contract g.toml"));
        let dir = project("empty", &[]);
        assert!(refusal(&dir).contains("not a swarm project"));
    }
}
