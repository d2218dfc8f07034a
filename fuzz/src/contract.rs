//! Target `contract`: the contract parser and validator
//! (`ServiceContract::from_toml`). Any text is a contract or a typed error,
//! never a panic; the error's message stays bounded however large the
//! input; a case takes bounded time (the slowest is reported).
//!
//! Inputs: random bytes, and the example contracts mutated line by line —
//! lines deleted, duplicated, cut, values replaced by hostile ones (huge,
//! negative, non-finite, wrong types, control characters, paths out of the
//! tree, private addresses), bytes spliced in.

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};

/// The example contracts the mutations start from.
const SEEDS: &[&str] = &[
    include_str!("../../config/hello-world.toml"),
    include_str!("../../config/analyzer.toml"),
    include_str!("../../config/api-client.toml"),
    include_str!("../../config/guardian-council.toml"),
    include_str!("../../config/bench-probe.toml"),
    include_str!("../../config/research-agent-001.toml"),
];

/// The longest error message a contract may produce, in bytes: the
/// message's bound, the field's and room for the file name and position.
pub const MAX_ERROR_BYTES: usize = chassis::contract::MAX_CONTRACT_ERROR_BYTES + 512;

/// Values an attacker would try in a contract field.
const HOSTILE_VALUES: &[&str] = &[
    "-1",
    "0",
    "18446744073709551616",
    "-9223372036854775809",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "0.0000000001",
    "\"\"",
    "\"\\u0000\"",
    "\"\\u001b[31mred\"",
    "\"../../../../etc/passwd\"",
    "\"/dev/zero\"",
    "\"http://169.254.169.254/latest/meta-data/\"",
    "\"https://[::ffff:127.0.0.1]/\"",
    "\"*\"",
    "[]",
    "[[]]",
    "{}",
    "{ a = { b = { c = 1 } } }",
    "true",
    "1979-05-27T07:32:00Z",
    "0x7fffffff",
    "\"wasi:filesystem/types\"",
    "[\"wasi:sockets/tcp\", \"wasi:io/streams\"]",
];

/// One change to a seed contract.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SetValue { line: usize, value: String },
    InsertLine { at: usize, text: String },
    Splice { at: usize, bytes: Vec<u8> },
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let value = prop_oneof![
        proptest::sample::select(HOSTILE_VALUES).prop_map(str::to_string),
        "[ -~]{0,40}".prop_map(|s| s),
        (1usize..200_000).prop_map(|n| format!("\"{}\"", "a".repeat(n))),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:?}")),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), value).prop_map(|(line, value)| Edit::SetValue { line, value }),
        (any::<usize>(), "[ -~]{0,60}").prop_map(|(at, text)| Edit::InsertLine { at, text }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(at, bytes)| Edit::Splice { at, bytes }),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// A seed with `edits` applied.
fn mutate(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = seed.lines().map(|l| l.as_bytes().to_vec()).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::SetValue { line, value } if !lines.is_empty() => {
                let l = &mut lines[line % n];
                if let Some(eq) = l.iter().position(|&b| b == b'=') {
                    l.truncate(eq + 1);
                    l.push(b' ');
                    l.extend_from_slice(value.as_bytes());
                }
            }
            Edit::InsertLine { at, text } => {
                lines.insert(at % (lines.len() + 1), text.as_bytes().to_vec());
            }
            Edit::Splice { at, bytes } if !lines.is_empty() => {
                let l = &mut lines[at % n];
                let at = at % (l.len() + 1);
                l.splice(at..at, bytes.iter().copied());
            }
            Edit::Truncate(i) => lines.truncate(i % (lines.len() + 1)),
            _ => {}
        }
    }
    lines.join(&b'\n')
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
        4 => (0..SEEDS.len(), proptest::collection::vec(edit(), 1..6))
            .prop_map(|(seed, edits)| mutate(SEEDS[seed], &edits)),
    ]
}

/// The property, for one input.
pub fn check_bytes(input: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    match chassis::ServiceContract::from_toml(&text, "fuzz.toml") {
        Ok(contract) => contract
            .validate()
            .map_err(|e| format!("parsed, then refused by validate: {e}")),
        Err(e) => {
            let message = e.to_string();
            if message.len() > MAX_ERROR_BYTES {
                return Err(format!(
                    "an error message of {} bytes (over {MAX_ERROR_BYTES}): {}...",
                    message.len(),
                    &message[..message.floor_char_boundary(200)]
                ));
            }
            Ok(())
        }
    }
}

/// One batch of cases.
pub(crate) fn fuzz(
    runner: &mut TestRunner,
    slowest: &mut std::time::Duration,
) -> Result<(), (String, Vec<u8>)> {
    let slowest_here = std::cell::Cell::new(*slowest);
    let result = runner.run(&input(), |bytes| {
        crate::timed(&slowest_here, || check_bytes(&bytes)).map_err(TestCaseError::fail)
    });
    *slowest = slowest_here.get();
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, input)) => Err((reason.to_string(), input)),
        Err(TestError::Abort(reason)) => Err((reason.to_string(), Vec::new())),
    }
}
