//! Python, JavaScript and TypeScript swarm projects built into components
//! with nothing but the `chassis` binary and the language's own runtime.
//!
//! The binary carries the WIT package and the SDK's helper modules
//! (`guest-sdk/python`, `guest-sdk/js`, with TypeScript declarations).
//! A build writes them into the project's generated directory `chassis/`
//! (`chassis/wit/`, the helpers, and for TypeScript `chassis/types/`, the
//! WIT's import and export declarations made by jco), then runs the pinned
//! tools (`tools.rs`):
//!
//! - Python: componentize-py with the project and `chassis/` as module
//!   paths;
//! - JavaScript: componentize-js on the entry module, the project's
//!   directory as the component's view of the files it imports;
//! - TypeScript: jco's declarations, then `tsc` type-checks and compiles
//!   into `target/js/`, the helpers are copied beside, then as JavaScript.
//!
//! The component is `target/NAME.wasm`.

use std::process::{Command, Stdio};

use super::project::Lang;
use super::tools;
use super::*;

/// The WIT package, as the host binds it.
pub(crate) const WIT: &str = include_str!("../../../wit/chassis.wit");

/// The worlds a swarm may target; the second field says whether it has the
/// `storage` import.
const WORLDS: &[(&str, bool)] = &[
    ("logging-swarm", false),
    ("credentialed-swarm", false),
    ("storing-swarm", true),
    ("swarm", true),
];

/// One helper file of the SDK: its name in `chassis/`, its text, and
/// whether it needs the `storage` import.
struct Helper {
    name: &'static str,
    text: &'static str,
    storage: bool,
}

const PYTHON_HELPERS: &[Helper] = &[
    Helper {
        name: "chassis_swarm.py",
        text: include_str!("../../../guest-sdk/python/chassis_swarm.py"),
        storage: false,
    },
    Helper {
        name: "chassis_storage.py",
        text: include_str!("../../../guest-sdk/python/chassis_storage.py"),
        storage: true,
    },
];

const JS_HELPERS: &[Helper] = &[
    Helper {
        name: "chassis-swarm.js",
        text: include_str!("../../../guest-sdk/js/chassis-swarm.js"),
        storage: false,
    },
    Helper {
        name: "chassis-storage.js",
        text: include_str!("../../../guest-sdk/js/chassis-storage.js"),
        storage: true,
    },
];

const TS_DECLARATIONS: &[Helper] = &[
    Helper {
        name: "chassis-swarm.d.ts",
        text: include_str!("../../../guest-sdk/js/chassis-swarm.d.ts"),
        storage: false,
    },
    Helper {
        name: "chassis-storage.d.ts",
        text: include_str!("../../../guest-sdk/js/chassis-storage.d.ts"),
        storage: true,
    },
];

/// The generated directory in a project.
pub(crate) const GENERATED: &str = "chassis";

/// What a script project's manifest says: the world and the entry module.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    /// The WIT world the component targets.
    pub(crate) world: String,
    /// Python: the module name (`app`); JavaScript and TypeScript: the
    /// entry file relative to the project (`app.js`, `app.ts`,
    /// `assembly/index.ts`); C and C++: unused (every source is built).
    pub(crate) entry: String,
    /// C and C++: flags added to each compile (`-D`, `-W`, `-std=`).
    pub(crate) flags: Vec<String>,
}

/// Whether `world` is one the host knows; the error lists them.
pub(crate) fn check_world(world: &str, manifest: &Path) -> Result<bool> {
    WORLDS
        .iter()
        .find(|(name, _)| *name == world)
        .map(|(_, storage)| *storage)
        .with_context(|| {
            format!(
                "{}: world {:?} is not a chassis world: use one of {}",
                manifest.display(),
                crate::text::escape(world, 80),
                WORLDS
                    .iter()
                    .map(|(w, _)| *w)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Write `text` to `path` unless it already holds exactly that (so the
/// file's time says when it last changed).
pub(crate) fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("making {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Write the generated directory `chassis/` of a project in `lang` whose
/// world has (or has not) `storage`: the WIT and the helpers it may
/// import (the storage helpers only where the world has the import, so
/// that a swarm importing them elsewhere fails to build, naming them).
pub(crate) fn write_generated(dir: &Path, lang: Lang, storage: bool) -> Result<()> {
    let generated = dir.join(GENERATED);
    write_if_changed(&generated.join("wit/chassis.wit"), WIT)?;
    let sets: &[&[Helper]] = match lang {
        Lang::Rust | Lang::C | Lang::Cpp | Lang::Assemblyscript => &[],
        Lang::Python => &[PYTHON_HELPERS],
        Lang::Javascript => &[JS_HELPERS],
        Lang::Typescript => &[JS_HELPERS, TS_DECLARATIONS],
    };
    for helper in sets.iter().flat_map(|s| s.iter()) {
        let path = generated.join(helper.name);
        if helper.storage && !storage {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        } else {
            write_if_changed(&path, helper.text)?;
        }
    }
    write_if_changed(
        &generated.join("README.md"),
        "Written by `chassis build` from the SDK the `chassis` binary carries: \
         the WIT package, the helper modules and their declarations. Edits are \
         written over; keep this directory out of version control.\n",
    )
}

/// Run `cmd` in `dir` with its output shown on stderr, as the tool printed
/// it; `what` names it in the error.
pub(crate) fn run_tool(mut cmd: Command, dir: &Path, what: &str) -> Result<()> {
    let status = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}): its messages are above");
    }
    Ok(())
}

/// Build a script project into `out` (relative to `dir`).
pub(crate) fn build(dir: &Path, name: &str, lang: Lang, script: &Script, out: &Path) -> Result<()> {
    let manifest = match lang {
        Lang::Python => "pyproject.toml",
        _ => "package.json",
    };
    let storage = check_world(&script.world, &dir.join(manifest))?;
    write_generated(dir, lang, storage)?;
    if let Some(parent) = dir.join(out).parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("making {}", parent.display()))?;
    }
    let wit = Path::new(GENERATED).join("wit");
    match lang {
        Lang::Rust | Lang::C | Lang::Cpp | Lang::Assemblyscript => {
            bail!(
                "{}: a {} project is not built by componentize-py or componentize-js",
                dir.display(),
                lang.name()
            )
        }
        Lang::Python => {
            let tool = tools::COMPONENTIZE_PY.ensure()?;
            eprintln!(
                "building {name} (componentize-py {}, world {})",
                tools::COMPONENTIZE_PY.version,
                script.world
            );
            let mut cmd = Command::new(tool);
            // Its errors without the tool's own stack.
            cmd.env("RUST_LIB_BACKTRACE", "0")
                .env("RUST_BACKTRACE", "0");
            cmd.arg("-d")
                .arg(&wit)
                .args(["-w", &script.world, "componentize", "--stub-wasi"])
                .args(["-p", ".", "-p", GENERATED])
                .arg(&script.entry)
                .arg("-o")
                .arg(out);
            run_tool(cmd, dir, "componentize-py")
        }
        Lang::Javascript => {
            let tool = tools::COMPONENTIZE_JS.ensure()?;
            check_syntax(dir)?;
            componentize_js(&tool, dir, name, Path::new(&script.entry), script, out)
        }
        Lang::Typescript => {
            let tool = tools::COMPONENTIZE_JS.ensure()?;
            let jco = tools::JCO.ensure()?;
            let tsc = tools::TYPESCRIPT.ensure()?;
            let types = dir.join(GENERATED).join("types");
            if types.exists() {
                std::fs::remove_dir_all(&types)
                    .with_context(|| format!("removing {}", types.display()))?;
            }
            let mut cmd = tools::node()?;
            cmd.arg(jco)
                .arg("guest-types")
                .arg(&wit)
                .args(["-n", &script.world, "-q", "-o"])
                .arg(Path::new(GENERATED).join("types"));
            run_tool(cmd, dir, "jco guest-types")?;
            eprintln!(
                "type-checking {name} (tsc {}, tsconfig.json)",
                tools::TYPESCRIPT.version
            );
            let js = Path::new("target/js");
            let mut cmd = tools::node()?;
            cmd.arg(tsc)
                .args(["-p", "tsconfig.json", "--pretty", "false", "--rootDir", "."])
                .arg("--outDir")
                .arg(js);
            run_tool(cmd, dir, "tsc")?;
            for helper in JS_HELPERS.iter().filter(|h| storage || !h.storage) {
                write_if_changed(&dir.join(js).join(GENERATED).join(helper.name), helper.text)?;
            }
            let entry = js.join(Path::new(&script.entry).with_extension("js"));
            componentize_js(&tool, dir, name, &entry, script, out)
        }
    }
}

/// `node --check` on each JavaScript file of the project: componentize-js
/// says only that a source did not parse, Node says where and why.
fn check_syntax(dir: &Path) -> Result<()> {
    for file in project_files(dir) {
        if file.extension().is_some_and(|e| e == "js" || e == "mjs") {
            let relative = file.strip_prefix(dir).unwrap_or(&file).to_path_buf();
            let mut cmd = tools::node()?;
            cmd.arg("--check").arg(&relative);
            run_tool(cmd, dir, &format!("node --check {}", relative.display()))?;
        }
    }
    Ok(())
}

/// componentize-js on `entry`, with every WASI feature it would otherwise
/// import turned off.
fn componentize_js(
    tool: &Path,
    dir: &Path,
    name: &str,
    entry: &Path,
    script: &Script,
    out: &Path,
) -> Result<()> {
    eprintln!(
        "building {name} (componentize-js {}, world {})",
        tools::COMPONENTIZE_JS.version,
        script.world
    );
    let mut cmd = tools::node()?;
    cmd.arg(tool)
        .arg(entry)
        .arg("--wit")
        .arg(Path::new(GENERATED).join("wit"))
        .args(["-n", &script.world, "-o"])
        .arg(out)
        .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"]);
    run_tool(cmd, dir, "componentize-js")
}

/// The extensions of the files that go into a `lang` component: its
/// sources and its project files.
fn source_extensions(lang: Lang) -> &'static [&'static str] {
    match lang {
        Lang::Rust => &["rs", "toml"],
        Lang::Python => &["py", "pyproject.toml"],
        Lang::Javascript => &["js", "mjs", "package.json"],
        Lang::Typescript => &["ts", "js", "mjs", "package.json", "tsconfig.json"],
        Lang::C | Lang::Cpp | Lang::Assemblyscript => super::compiled::source_extensions(lang),
    }
}

/// Whether `out` is older than a file of the project in `dir` that goes
/// into a `lang` component (its sources and project file, outside the
/// generated and build directories: not the contract, the test cases or
/// an audit log) or than the `chassis` binary itself, which carries the
/// SDK.
pub(crate) fn stale(dir: &Path, out: &Path, lang: Lang) -> bool {
    let Ok(built) = std::fs::metadata(out).and_then(|m| m.modified()) else {
        return true;
    };
    let newer = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > built)
    };
    if std::env::current_exe().is_ok_and(|exe| newer(&exe)) {
        return true;
    }
    let exts = source_extensions(lang);
    project_files(dir)
        .iter()
        .filter(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            exts.iter()
                .any(|e| name == *e || name.ends_with(&format!(".{e}")))
        })
        .any(|f| newer(f))
}

/// The files of the project in `dir`, outside the generated and build
/// directories (and `node_modules`, `.git`, `__pycache__`).
pub(crate) fn project_files(dir: &Path) -> Vec<PathBuf> {
    const TOP: &[&str] = &[GENERATED, "target"];
    const ANYWHERE: &[&str] = &["node_modules", ".git", "__pycache__"];
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                let name = entry.file_name();
                let skip = ANYWHERE.iter().any(|s| name == *s)
                    || (at == dir && TOP.iter().any(|s| name == *s));
                if !skip {
                    stack.push(entry.path());
                }
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_directory_holds_what_the_world_allows() {
        let dir = std::env::temp_dir().join(format!("chassis-generated-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_generated(&dir, Lang::Typescript, true).unwrap();
        let generated = dir.join(GENERATED);
        for file in [
            "wit/chassis.wit",
            "chassis-swarm.js",
            "chassis-storage.js",
            "chassis-swarm.d.ts",
            "chassis-storage.d.ts",
        ] {
            assert!(generated.join(file).is_file(), "{file}");
        }
        // The world changed to one without storage: its helpers go.
        write_generated(&dir, Lang::Typescript, false).unwrap();
        assert!(generated.join("chassis-swarm.js").is_file());
        assert!(!generated.join("chassis-storage.js").exists());
        assert!(!generated.join("chassis-storage.d.ts").exists());
        write_generated(&dir, Lang::Python, false).unwrap();
        assert!(generated.join("chassis_swarm.py").is_file());
        assert!(!generated.join("chassis_storage.py").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(check_world("storing-swarm", Path::new("p")).unwrap());
        let err = check_world("everything", Path::new("p")).unwrap_err();
        assert!(format!("{err}").contains("logging-swarm, credentialed-swarm"));
    }

    #[test]
    fn a_component_is_stale_when_a_source_is_newer_and_only_then() {
        let dir = std::env::temp_dir().join(format!("chassis-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("target")).unwrap();
        std::fs::create_dir_all(dir.join("chassis")).unwrap();
        // Times after the binary running this test was built: only the
        // project's files decide.
        let base = std::time::SystemTime::now();
        let at = |path: &Path, secs: u64| {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .unwrap();
            file.set_modified(base + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        let out = dir.join("target/greeter.wasm");
        at(&dir.join("app.py"), 1_000);
        at(&dir.join("pyproject.toml"), 1_000);
        at(&out, 2_000);
        assert!(!stale(&dir, &out, Lang::Python));
        for unused in [
            "tests.toml",
            "greeter.toml",
            "README.md",
            "target/audit",
            "chassis/x.py",
        ] {
            at(&dir.join(unused), 3_000);
            assert!(!stale(&dir, &out, Lang::Python), "{unused}");
        }
        at(&dir.join("pyproject.toml"), 3_000);
        assert!(stale(&dir, &out, Lang::Python));
        at(&dir.join("pyproject.toml"), 1_000);
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        at(&dir.join("lib/util.py"), 3_000);
        assert!(stale(&dir, &out, Lang::Python));
        assert!(!stale(&dir, &out, Lang::Javascript));
        std::fs::remove_file(&out).unwrap();
        assert!(stale(&dir, &out, Lang::Javascript));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
