//! Headless Chromium for the status page's tests: the page loaded from a
//! running `chassis serve`, its DOM after the script ran, and a screenshot.
//!
//! The browser is `CHASSIS_CHROMIUM`, or `chromium`, `chromium-browser` or
//! `google-chrome` on `PATH`. `cargo xtask test` installs Debian's
//! `chromium` where it is missing; where it cannot, it sets
//! `CHASSIS_BROWSER_SKIP` to the reason (and under CI it fails instead).
//!
//! [`skip_or_fail`] is how every test that needs something of the machine
//! (a browser here, a mount for the full-disk test in `crash.rs`) decides
//! when it cannot have it: outside CI it prints a `SKIPPED:` line with the
//! reason and the test passes; under CI (`CI` set, not empty, `0` or
//! `false`) the test fails with the reason. CI never passes a test that did
//! not run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A headless browser with its own empty profile.
pub struct Browser {
    path: PathBuf,
    profile: PathBuf,
}

impl Browser {
    /// The browser, or `None` (with the reason printed) where the tests
    /// skip; under CI, without a browser, a panic saying why.
    pub fn find(scratch: &Path) -> Option<Browser> {
        Self::find_with(scratch, &|name| std::env::var_os(name))
    }

    /// [`Browser::find`] with the environment read through `env`.
    pub fn find_with(scratch: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Option<Browser> {
        let path = env("CHASSIS_CHROMIUM").map(PathBuf::from).or_else(|| {
            let dirs = env("PATH")?;
            std::env::split_paths(&dirs).find_map(|dir| {
                ["chromium", "chromium-browser", "google-chrome"]
                    .iter()
                    .map(|name| dir.join(name))
                    .find(|p| p.is_file())
            })
        });
        let Some(path) = path else {
            let why = env("CHASSIS_BROWSER_SKIP")
                .map(|why| why.to_string_lossy().into_owned())
                .unwrap_or_else(|| {
                    "no chromium on PATH (nor CHASSIS_CHROMIUM): install it (`apt-get install \
                     chromium`) or run `cargo xtask test`, which does"
                        .to_string()
                });
            let ci = is_ci(env("CI").as_deref().and_then(|v| v.to_str()));
            skip_or_fail_in(
                ci,
                &format!("no headless browser for the status page: {why}"),
            );
            return None;
        };
        let profile = scratch.join("browser-profile");
        std::fs::create_dir_all(&profile).unwrap();
        Some(Browser { path, profile })
    }

    /// The page's DOM as serialized after its script ran (`budget_ms` of
    /// the page's own time: its polls and their answers).
    pub fn dom(&self, url: &str, budget_ms: u64) -> String {
        let out = self.run(&["--dump-dom".to_string()], url, budget_ms);
        String::from_utf8(out).expect("the DOM is UTF-8")
    }

    /// A PNG screenshot of the page, `width` by `height`, into `to`.
    pub fn screenshot(&self, url: &str, budget_ms: u64, to: &Path, width: u32, height: u32) {
        let _ = std::fs::remove_file(to);
        self.run(
            &[
                format!("--screenshot={}", to.display()),
                format!("--window-size={width},{height}"),
                "--hide-scrollbars".to_string(),
            ],
            url,
            budget_ms,
        );
        let png = std::fs::read(to).expect("the browser wrote a screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    }

    fn run(&self, extra: &[String], url: &str, budget_ms: u64) -> Vec<u8> {
        let out_file = self.profile.with_extension("out");
        let err_file = self.profile.with_extension("err");
        let stderr = || {
            let text = std::fs::read_to_string(&err_file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        let mut child = Command::new(&self.path)
            .args([
                "--headless",
                // Root in a container has no user namespace for the sandbox;
                // the page is the test's own.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .arg(format!("--virtual-time-budget={budget_ms}"))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_file).unwrap())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", self.path.display()));
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not finish within 120 s; its stderr ends:\n{}",
                    self.path.display(),
                    stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{} failed: {status}; its stderr ends:\n{}",
            self.path.display(),
            stderr()
        );
        std::fs::read(&out_file).unwrap()
    }
}

/// The element of `html` that opens with the tag around `marker`: from
/// the `<tag` before it to its `</tag>`. Panics, showing the page, when
/// `marker` is not there.
pub fn element<'a>(html: &'a str, tag: &str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the page:\n{html}"));
    let start = html[..at]
        .rfind(&format!("<{tag}"))
        .expect("an opening tag");
    let end = at
        + html[at..]
            .find(&format!("</{tag}>"))
            .expect("a closing tag");
    &html[start..end + tag.len() + 3]
}

/// Whether the value of `CI` means the tests run under CI: set, and not
/// empty, `0` or `false`.
pub fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// A test that cannot run its real part, for the reason `why`: a
/// `SKIPPED:` line (the caller then returns), or under CI a failure.
pub fn skip_or_fail(why: &str) {
    skip_or_fail_in(is_ci(std::env::var("CI").ok().as_deref()), why);
}

/// [`skip_or_fail`], told whether this is CI: panics with `why` when
/// `ci`, else prints `SKIPPED: why`.
pub fn skip_or_fail_in(ci: bool, why: &str) {
    if ci {
        panic!("CI is set, and this test cannot run its real part: {why}");
    }
    eprintln!("SKIPPED: {why}");
}
