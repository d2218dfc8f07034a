//! `chassis new` as a swarm author uses it, outside this repository: a
//! project made in a temporary directory of its own, built with the
//! language's own tools, and run by `chassis run` under the contract it
//! was made with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn chassis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chassis"))
        .args(args)
        .current_dir(dir)
        .env("CHASSIS_LOG", "error")
        .env("CHASSIS_CACHE_DIR", root().join("target/tmp/new-cache"))
        .output()
        .expect("chassis runs")
}

/// The flow the guide gives, outside the repository: `chassis new`, then
/// `chassis build`, `chassis test` and `chassis run .`; then what an author
/// gets wrong: a failing case (its diff, status 1), a syntax error (the
/// compiler's message, status 1), and code that uses an import the
/// contract does not grant (refused at build, naming it).
#[test]
fn a_new_rust_swarm_builds_tests_and_runs_outside_the_repository() {
    let dir = outside("rust");
    let out = chassis(&dir, &["new", "greeter", "--lang", "rust"]);
    assert_ok(&out);
    let project = dir.join("greeter");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "greeter.toml",
        "tests.toml",
        ".gitignore",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file} was not made");
    }
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let sdk = root().join("guest-sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("path = {:?}", sdk.display().to_string())),
        "{manifest}"
    );
    // The project's `target` is shared between runs of this test (a link
    // under this repository's target/), so its dependencies build once.
    let shared = root().join("target/outside-projects");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, project.join("target")).unwrap();

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
    // `chassis serve DIR` serves the project's swarm, and only it.
    let server = crate::common::Server::start(&[project.to_str().unwrap()]);
    let ready = get_json(&server.url("/readyz"));
    assert_eq!(ready["loaded"], serde_json::json!(["greeter"]), "{ready}");
    assert_eq!(ready["failed"], serde_json::json!([]), "{ready}");
    drop(server);

    // A case that fails: its diff, and status 1.
    let cases = std::fs::read_to_string(project.join("tests.toml")).unwrap();
    std::fs::write(
        project.join("tests.toml"),
        cases.replace("greeting = \"Hello, Ada!\"", "greeting = \"Hello, Bob!\""),
    )
    .unwrap();
    let test = chassis(&project, &["test"]);
    assert_eq!(test.status.code(), Some(1));
    let said = String::from_utf8_lossy(&test.stdout);
    assert!(
        said.contains("FAIL  greets by name")
            && said.contains("-   \"greeting\": \"Hello, Bob!\"")
            && said.contains("+   \"greeting\": \"Hello, Ada!\"")
            && said.contains("3 cases: 2 passed, 1 failed"),
        "{said}"
    );
    std::fs::write(project.join("tests.toml"), &cases).unwrap();

    // Code that reads the wall clock, which the contract does not grant:
    // refused at build, naming the import.
    let source = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    std::fs::write(
        project.join("src/lib.rs"),
        source.replace(
            "let hello: Hello = request.payload()?;",
            "let hello: Hello = request.payload()?;\n                let _ = std::time::SystemTime::now();",
        ),
    )
    .unwrap();
    let build = chassis(&project, &["build"]);
    assert_eq!(build.status.code(), Some(1));
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(
        err.contains("does not load under") && err.contains("wasi:clocks/wall-clock"),
        "{err}"
    );
    std::fs::write(project.join("src/lib.rs"), &source).unwrap();

    // A syntax error: the compiler's own message, and status 1.
    std::fs::write(
        project.join("src/lib.rs"),
        source.replace("fn world() -> String {", "fn world() -> String {{"),
    )
    .unwrap();
    let build = chassis(&project, &["build"]);
    assert_eq!(build.status.code(), Some(1));
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(
        err.contains("error") && err.contains("src/lib.rs") && err.contains("cargo build failed"),
        "{err}"
    );
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
