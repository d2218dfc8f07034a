//! Which imports a contract permits, decided by name at load time.
//!
//! A pure function of the contract and the import's name, so a component
//! whose type asks for more than its contract grants is refused before any
//! of its code runs.

use crate::contract::{GATED_WASI_CAPABILITIES, NetworkAccess, ServiceContract};

/// Why an import is refused: the contract field that decides it and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The contract field (`(none)` when no field can grant it).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

/// WASI 0.2 interfaces every swarm may import: Rust's standard library needs
/// them, and the host gives them nothing to reach (empty environment, closed
/// stdin, stdout/stderr to the scoped log only with `wasi:io/streams`).
/// `wasi:random/insecure-seed` is here because every `HashMap` asks for it;
/// it only seeds hash tables against collision attacks.
const BASELINE_WASI: &[&str] = &[
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:random/insecure-seed",
];

/// Decide whether the contract permits the import `name`
/// (for example `wasi:cli/stdout@0.2.6` or `infrafabric:chassis/log@0.1.0`).
pub(crate) fn check(contract: &ServiceContract, name: &str) -> Result<(), Refusal> {
    let unversioned = name.split('@').next().unwrap_or(name);
    match unversioned {
        "infrafabric:chassis/types" | "infrafabric:chassis/log" => Ok(()),
        "infrafabric:chassis/credentials" => {
            if contract.security.scoped_credentials.is_empty() {
                Err(Refusal {
                    field: "security.scoped_credentials",
                    reason: "is empty, so the swarm may not use credentials".into(),
                })
            } else {
                Ok(())
            }
        }
        "infrafabric:chassis/storage" => match contract.storage.access {
            crate::contract::StorageAccess::None => Err(Refusal {
                field: "storage.access",
                reason: "is \"none\"; set it to \"read_only\" or \"read_write\" to keep objects".into(),
            }),
            _ => Ok(()),
        },
        "infrafabric:chassis/http-proxy" => match contract.security.network_access {
            NetworkAccess::ProxyOnly => Ok(()),
            NetworkAccess::None => Err(Refusal {
                field: "security.network_access",
                reason: "is \"none\"; set it to \"proxy_only\" (and list allowed_endpoints) to use the HTTP proxy".into(),
            }),
        },
        other if other.starts_with("wasi:sockets/") || other.starts_with("wasi:http/") => {
            Err(Refusal {
                field: "security.network_access",
                reason: "direct network access is never granted; use the infrafabric:chassis/http-proxy import with network_access = \"proxy_only\"".into(),
            })
        }
        other if other.starts_with("wasi:filesystem/") => Err(Refusal {
            field: "security.filesystem_access",
            reason: "is \"none\": swarms get no filesystem".into(),
        }),
        other if BASELINE_WASI.contains(&other) => Ok(()),
        other if GATED_WASI_CAPABILITIES.contains(&other) => {
            if contract.grants_wasi(other) {
                Ok(())
            } else {
                Err(Refusal {
                    field: "security.wasi_capabilities",
                    reason: format!("does not list {other:?}"),
                })
            }
        }
        _ => Err(Refusal {
            field: "(none)",
            reason: "the host provides only infrafabric:chassis and WASI 0.2 interfaces".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(extra: &str) -> ServiceContract {
        ServiceContract::from_toml(&format!("swarm_id = \"t\"\n{extra}"), "t.toml").unwrap()
    }

    #[test]
    fn log_and_baseline_wasi_are_always_permitted() {
        let c = contract("");
        for name in [
            "infrafabric:chassis/log@0.1.0",
            "infrafabric:chassis/types@0.1.0",
            "wasi:cli/stdout@0.2.6",
            "wasi:cli/environment@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:cli/terminal-stderr@0.2.6",
            "wasi:random/insecure-seed@0.2.6",
        ] {
            assert_eq!(check(&c, name), Ok(()), "{name}");
        }
    }

    /// The import table in `docs/security.md` names everything every swarm
    /// is granted, so "anything else: never granted" is true.
    #[test]
    fn the_security_docs_list_every_baseline_grant() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md"))
                .unwrap();
        let table: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("| import |"))
            .take_while(|l| l.starts_with('|'))
            .collect::<Vec<_>>()
            .join("\n");
        let listed = |name: &str| {
            let family = format!("`{}/*`", name.split('/').next().unwrap());
            table.contains(&format!("`{name}`")) || table.contains(&family)
        };
        for name in BASELINE_WASI
            .iter()
            .chain(["infrafabric:chassis/log", "infrafabric:chassis/types"].iter())
        {
            assert_eq!(check(&contract(""), name), Ok(()), "{name}");
            assert!(
                listed(name),
                "docs/security.md's import table does not name {name}"
            );
        }
    }

    #[test]
    fn clocks_and_random_need_a_wasi_capability() {
        let none = contract("");
        let granted = contract(
            "[security]\nwasi_capabilities = [\"wasi:clocks/wall-clock\", \"wasi:random/random\"]",
        );
        for name in ["wasi:clocks/wall-clock@0.2.6", "wasi:random/random@0.2.6"] {
            let refusal = check(&none, name).unwrap_err();
            assert_eq!(refusal.field, "security.wasi_capabilities");
            assert!(refusal.reason.contains(name.split('@').next().unwrap()));
            assert_eq!(check(&granted, name), Ok(()), "{name}");
        }
        // Granting one interface does not grant its neighbours.
        assert!(check(&granted, "wasi:random/insecure@0.2.6").is_err());
        assert!(check(&granted, "wasi:clocks/monotonic-clock@0.2.6").is_err());
    }

    #[test]
    fn filesystem_is_never_permitted() {
        let c = contract("[security]\nwasi_capabilities = [\"wasi:io/streams\"]");
        for name in [
            "wasi:filesystem/types@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
        ] {
            assert_eq!(
                check(&c, name).unwrap_err().field,
                "security.filesystem_access"
            );
        }
    }

    #[test]
    fn credentials_need_scoped_credentials() {
        let denied = check(&contract(""), "infrafabric:chassis/credentials@0.1.0").unwrap_err();
        assert_eq!(denied.field, "security.scoped_credentials");
        let c = contract("[security]\nscoped_credentials = [\"k\"]");
        assert_eq!(check(&c, "infrafabric:chassis/credentials@0.1.0"), Ok(()));
    }

    #[test]
    fn http_proxy_needs_proxy_only() {
        let denied = check(&contract(""), "infrafabric:chassis/http-proxy@0.1.0").unwrap_err();
        assert_eq!(denied.field, "security.network_access");
        let c = contract("[security]\nnetwork_access = \"proxy_only\"");
        assert_eq!(check(&c, "infrafabric:chassis/http-proxy@0.1.0"), Ok(()));
    }

    #[test]
    fn sockets_http_and_unknown_imports_are_refused() {
        let c = contract("[security]\nnetwork_access = \"proxy_only\"");
        assert_eq!(
            check(&c, "wasi:sockets/tcp@0.2.6").unwrap_err().field,
            "security.network_access"
        );
        assert_eq!(
            check(&c, "wasi:http/outgoing-handler@0.2.6")
                .unwrap_err()
                .field,
            "security.network_access"
        );
        assert_eq!(check(&c, "acme:evil/backdoor").unwrap_err().field, "(none)");
        assert_eq!(
            check(&c, "infrafabric:chassis/other").unwrap_err().field,
            "(none)"
        );
    }
}
