//! The task types a swarm serves: the bounds on its `describe` answer,
//! checked once at load, and how a list of them is shown in an error.
//! A leaf module: it knows nothing of components.

/// Most task types a swarm may serve.
pub const MAX_TASK_TYPES: usize = 256;

/// Longest task type name, in bytes.
pub const MAX_TASK_TYPE_BYTES: usize = 64;

/// Check the task types a swarm's `describe` returned: 1 to
/// [`MAX_TASK_TYPES`] of them, each a plain name of 1 to
/// [`MAX_TASK_TYPE_BYTES`] ASCII letters, digits, `_`, `-` or `.`, starting
/// with a letter or digit, none listed twice. The reason quotes at most a
/// short, escaped piece of the guest's text.
pub(crate) fn check_task_types(types: &[String]) -> Result<(), String> {
    if types.is_empty() {
        return Err("no task types: a swarm must serve at least one".to_string());
    }
    if types.len() > MAX_TASK_TYPES {
        return Err(format!(
            "{} task types, more than the {MAX_TASK_TYPES} allowed",
            types.len()
        ));
    }
    for (i, name) in types.iter().enumerate() {
        let shown = || crate::text::escape(name, 32);
        if name.is_empty() || name.len() > MAX_TASK_TYPE_BYTES {
            return Err(format!(
                "task type {} is {} bytes long ({}); names are 1 to {MAX_TASK_TYPE_BYTES} bytes",
                i + 1,
                name.len(),
                shown()
            ));
        }
        let mut chars = name.chars();
        let plain = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(format!(
                "task type {} ({}) is not a plain name: ASCII letters, digits, '_', '-' or '.', starting with a letter or digit",
                i + 1,
                shown()
            ));
        }
        if types[..i].contains(name) {
            return Err(format!("task type {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// The task types for an error message: the first few, then how many more.
pub(crate) fn list_task_types(types: &[String]) -> String {
    const SHOWN: usize = 16;
    let mut text = types
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if types.len() > SHOWN {
        text.push_str(&format!(" and {} more", types.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn task_types_are_bounded_plain_names() {
        assert!(check_task_types(&names(&["hello", "echo", "a.b-c_9"])).is_ok());
        let too_many: Vec<String> = (0..=MAX_TASK_TYPES).map(|i| format!("t{i}")).collect();
        assert!(
            check_task_types(&too_many)
                .unwrap_err()
                .contains("257 task types")
        );
        let long = "x".repeat(MAX_TASK_TYPE_BYTES + 1);
        let err = check_task_types(&[long]).unwrap_err();
        assert!(err.contains("65 bytes long") && err.len() < 200, "{err}");
        let nul = "\0".repeat(3 * 1024 * 1024);
        let err = check_task_types(&[nul]).unwrap_err();
        assert!(err.len() < 200, "{}", err.len());
        for bad in [
            "",
            "-lead",
            "sp ace",
            "new\nline",
            "\u{1b}[2K",
            "ünï",
            "a/b",
        ] {
            assert!(check_task_types(&names(&[bad])).is_err(), "{bad:?}");
        }
        assert!(check_task_types(&[]).is_err());
        assert!(
            check_task_types(&names(&["a", "a"]))
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn an_error_lists_at_most_sixteen_task_types() {
        let many: Vec<String> = (0..200).map(|i| format!("task{i}")).collect();
        let text = list_task_types(&many);
        assert!(text.ends_with("task15 and 184 more"), "{text}");
        assert_eq!(list_task_types(&names(&["a", "b"])), "a, b");
    }
}
