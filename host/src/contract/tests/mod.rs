use super::*;

mod limits;

fn parse(text: &str) -> Result<ServiceContract, ContractError> {
    ServiceContract::from_toml(text, "test.toml")
}

/// Assert `text` is refused with an error on `line` naming `field`, whose
/// message contains `needle`.
#[track_caller]
fn refused(text: &str, line: usize, field: &str, needle: &str) {
    let err = parse(text).expect_err("contract should be refused");
    let shown = err.to_string();
    match &err {
        ContractError::Invalid {
            origin,
            line: l,
            field: f,
            message,
            ..
        } => {
            assert_eq!(origin, "test.toml", "{shown}");
            assert_eq!(*l, line, "wrong line in {shown}");
            assert_eq!(f, field, "wrong field in {shown}");
            assert!(message.contains(needle), "{shown} lacks {needle:?}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(shown.starts_with(&format!("test.toml:{line}:")), "{shown}");
    assert!(shown.contains(field), "{shown}");
}

#[test]
fn minimal_contract_gets_the_documented_defaults() {
    let c = parse("swarm_id = \"tiny\"").unwrap();
    assert_eq!(c.version, "1.0");
    assert_eq!(c.resource_limits, ResourceLimits::default());
    assert_eq!(c.resource_limits.max_cpu_percent, 25);
    assert_eq!(c.resource_limits.max_memory_mb, 256);
    assert_eq!(c.resource_limits.max_api_calls_per_second, 10);
    assert_eq!(c.resource_limits.task_timeout_seconds, 300.0);
    assert_eq!(c.slo_targets.response_time_p95_ms, 100.0);
    assert_eq!(c.slo_targets.throughput_rps, 10.0);
    assert_eq!(c.slo_targets.availability_percent, 99.9);
    assert_eq!(c.security.network_access, NetworkAccess::None);
    assert_eq!(c.security.filesystem_access, FilesystemAccess::None);
    assert!(c.security.scoped_credentials.is_empty());
    assert!(c.security.wasi_capabilities.is_empty());
    assert_eq!(c.reputation.slo_weight, 0.7);
    assert_eq!(c.reputation.security_weight, 0.3);
}

#[test]
fn full_seed_contract_parses() {
    let text = r#"
swarm_id = "guardian-council"
wasm_module = "guardian_council.wasm"
version = "1.0"
created_at = 2025-11-12T00:00:00Z
capabilities = ["governance:vote"]

[resource_limits]
max_cpu_percent = 50
max_memory_mb = 512
max_network_bandwidth_mbps = 10
max_concurrent_tasks = 8
task_timeout_seconds = 30
max_api_calls_per_second = 10

[slo_targets]
response_time_p95_ms = 150
error_rate_percent = 0.5
availability_percent = 99.9

[security]
scoped_credentials = ["h323_gatekeeper_api_key", "guardian_signing_key"]
wasi_capabilities = ["wasi:io/streams", "wasi:clocks/wall-clock", "wasi:random/random"]
filesystem_access = "none"
network_access = "proxy_only"
allowed_endpoints = ["https://gatekeeper.example:443/api/", "https://*.example.org"]

[reputation]
initial_score = 0.98
slo_weight = 0.7
security_weight = 0.3

[metadata]
author = "guardians"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.resource_limits.max_concurrent_tasks, 8);
    assert_eq!(c.resource_limits.task_timeout_seconds, 30.0);
    assert_eq!(c.slo_targets.error_rate_percent, 0.5);
    assert_eq!(c.security.network_access, NetworkAccess::ProxyOnly);
    assert!(c.grants_wasi("wasi:random/random"));
    assert!(!c.grants_wasi("wasi:clocks/monotonic-clock"));
    assert_eq!(c.metadata["author"].as_str(), Some("guardians"));
    // A round trip through TOML keeps every field.
    assert_eq!(parse(&c.to_toml()).unwrap(), c);
}

#[test]
fn first_seed_field_names_are_accepted_as_aliases() {
    let c = parse(
        "swarm_id = \"a\"\n[resource_limits]\nmax_execution_time_seconds = 120\n\
         [slos]\ntarget_latency_ms = 250\ntarget_throughput_rps = 5\ntarget_availability_percent = 99\n",
    )
    .unwrap();
    assert_eq!(c.resource_limits.task_timeout_seconds, 120.0);
    assert_eq!(c.slo_targets.response_time_p95_ms, 250.0);
    assert_eq!(c.slo_targets.throughput_rps, 5.0);
    assert_eq!(c.slo_targets.availability_percent, 99.0);
}

#[test]
fn unknown_field_names_file_line_and_field() {
    refused(
        "swarm_id = \"a\"\n\n[resource_limits]\nmax_cpu_percent = 10\nmax_gpus = 2\n",
        5,
        "resource_limits.max_gpus",
        "unknown field `max_gpus`",
    );
    refused(
        "swarm_id = \"a\"\nfoo = 1\n",
        2,
        "foo",
        "unknown field `foo`",
    );
}

#[test]
fn created_at_is_a_datetime_or_a_unix_timestamp() {
    let at = |v: &str| {
        ServiceContract::from_toml(&format!("swarm_id = \"a\"\ncreated_at = {v}\n"), "c.toml")
            .map(|c| c.created_at)
    };
    assert!(matches!(
        at("2025-11-12T00:00:00Z"),
        Ok(Some(CreatedAt::Datetime(_)))
    ));
    assert_eq!(
        at("1762905600.5").unwrap(),
        Some(CreatedAt::UnixSeconds(1_762_905_600.5))
    );
    assert_eq!(
        at("1762905600").unwrap(),
        Some(CreatedAt::UnixSeconds(1_762_905_600.0))
    );
    refused(
        "swarm_id = \"a\"\ncreated_at = \"yesterday\"\n",
        2,
        "created_at",
        "expected a TOML datetime or seconds since the Unix epoch",
    );
    refused(
        "swarm_id = \"a\"\ncreated_at = -5\n",
        2,
        "created_at",
        "seconds since the Unix epoch",
    );
}

#[test]
fn wrong_type_names_the_field() {
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_memory_mb = \"lots\"\n",
        3,
        "resource_limits.max_memory_mb",
        "invalid type",
    );
    refused(
        "swarm_id = \"a\"\n[security]\nscoped_credentials = \"k\"\n",
        3,
        "security.scoped_credentials",
        "invalid type",
    );
}

#[test]
fn missing_swarm_id_is_named() {
    let err = parse("version = \"1\"\n").unwrap_err();
    assert_eq!(err.field(), Some("swarm_id"), "{err}");
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn malformed_toml_is_located() {
    let err = parse("swarm_id = \"a\"\n[resource_limits\n").unwrap_err();
    assert!(err.to_string().starts_with("test.toml:2:"), "{err}");
}

#[test]
fn cpu_out_of_range_is_refused() {
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_cpu_percent = 0\n",
        3,
        "resource_limits.max_cpu_percent",
        "between 1 and 100",
    );
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_cpu_percent = 101\n",
        3,
        "resource_limits.max_cpu_percent",
        "got 101",
    );
}

#[test]
fn zero_memory_is_refused() {
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_memory_mb = 0\n",
        3,
        "resource_limits.max_memory_mb",
        "between 1 and 4096",
    );
}

#[test]
fn other_limits_are_range_checked() {
    refused(
        "swarm_id = \"a\"\n[resource_limits]\ntask_timeout_seconds = 0\n",
        3,
        "resource_limits.task_timeout_seconds",
        "between 0.01 and 86400",
    );
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_concurrent_tasks = 0\n",
        3,
        "resource_limits.max_concurrent_tasks",
        "between 1 and 1024",
    );
    refused(
        "swarm_id = \"a\"\n[slo_targets]\nerror_rate_percent = 120\n",
        3,
        "slo_targets.error_rate_percent",
        "between 0 and 100",
    );
    refused(
        "swarm_id = \"a\"\n[reputation]\ninitial_score = 1.5\n",
        3,
        "reputation.initial_score",
        "between 0 and 1",
    );
}

#[test]
fn weights_must_sum_to_one() {
    refused(
        "swarm_id = \"a\"\n[reputation]\nslo_weight = 0.6\nsecurity_weight = 0.6\n",
        4,
        "reputation.security_weight",
        "sum to 1",
    );
}

#[test]
fn unknown_capability_is_refused() {
    refused(
        "swarm_id = \"a\"\ncapabilities = [\"code-analysis:python\", \"mind-control:all\"]\n",
        2,
        "capabilities[1]",
        "unknown capability \"mind-control:all\"",
    );
    refused(
        "swarm_id = \"a\"\ncapabilities = [\"python\"]\n",
        2,
        "capabilities[0]",
        "unknown capability",
    );
}

#[test]
fn unknown_wasi_capability_is_refused() {
    refused(
        "swarm_id = \"a\"\n[security]\nwasi_capabilities = [\"wasi:io/streams\", \"wasi:sockets/tcp\"]\n",
        3,
        "security.wasi_capabilities[1]",
        "unknown WASI capability",
    );
}

#[test]
fn filesystem_access_other_than_none_is_refused() {
    refused(
        "swarm_id = \"a\"\n[security]\nfilesystem_access = \"full\"\n",
        3,
        "security.filesystem_access",
        "unknown variant `full`",
    );
}

#[test]
fn network_access_must_be_known() {
    refused(
        "swarm_id = \"a\"\n[security]\nnetwork_access = \"direct\"\n",
        3,
        "security.network_access",
        "unknown variant `direct`",
    );
}

#[test]
fn endpoints_need_proxy_only_and_a_valid_shape() {
    refused(
        "swarm_id = \"a\"\n[security]\nallowed_endpoints = [\"https://api.example.com/\"]\n",
        3,
        "security.allowed_endpoints",
        "must be empty",
    );
    refused(
        "swarm_id = \"a\"\n[security]\nnetwork_access = \"proxy_only\"\nallowed_endpoints = [\"ftp://x.example\"]\n",
        4,
        "security.allowed_endpoints[0]",
        "scheme must be http or https",
    );
    refused(
        "swarm_id = \"a\"\n[security]\nnetwork_access = \"proxy_only\"\nallowed_endpoints = [\"https://x.example:99999/\"]\n",
        4,
        "security.allowed_endpoints[0]",
        "invalid port number",
    );
}

#[test]
fn credential_wildcards_and_duplicates_are_refused() {
    refused(
        "swarm_id = \"a\"\n[security]\nscoped_credentials = [\"*\"]\n",
        3,
        "security.scoped_credentials[0]",
        "wildcards are not allowed",
    );
    refused(
        "swarm_id = \"a\"\n[security]\nscoped_credentials = [\"k\", \"k\"]\n",
        3,
        "security.scoped_credentials[1]",
        "listed twice",
    );
}

#[test]
fn bad_swarm_id_is_refused() {
    refused(
        "swarm_id = \"Bad Id!\"\n",
        1,
        "swarm_id",
        "lowercase letters",
    );
}

#[test]
fn file_errors_name_the_file() {
    let err = ServiceContract::from_file("/nonexistent/contract.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/contract.toml: cannot read contract"),
        "{err}"
    );
}

#[test]
fn timeouts_and_latency_targets_have_sane_minimums() {
    refused(
        "swarm_id = \"a\"\n[resource_limits]\ntask_timeout_seconds = 1e-300\n",
        3,
        "resource_limits.task_timeout_seconds",
        "between 0.01 and 86400",
    );
    refused(
        "swarm_id = \"a\"\n[resource_limits]\ntask_timeout_seconds = 0.009\n",
        3,
        "resource_limits.task_timeout_seconds",
        "got 0.009",
    );
    assert!(parse("swarm_id = \"a\"\n[resource_limits]\ntask_timeout_seconds = 0.01\n").is_ok());
    refused(
        "swarm_id = \"a\"\n[slo_targets]\nresponse_time_p95_ms = 1e-300\n",
        3,
        "slo_targets.response_time_p95_ms",
        "between 0.001",
    );
}

#[test]
fn log_budget_and_failure_guard_fields_are_range_checked() {
    let c = parse("swarm_id = \"a\"").unwrap();
    assert_eq!(c.resource_limits.max_log_lines_per_second, 100);
    assert_eq!(c.resource_limits.max_log_bytes_per_second, 65536);
    assert_eq!(c.reputation.failure_window, 20);
    assert_eq!(c.reputation.max_failure_rate_percent, 50.0);
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_log_lines_per_second = 0\n",
        3,
        "resource_limits.max_log_lines_per_second",
        "between 1 and",
    );
    refused(
        "swarm_id = \"a\"\n[resource_limits]\nmax_log_bytes_per_second = 100\n",
        3,
        "resource_limits.max_log_bytes_per_second",
        "between 1024 and",
    );
    refused(
        "swarm_id = \"a\"\n[reputation]\nfailure_window = 0\n",
        3,
        "reputation.failure_window",
        "between 1 and 1000",
    );
    refused(
        "swarm_id = \"a\"\n[reputation]\nmax_failure_rate_percent = 101\n",
        3,
        "reputation.max_failure_rate_percent",
        "between 0 and 100",
    );
}

#[test]
fn both_slo_tables_are_refused_naming_the_second_and_its_line() {
    refused(
        "swarm_id = \"a\"\n[slo_targets]\nerror_rate_percent = 1\n\n[slos]\nerror_rate_percent = 2\n",
        5,
        "slos",
        "duplicate",
    );
}

#[test]
fn a_yaml_contract_gets_a_hint() {
    let err = parse("swarm_id: research-agent-001\nresource_limits:\n  max_memory_mb: 256\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("contracts are TOML"), "{err}");
    let err = parse("--- \nswarm_id: x\n").unwrap_err().to_string();
    assert!(err.contains("contracts are TOML"), "{err}");
    // A TOML mistake gets no YAML hint.
    let err = parse("swarm_id = \"a\"\nx = \n").unwrap_err().to_string();
    assert!(!err.contains("YAML"), "{err}");
}

#[test]
fn a_built_contract_has_the_toml_defaults_and_the_same_checks() {
    let built = ServiceContract::builder("tiny").build().unwrap();
    assert_eq!(built, parse("swarm_id = \"tiny\"").unwrap());
    let text = "swarm_id = \"api\"\nwasm_module = \"api.wasm\"\n\
                [resource_limits]\nmax_memory_mb = 64\nmax_cpu_percent = 50\ntask_timeout_seconds = 5.0\n\
                max_concurrent_tasks = 4\nmax_api_calls_per_second = 20\n\
                [security]\nscoped_credentials = [\"token\"]\nwasi_capabilities = [\"wasi:io/streams\"]\n\
                network_access = \"proxy_only\"\nallowed_endpoints = [\"https://api.example.com/v1/\"]\n\
                [reputation]\ninitial_score = 0.9\n";
    let built = ServiceContract::builder("api")
        .wasm_module("api.wasm")
        .max_memory_mb(64)
        .max_cpu_percent(50)
        .task_timeout_seconds(5.0)
        .max_concurrent_tasks(4)
        .max_api_calls_per_second(20)
        .scoped_credential("token")
        .wasi_capability("wasi:io/streams")
        .proxy_only(["https://api.example.com/v1/"])
        .with(|c| c.reputation.initial_score = 0.9)
        .build()
        .unwrap();
    assert_eq!(built, parse(text).unwrap());
    let err = ServiceContract::builder("bad")
        .max_cpu_percent(0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.field(),
        Some("resource_limits.max_cpu_percent"),
        "{err}"
    );
    let err = ServiceContract::builder("Bad Id").build().unwrap_err();
    assert_eq!(err.field(), Some("swarm_id"), "{err}");
}

/// The names serde reads for `T`'s fields, aliases included: the `FIELDS`
/// list its derive hands `deserialize_struct`.
fn serde_field_names<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::value::Error;
    use serde::de::{Deserializer, Error as _, Visitor};
    struct Probe;
    thread_local! {
        static SEEN: std::cell::Cell<&'static [&'static str]> = const { std::cell::Cell::new(&[]) };
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            SEEN.with(|seen| seen.set(fields));
            Err(Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let _ = T::deserialize(Probe);
    SEEN.with(|seen| seen.get())
}

/// The alias table the error locator uses is the one serde reads: every
/// name serde accepts is a field's own name or an alias listed with it,
/// and every alias listed is accepted beside its field.
#[test]
fn the_alias_table_is_the_one_serde_reads() {
    let contract = parse(
        "swarm_id = \"full\"\nwasm_module = \"x.wasm\"\ncreated_at = 1.0\n\
         [resource_limits]\nmax_fuel = 1000000\n[metadata]\nowner = \"me\"\n\
         [placement]\nlabels = [\"gpu\"]\n\
         [instances]\ntasks_per_instance = 50\n\
         [swarm_limits]\nmax_cpu_percent = 100\nmax_memory_mb = 512\n\
         [budget]\ncpu_seconds = 60.0\nnetwork_bytes = 1000\ntasks = 10\n\
         [reputation]\nselection_threshold = 0.6\n\
         [throttle]\nwindow_tasks = 5\ncircuit_failures = 3\n",
    )
    .unwrap();
    let value = toml::Value::try_from(&contract).unwrap();
    let tables = [
        (serde_field_names::<ServiceContract>(), &value),
        (
            serde_field_names::<ResourceLimits>(),
            &value["resource_limits"],
        ),
        (serde_field_names::<SloTargets>(), &value["slo_targets"]),
        (serde_field_names::<Security>(), &value["security"]),
        (serde_field_names::<Reputation>(), &value["reputation"]),
        (serde_field_names::<Storage>(), &value["storage"]),
        (serde_field_names::<Placement>(), &value["placement"]),
        (serde_field_names::<Instances>(), &value["instances"]),
        (serde_field_names::<SwarmLimits>(), &value["swarm_limits"]),
        (serde_field_names::<Budget>(), &value["budget"]),
        (serde_field_names::<Throttle>(), &value["throttle"]),
    ];
    let mut aliases_seen = Vec::new();
    for (fields, table) in tables {
        let table = table.as_table().unwrap();
        assert!(!fields.is_empty());
        for name in fields {
            if table.contains_key(*name) {
                continue;
            }
            let listed = locate::ALIASES
                .iter()
                .find(|(field, alias)| alias == name && table.contains_key(*field));
            assert!(
                listed.is_some(),
                "serde reads {name:?}, which is neither a field written back nor an alias in locate::ALIASES"
            );
            aliases_seen.push(*name);
        }
    }
    for (_, alias) in locate::ALIASES {
        assert!(
            aliases_seen.contains(alias),
            "{alias:?} is listed but serde does not read it"
        );
    }
}
