//! Every input a fuzz run ever failed on (`fuzz/regressions/<target>/`),
//! replayed through its target's property; and a short run of each target,
//! so a change that breaks a property shows in `cargo test`.

use std::time::Duration;

use chassis_fuzz::{Target, regressions, run};
use chassis_test_support::root;

#[test]
fn every_regression_input_passes_its_target() {
    for target in Target::ALL {
        let dir = regressions(&root(), target);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "README.md") {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            if let Err(why) = target.replay(&root(), &input) {
                panic!("{}: {why}", path.display());
            }
        }
    }
}

#[test]
fn a_short_run_of_each_target_finds_nothing() {
    for target in Target::ALL {
        let report = run(&root(), target, Duration::from_secs(3), 7);
        assert!(report.cases > 0, "{}: no case ran", target.name());
        assert!(
            report.failure.is_none(),
            "{}: {:?}",
            target.name(),
            report
                .failure
                .map(|(why, input)| (why, String::from_utf8_lossy(&input).into_owned()))
        );
    }
}
