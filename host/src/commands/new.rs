//! `chassis new NAME`: a directory holding a working swarm — its source
//! with one example task, the language's project file, a contract granting
//! the least that runs the example, a test file with cases for the
//! example (`chassis test`), a `.gitignore` and a README — made
//! from the templates embedded in the binary (`host/templates/`). It never
//! writes over anything: the directory must not exist.

pub use super::project::Lang;
use super::*;

/// `chassis new`'s arguments.
#[derive(clap::Args)]
pub struct NewCommand {
    /// The swarm's id and the directory made for it: lowercase letters,
    /// digits and `-`, starting with a letter (e.g. greeter).
    name: String,

    /// The language of the swarm.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,

    /// Make the swarm in this directory instead of ./NAME (it must not exist).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Rust: the `chassis-sdk` crate to depend on (default: the SDK of the
    /// checkout this binary was built from).
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// One file of a template: where it goes in the project and its text, with
/// `{{name}}`, `{{type}}`, `{{sdk}}`, `{{wasm}}`, `{{lang}}`, `{{source}}`
/// and `{{how}}` to fill in.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

/// Every language's contract, test cases and README.
const COMMON: &[TemplateFile] = &[
    TemplateFile {
        path: "{{name}}.toml",
        text: include_str!("../../templates/common/contract.toml.in"),
    },
    TemplateFile {
        path: "tests.toml",
        text: include_str!("../../templates/common/tests.toml.in"),
    },
    TemplateFile {
        path: "README.md",
        text: include_str!("../../templates/common/README.md.in"),
    },
];

/// The Rust swarm.
const RUST: &[TemplateFile] = &[
    TemplateFile {
        path: "Cargo.toml",
        text: include_str!("../../templates/rust/Cargo.toml.in"),
    },
    TemplateFile {
        path: "src/lib.rs",
        text: include_str!("../../templates/rust/lib.rs.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/rust/gitignore.in"),
    },
];

/// The Python swarm.
const PYTHON: &[TemplateFile] = &[
    TemplateFile {
        path: "pyproject.toml",
        text: include_str!("../../templates/python/pyproject.toml.in"),
    },
    TemplateFile {
        path: "app.py",
        text: include_str!("../../templates/python/app.py.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/python/gitignore.in"),
    },
];

/// The JavaScript swarm.
const JAVASCRIPT: &[TemplateFile] = &[
    TemplateFile {
        path: "package.json",
        text: include_str!("../../templates/javascript/package.json.in"),
    },
    TemplateFile {
        path: "app.js",
        text: include_str!("../../templates/javascript/app.js.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/javascript/gitignore.in"),
    },
];

/// The TypeScript swarm.
const TYPESCRIPT: &[TemplateFile] = &[
    TemplateFile {
        path: "package.json",
        text: include_str!("../../templates/typescript/package.json.in"),
    },
    TemplateFile {
        path: "tsconfig.json",
        text: include_str!("../../templates/typescript/tsconfig.json.in"),
    },
    TemplateFile {
        path: "app.ts",
        text: include_str!("../../templates/typescript/app.ts.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/typescript/gitignore.in"),
    },
];

/// The C swarm.
const C: &[TemplateFile] = &[
    TemplateFile {
        path: "chassis.toml",
        text: include_str!("../../templates/c/chassis.toml.in"),
    },
    TemplateFile {
        path: "src/swarm.c",
        text: include_str!("../../templates/c/swarm.c.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/c/gitignore.in"),
    },
];

/// The C++ swarm.
const CPP: &[TemplateFile] = &[
    TemplateFile {
        path: "chassis.toml",
        text: include_str!("../../templates/cpp/chassis.toml.in"),
    },
    TemplateFile {
        path: "src/swarm.cpp",
        text: include_str!("../../templates/cpp/swarm.cpp.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/c/gitignore.in"),
    },
];

/// The AssemblyScript swarm.
const ASSEMBLYSCRIPT: &[TemplateFile] = &[
    TemplateFile {
        path: "package.json",
        text: include_str!("../../templates/assemblyscript/package.json.in"),
    },
    TemplateFile {
        path: "assembly/index.ts",
        text: include_str!("../../templates/assemblyscript/index.ts.in"),
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../../templates/typescript/gitignore.in"),
    },
];

/// A language's own files, its source file and how it builds (for the
/// README).
fn language(lang: Lang) -> (&'static [TemplateFile], &'static str, String) {
    use super::tools::{
        ASSEMBLYSCRIPT as ASC, COMPONENTIZE_JS, COMPONENTIZE_PY, TYPESCRIPT as TSC, ZIGLANG,
    };
    let generated = "`chassis build` writes the SDK's helper modules and the WIT into \
        `chassis/` (generated: keep it out of version control)";
    let installed = "installed on first use into chassis's tools directory";
    match lang {
        Lang::Rust => (
            RUST,
            "src/lib.rs",
            "`chassis build` runs `cargo build --release --target wasm32-wasip2` and\n\
             copies the component to `target/{{name}}.wasm`."
                .into(),
        ),
        Lang::Python => (
            PYTHON,
            "app.py",
            format!(
                "{generated}, then runs componentize-py {} ({installed}); the\n\
                 component is `target/{{{{name}}}}.wasm`. `[tool.chassis]` in `pyproject.toml`\n\
                 names the world: `storing-swarm` (or `swarm`) to `import chassis_storage`.",
                COMPONENTIZE_PY.version
            ),
        ),
        Lang::Javascript => (
            JAVASCRIPT,
            "app.js",
            format!(
                "{generated}, then runs componentize-js {} ({installed}); the\n\
                 component is `target/{{{{name}}}}.wasm`. `chassis` in `package.json` names\n\
                 the world: `storing-swarm` (or `swarm`) to import `chassis-storage.js`.",
                COMPONENTIZE_JS.version
            ),
        ),
        Lang::Typescript => (
            TYPESCRIPT,
            "app.ts",
            format!(
                "{generated}, with the WIT's TypeScript declarations made by jco in\n\
                 `chassis/types/`; `tsc` {} type-checks and compiles into `target/js/` (a\n\
                 type error fails the build), then componentize-js {} builds the component,\n\
                 `target/{{{{name}}}}.wasm` (all {installed}). `chassis` in `package.json`\n\
                 names the world: `storing-swarm` (or `swarm`) to import `chassis-storage.js`.",
                TSC.version, COMPONENTIZE_JS.version
            ),
        ),
        Lang::C | Lang::Cpp => (
            if lang == Lang::C { C } else { CPP },
            if lang == Lang::C {
                "src/swarm.c"
            } else {
                "src/swarm.cpp"
            },
            format!(
                "`chassis build` writes the WIT's C bindings (made by wit-bindgen-c) and the\n\
                 SDK's `chassis_swarm.h` into `chassis/` (generated: keep it out of version\n\
                 control), compiles every source with zig {} (clang, wasi-libc{}; {installed}),\n\
                 then makes the component, `target/{{{{name}}}}.wasm`, with the host's own\n\
                 preview-1 adapter. `[swarm]` in `chassis.toml` names the world and any extra\n\
                 compiler `flags`.",
                ZIGLANG.version,
                if lang == Lang::Cpp {
                    ", libc++ without exceptions"
                } else {
                    ""
                }
            ),
        ),
        Lang::Assemblyscript => (
            ASSEMBLYSCRIPT,
            "assembly/index.ts",
            format!(
                "{generated}: the canonical-ABI glue for the chassis worlds\n\
                 and its helpers. `asc` {} ({installed}) compiles them with\n\
                 `assembly/index.ts`; the component is `target/{{{{name}}}}.wasm`. `chassis` in\n\
                 `package.json` names the world: `storing-swarm` (or `swarm`) to import\n\
                 `chassis/storage`.",
                ASC.version
            ),
        ),
    }
}

/// The SDK of the checkout this binary was built from.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

impl NewCommand {
    /// Make the project and say what to do next.
    pub async fn execute(self) -> Result<()> {
        check_name(&self.name)?;
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        let sdk = match (self.lang, &self.sdk) {
            (Lang::Rust, Some(path)) => sdk_path(path)?,
            (Lang::Rust, None) => sdk_path(Path::new(BUILT_WITH_SDK)).with_context(|| {
                "the chassis-sdk crate of the checkout this binary was built from is not there: give --sdk PATH (a checkout's guest-sdk/)"
            })?,
            (_, Some(_)) => bail!(
                "--sdk is for Rust swarms: the {} SDK is carried by the chassis binary",
                self.lang.name()
            ),
            (_, None) => PathBuf::new(),
        };
        let (own, source, how) = language(self.lang);
        let files: Vec<&TemplateFile> = own.iter().chain(COMMON).collect();
        let wasm = format!("target/{}.wasm", self.name);
        let fill = Fill {
            name: &self.name,
            type_name: &type_name(&self.name),
            sdk: &toml_string(&sdk.display().to_string()),
            wasm: &wasm,
            lang: self.lang.name(),
            source,
            how: &how,
        };
        make(&dir, &files, &fill)?;
        // The SDK's modules now, so that an editor finds them before the
        // first build (with the example's world: no storage).
        match self.lang {
            Lang::Rust => {}
            Lang::C | Lang::Cpp | Lang::Assemblyscript => {
                super::compiled::write_generated(&dir, self.lang, "logging-swarm", false)?
            }
            _ => super::script::write_generated(&dir, self.lang, false)?,
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "made the {} swarm {} in {}",
            self.lang.name(),
            self.name,
            dir.display()
        )?;
        writeln!(out, "next:")?;
        writeln!(out, "  cd {}", dir.display())?;
        writeln!(out, "  chassis build")?;
        writeln!(out, "  chassis test")?;
        writeln!(
            out,
            "  chassis run . --task hello --payload '{{\"name\": \"Ada\"}}'"
        )?;
        Ok(())
    }
}

/// What a template's placeholders become.
struct Fill<'a> {
    name: &'a str,
    type_name: &'a str,
    sdk: &'a str,
    wasm: &'a str,
    lang: &'a str,
    source: &'a str,
    how: &'a str,
}

impl Fill<'_> {
    fn apply(&self, text: &str) -> String {
        // `how` first: it names the project too.
        text.replace("{{how}}", self.how)
            .replace("{{name}}", self.name)
            .replace("{{type}}", self.type_name)
            .replace("{{sdk}}", self.sdk)
            .replace("{{wasm}}", self.wasm)
            .replace("{{lang}}", self.lang)
            .replace("{{source}}", self.source)
    }
}

/// A swarm id that is also a crate name, a file name and a directory name:
/// a lowercase letter, then lowercase letters, digits and single `-`s, at
/// most 64 bytes.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!(
            "{:?} is not a swarm name: use lowercase letters, digits and single '-', starting with a letter, at most 64 bytes (e.g. greeter)",
            crate::text::escape(name, 80)
        );
    }
    Ok(())
}

/// The Rust type of the swarm: `my-swarm` → `MySwarm`, kept apart from the
/// names the example uses.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if ["Swarm", "Request", "TaskError", "Value", "Hello"].contains(&camel.as_str()) {
        format!("{camel}Swarm")
    } else {
        camel
    }
}

/// `path` as a TOML basic string.
fn toml_string(path: &str) -> String {
    toml::Value::String(path.to_string()).to_string()
}

/// The SDK crate at `path`, made absolute: it must be the `chassis-sdk`
/// crate.
fn sdk_path(path: &Path) -> Result<PathBuf> {
    let path = path
        .canonicalize()
        .with_context(|| format!("the SDK at {}", path.display()))?;
    let manifest = std::fs::read_to_string(path.join("Cargo.toml"))
        .with_context(|| format!("{}: no Cargo.toml", path.display()))?;
    if !manifest.contains("name = \"chassis-sdk\"") {
        bail!(
            "{}: not the chassis-sdk crate (a checkout's guest-sdk/)",
            path.display()
        );
    }
    Ok(path)
}

/// Write `files` into a new directory `dir`, filled in; nothing is written
/// if `dir` exists, and a project half made is removed.
fn make(dir: &Path, files: &[&TemplateFile], fill: &Fill) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("making {}", parent.display()))?;
    }
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} exists: chassis new makes a new directory and writes over nothing",
            dir.display()
        ),
        made => made.with_context(|| format!("making {}", dir.display()))?,
    }
    let written = files.iter().try_for_each(|file| -> Result<()> {
        let path = dir.join(fill.apply(file.path));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(fill.apply(file.text).as_bytes()))
            .with_context(|| format!("writing {}", path.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_typed() {
        for good in ["greeter", "my-swarm2", "a"] {
            check_name(good).unwrap();
        }
        for bad in [
            "", "Greeter", "2x", "-x", "x-", "a--b", "a_b", "a.b", "../x",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
        assert_eq!(type_name("my-swarm2"), "MySwarm2");
        assert_eq!(type_name("greeter"), "Greeter");
        assert_eq!(type_name("swarm"), "SwarmSwarm");
    }

    #[test]
    fn every_template_is_filled_in_whole() {
        for &lang in <Lang as clap::ValueEnum>::value_variants() {
            let (own, source, how) = language(lang);
            let fill = Fill {
                name: "greeter",
                type_name: "Greeter",
                sdk: "\"/sdk\"",
                wasm: "target/greeter.wasm",
                lang: lang.name(),
                source,
                how: &how,
            };
            for file in own.iter().chain(COMMON) {
                let text = fill.apply(file.text);
                assert!(!text.contains("{{"), "{lang:?} {}: {text}", file.path);
            }
            assert!(own.iter().any(|f| f.path == source), "{lang:?}");
        }
        let fill = Fill {
            name: "greeter",
            type_name: "Greeter",
            sdk: "",
            wasm: "target/greeter.wasm",
            lang: "Python",
            source: "app.py",
            how: "",
        };
        let contract = fill.apply(COMMON[0].text);
        let parsed = crate::ServiceContract::from_toml(&contract, "greeter.toml").unwrap();
        assert_eq!(parsed.swarm_id, "greeter");
        assert_eq!(
            parsed.wasm_module,
            Some(PathBuf::from("target/greeter.wasm"))
        );
    }
}
