//! `chassis new` as a swarm author uses it, outside this repository: the
//! `chassis` binary installed with `cargo install --path host --root
//! <tmp>`, a project made in a temporary directory of its own for each
//! language, built with the language's own tools (the pinned ones
//! installed on first use into the tools directory, here `target/tools/`,
//! which `cargo xtask build` fills), tested with its cases and run by
//! `chassis run` under the contract it was made with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use crate::common::{assert_ok, root};

/// `GET url`'s JSON body, on a runtime of its own.
fn get_json(url: &str) -> serde_json::Value {
    let body = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A directory outside the repository for one test.
fn outside(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chassis-new-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(
        !dir.starts_with(root()),
        "{} is inside the repository",
        dir.display()
    );
    dir
}

/// The `chassis` binary as an author installs it: `cargo install --path
/// host --root <tmp>`, once per run. A debug build with this repository's
/// target directory: the build the tests already made, so it is a copy.
fn installed() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let prefix = std::env::temp_dir().join("chassis-test-install");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let out = Command::new(cargo)
            .args([
                "install", "--locked", "--debug", "--force", "--quiet", "--path",
            ])
            .arg(root().join("host"))
            .arg("--root")
            .arg(&prefix)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("cargo install runs");
        assert_ok(&out);
        let binary = prefix.join("bin/chassis");
        assert!(binary.is_file(), "{} was not installed", binary.display());
        binary
    })
}

fn chassis(dir: &Path, args: &[&str]) -> Output {
    Command::new(installed())
        .args(args)
        .current_dir(dir)
        .env("CHASSIS_LOG", "error")
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/new-cache"))
        .env("CHASSIS_TOOLS_DIR", root().join("target/tools"))
        .output()
        .expect("chassis runs")
}

/// One script-language flow at a time: each runs compilers that use both
/// cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The flow the guide gives for `lang`: `chassis new` (then `prepare` on
/// the project), `chassis build` (its summary line), `chassis test` (the
/// three cases pass; a script swarm is not built again) and `chassis run
/// .`. The project's directory.
fn author_flow(dir: &Path, lang: &str, files: &[&str], prepare: impl FnOnce(&Path)) -> PathBuf {
    let out = chassis(dir, &["new", "greeter", "--lang", lang]);
    assert_ok(&out);
    let project = dir.join("greeter");
    for file in files
        .iter()
        .chain(&["greeter.toml", "tests.toml", ".gitignore", "README.md"])
    {
        assert!(project.join(file).is_file(), "{lang}: {file} was not made");
    }
    prepare(&project);
    let build = chassis(&project, &["build"]);
    assert_ok(&build);
    let said = String::from_utf8_lossy(&build.stdout);
    assert!(
        said.contains("built greeter:")
            && said.contains("greeter.wasm")
            && said.contains("KiB")
            && said.contains("serves hello"),
        "{said}"
    );
    let test = chassis(&project, &["test"]);
    assert_ok(&test);
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(said.contains("3 cases: 3 passed, 0 failed"), "{said}");
    assert!(
        lang == "rust" || String::from_utf8_lossy(&test.stderr).contains("is up to date"),
        "{lang}: chassis test rebuilt a component newer than its sources"
    );
    let run = chassis(
        &project,
        &[
            "run",
            ".",
            "--task",
            "hello",
            "--payload",
            r#"{"name": "Ada"}"#,
        ],
    );
    assert_ok(&run);
    let output: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(output, serde_json::json!({ "greeting": "Hello, Ada!" }));
    project
}

/// `file` in `project` with `from` replaced by `to` (which must be there).
fn edit(project: &Path, file: &str, from: &str, to: &str) -> String {
    let path = project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    text
}

/// A case of `tests.toml` made to fail: `chassis test` prints its diff and
/// the count, and exits 1; the cases are put back. Its output.
fn failing_case(project: &Path) -> Output {
    let cases = edit(
        project,
        "tests.toml",
        "greeting = \"Hello, Ada!\"",
        "greeting = \"Hello, Bob!\"",
    );
    let test = chassis(project, &["test"]);
    assert_eq!(test.status.code(), Some(1));
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(
        said.contains("FAIL  greets by name")
            && said.contains("-   \"greeting\": \"Hello, Bob!\"")
            && said.contains("+   \"greeting\": \"Hello, Ada!\"")
            && said.contains("3 cases: 2 passed, 1 failed"),
        "{said}"
    );
    std::fs::write(project.join("tests.toml"), cases).unwrap();
    test
}

/// `chassis build` in `project` fails with status 1, and its stderr says
/// each of `expected`.
fn build_fails(project: &Path, expected: &[&str]) {
    let build = chassis(project, &["build"]);
    let err = String::from_utf8_lossy(&build.stderr);
    assert_eq!(build.status.code(), Some(1), "{err}");
    for e in expected {
        assert!(err.contains(e), "no {e:?} in:\n{err}");
    }
}

/// The flow the guide gives, outside the repository: `chassis new`, then
/// `chassis build`, `chassis test` and `chassis run .`; then what an author
/// gets wrong: a failing case (its diff, status 1), a syntax error (the
/// compiler's message, status 1), and code that uses an import the
/// contract does not grant (refused at build, naming it).
#[test]
fn a_new_rust_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("rust");
    // `installed()` is the binary `cargo install --path host` put in place.
    assert!(installed().starts_with(std::env::temp_dir()));
    let project = author_flow(&dir, "rust", &["Cargo.toml", "src/lib.rs"], |project| {
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        let sdk = root().join("guest-sdk").canonicalize().unwrap();
        assert!(
            manifest.contains(&format!("path = {:?}", sdk.display().to_string())),
            "{manifest}"
        );
        // The project's `target` is shared between runs of this test (a
        // link under this repository's target/), so its dependencies build
        // once.
        let shared = root().join("target/outside-projects");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, project.join("target")).unwrap();
    });
    // `chassis serve DIR` serves the project's swarm, and only it.
    let server = crate::common::Server::start(&[project.to_str().unwrap()]);
    let ready = get_json(&server.url("/readyz"));
    assert_eq!(ready["loaded"], serde_json::json!(["greeter"]), "{ready}");
    assert_eq!(ready["failed"], serde_json::json!([]), "{ready}");
    drop(server);

    failing_case(&project);
    // Cargo's component is copied to target/greeter.wasm, where the
    // contract points; --optimize puts wasm-opt's there instead.
    optimized_is_smaller(&project);

    // Code that reads the wall clock, which the contract does not grant:
    // refused at build, naming the import.
    let source = edit(
        &project,
        "src/lib.rs",
        "let hello: Hello = request.payload()?;",
        "let hello: Hello = request.payload()?;\n                let _ = std::time::SystemTime::now();",
    );
    build_fails(&project, &["does not load under", "wasi:clocks/wall-clock"]);
    std::fs::write(project.join("src/lib.rs"), &source).unwrap();

    // A syntax error: the compiler's own message, and status 1.
    edit(
        &project,
        "src/lib.rs",
        "fn world() -> String {",
        "fn world() -> String {{",
    );
    build_fails(&project, &["error", "src/lib.rs", "cargo build failed"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_python_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("python");
    let project = author_flow(&dir, "python", &["pyproject.toml", "app.py"], |_| {});
    assert!(project.join("chassis/chassis_swarm.py").is_file());
    assert!(project.join("chassis/wit/chassis.wit").is_file());
    // A failing case: its diff, status 1, and no rebuild for it.
    let test = failing_case(&project);
    assert!(String::from_utf8_lossy(&test.stderr).contains("is up to date"));
    // A syntax error: Python's message, with the line, and status 1.
    edit(
        &project,
        "app.py",
        "def hello(payload):",
        "def hello(payload)",
    );
    build_fails(
        &project,
        &["SyntaxError", "app.py", "line", "componentize-py failed"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_javascript_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("javascript");
    let project = author_flow(&dir, "javascript", &["package.json", "app.js"], |_| {});
    assert!(project.join("chassis/chassis-swarm.js").is_file());
    // A syntax error: Node's message, at the file and line, and status 1.
    edit(
        &project,
        "app.js",
        "export const task = swarm({",
        "export const task = swarm({{",
    );
    build_fails(
        &project,
        &["SyntaxError", "app.js:", "node --check app.js failed"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The TypeScript flow, then what the type checker and the contract
/// refuse: a type error (tsc's message, status 1), the storage helpers
/// imported in a world without storage (tsc names the module), and in a
/// world with it but a contract that grants none (the load check names
/// the import).
#[test]
fn a_new_typescript_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("typescript");
    let project = author_flow(
        &dir,
        "typescript",
        &["package.json", "tsconfig.json", "app.ts"],
        |_| {},
    );
    // jco's declarations of the world's imports and exports.
    let types = project.join("chassis/types/interfaces");
    assert!(types.join("infrafabric-chassis-task.d.ts").is_file());
    assert!(!types.join("infrafabric-chassis-storage.d.ts").exists());

    let source = edit(
        &project,
        "app.ts",
        "return { greeting: `Hello, ${name}!` };",
        "return { greeting: name.length };",
    );
    build_fails(&project, &["app.ts(", "error TS2322", "tsc failed"]);

    let storing = format!(
        "import {{ setJson }} from \"./chassis/chassis-storage.js\";\n{}",
        source.replace("info(`greeting ${name}`);", "setJson(\"last\", name);")
    );
    std::fs::write(project.join("app.ts"), &storing).unwrap();
    build_fails(
        &project,
        &["error TS2307", "chassis-storage.js", "tsc failed"],
    );

    edit(
        &project,
        "package.json",
        "\"world\": \"logging-swarm\"",
        "\"world\": \"storing-swarm\"",
    );
    build_fails(
        &project,
        &["does not load under", "infrafabric:chassis/storage"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The size of `project`'s component.
fn component_size(project: &Path) -> u64 {
    std::fs::metadata(project.join("target/greeter.wasm"))
        .unwrap()
        .len()
}

/// `chassis build --optimize` in `project`: wasm-opt runs, the component
/// is smaller, and its cases still pass.
fn optimized_is_smaller(project: &Path) {
    let before = component_size(project);
    let build = chassis(project, &["build", "--optimize"]);
    assert_ok(&build);
    assert!(
        String::from_utf8_lossy(&build.stderr).contains("wasm-opt -Os"),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let after = component_size(project);
    assert!(
        after < before,
        "optimized {after} bytes, not under {before}"
    );
    let test = chassis(project, &["test"]);
    assert_ok(&test);
    assert!(String::from_utf8_lossy(&test.stdout).contains("3 cases: 3 passed"));
}

/// The C flow, then `--optimize`, and what the compiler, the linker and
/// the contract refuse: a syntax error (clang's message at the file and
/// line), a function declared and never defined (the linker names it),
/// and the credentials import in a world that has it but a contract that
/// grants none (the load check names it).
#[test]
fn a_new_c_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("c");
    let project = author_flow(&dir, "c", &["chassis.toml", "src/swarm.c"], |_| {});
    for generated in [
        "chassis.h",
        "chassis.c",
        "chassis_component_type.o",
        "chassis_swarm.h",
        "chassis_swarm.c",
    ] {
        assert!(
            project.join("chassis").join(generated).is_file(),
            "{generated}"
        );
    }
    failing_case(&project);
    optimized_is_smaller(&project);

    let source = edit(
        &project,
        "src/swarm.c",
        "chassis_info(\"greeting %s\", who);",
        "chassis_info(\"greeting %s\", who)",
    );
    build_fails(
        &project,
        &["src/swarm.c:", "error:", "compiling src/swarm.c failed"],
    );
    std::fs::write(
        project.join("src/swarm.c"),
        source
            .replace(
                "static chassis_result hello(",
                "int helper(int);\nstatic chassis_result hello(",
            )
            .replace(
                "if (!payload) return refusal;",
                "if (!payload) return refusal;\n    helper(1);",
            ),
    )
    .unwrap();
    build_fails(&project, &["undefined symbol: helper", "linking failed"]);

    std::fs::write(
        project.join("src/swarm.c"),
        source.replace(
            "chassis_info(\"greeting %s\", who);",
            "chassis_string_t key, value;\n    \
             infrafabric_chassis_credentials_credential_error_t err;\n    \
             chassis_string_set(&key, \"token\");\n    \
             infrafabric_chassis_credentials_get(&key, &value, &err);",
        ),
    )
    .unwrap();
    edit(
        &project,
        "chassis.toml",
        "world = \"logging-swarm\"",
        "world = \"credentialed-swarm\"",
    );
    build_fails(
        &project,
        &["does not load under", "infrafabric:chassis/credentials"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The C++ flow (libc++, the C SDK from C++), and a `throw`, which
/// cannot be built: exceptions are off, and clang says so.
#[test]
fn a_new_cpp_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("cpp");
    let project = author_flow(&dir, "cpp", &["chassis.toml", "src/swarm.cpp"], |_| {});
    edit(
        &project,
        "src/swarm.cpp",
        "chassis_json_free(payload);\n    chassis_info(",
        "chassis_json_free(payload);\n    if (who.empty()) throw 1;\n    chassis_info(",
    );
    build_fails(
        &project,
        &[
            "cannot use 'throw' with exceptions disabled",
            "src/swarm.cpp",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The AssemblyScript flow, then what asc and the build refuse: a type
/// error (asc's message at the file, line and column), and `Math.random`,
/// which makes an import no host gives (named, with the reason).
#[test]
fn a_new_assemblyscript_swarm_builds_tests_and_runs_outside_the_repository() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = outside("assemblyscript");
    let project = author_flow(
        &dir,
        "assemblyscript",
        &["package.json", "assembly/index.ts"],
        |_| {},
    );
    assert!(project.join("chassis/abi.ts").is_file());
    assert!(!project.join("chassis/storage.ts").exists());
    failing_case(&project);

    let source = edit(
        &project,
        "assembly/index.ts",
        "let who = \"world\";",
        "let who: i32 = \"world\";",
    );
    build_fails(&project, &["TS2322", "assembly/index.ts(", "asc failed"]);
    std::fs::write(
        project.join("assembly/index.ts"),
        source.replace(
            "info(\"greeting \" + who);",
            "info(\"greeting \" + who + Math.random().toString());",
        ),
    )
    .unwrap();
    build_fails(&project, &["env.seed", "Math.random"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Into a directory that exists, or with a name that is not a swarm id,
/// nothing is written and the error says why.
#[test]
fn chassis_new_writes_over_nothing_and_refuses_bad_names() {
    let dir = outside("refuse");
    std::fs::create_dir(dir.join("taken")).unwrap();
    std::fs::write(dir.join("taken/notes.txt"), "mine").unwrap();
    let out = chassis(&dir, &["new", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("taken exists") && err.contains("writes over nothing"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("taken")).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "something was written into an existing directory"
    );
    for bad in ["Greeter", "../escape", "a_b", ""] {
        let out = chassis(&dir, &["new", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a swarm name"), "{bad}: {err}");
    }
    assert!(!dir.join("escape").exists() && !root().join("escape").exists());
    let out = chassis(&dir, &["new", "elsewhere", "--sdk", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("elsewhere").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tool that cannot be installed (no Python; no npm) is named in the
/// error with the command that installs it by hand, and nothing half
/// installed is left to be taken for the tool.
#[test]
fn a_tool_that_cannot_be_installed_is_named_with_the_command_that_installs_it() {
    let dir = outside("no-tools");
    let tools = dir.join("tools");
    let run = |args: &[&str], cwd: &Path, env: (&str, &str)| {
        Command::new(installed())
            .args(args)
            .current_dir(cwd)
            .env("CHASSIS_LOG", "error")
            .env("CHASSIS_TOOLS_DIR", &tools)
            .env(env.0, env.1)
            .output()
            .expect("chassis runs")
    };
    assert_ok(&run(&["new", "py", "--lang", "python"], &dir, ("X", "")));
    let out = run(
        &["build"],
        &dir.join("py"),
        ("CHASSIS_PYTHON", "/nonexistent/python3"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("componentize-py 0.25.1 could not be installed")
            && err.contains("/nonexistent/python3")
            && err.contains("pip install componentize-py==0.25.1"),
        "{err}"
    );
    assert!(!tools.join("componentize-py-0.25.1").exists());

    assert_ok(&run(
        &["new", "js", "--lang", "javascript"],
        &dir,
        ("X", ""),
    ));
    // A PATH with neither npm nor node.
    let out = run(&["build"], &dir.join("js"), ("PATH", "/nonexistent"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("componentize-js 0.23.0 could not be installed")
            && err.contains("npm could not be run")
            && err.contains("npm install --prefix")
            && err.contains("@bytecodealliance/componentize-js@0.23.0"),
        "{err}"
    );
    assert!(!tools.join("componentize-js-0.23.0").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
