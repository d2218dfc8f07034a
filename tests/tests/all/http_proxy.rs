//! The HTTP proxy through real components against a real server on
//! 127.0.0.1: allowlist, SSRF guard, redirects, size caps, timeouts,
//! bandwidth, and credential injection.

use std::time::Instant;

use chassis::{Event, TaskRequest};
use chassis_tests::{Host, TestCa, TestHost, TestServer, guests};
use serde_json::{Value, json};

struct Setup {
    host: Host,
    server: TestServer,
}

/// Resource limits of most tests: room for everything.
const ROOMY: &str =
    "task_timeout_seconds = 20\nmax_network_bandwidth_mbps = 100\nmax_api_calls_per_second = 100";

/// A host with `guest` loaded as `id` under `limits`, allowed
/// `endpoints` (`{port}` is the test server's), holding `secrets` for it.
async fn setup(
    guest: &str,
    id: &str,
    endpoints: &[&str],
    limits: &str,
    secrets: &[(&str, &str)],
) -> Setup {
    let server = TestServer::start();
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{:?}", e.replace("{port}", &server.port.to_string())))
        .collect();
    // The egress guest imports credentials, so it needs at least one in scope.
    let mut scoped: Vec<String> = secrets.iter().map(|(k, _)| format!("{k:?}")).collect();
    scoped.push("\"unused\"".to_string());
    let text = format!(
        "swarm_id = \"{id}\"\n[resource_limits]\n{limits}\n\
         [security]\nnetwork_access = \"proxy_only\"\nallowed_endpoints = [{}]\nscoped_credentials = [{}]\n",
        endpoints.join(", "),
        scoped.join(", ")
    );
    let host = secrets
        .iter()
        .fold(TestHost::new(), |host, (k, v)| host.secret(id, k, *v))
        .memory_sink()
        .component(guest, text)
        .build()
        .await;
    Setup { host, server }
}

async fn run(s: &Setup, id: &str, task: &str, payload: Value) -> chassis::TaskOutcome {
    s.host
        .execute_task(id, TaskRequest::new(task, payload))
        .await
        .unwrap()
}

async fn fetch(s: &Setup, url: &str) -> Value {
    run(s, "egress", "exfiltrate", json!({ "url": url }))
        .await
        .output
}

fn refused(out: &Value) -> &str {
    out["refused"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refusal, got {out}"))
}

fn proxy_events(host: &Host) -> Vec<Value> {
    host.events()
        .into_iter()
        .filter(|e| matches!(e, Event::HttpProxy { .. }))
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

#[tokio::test]
async fn allowed_get_and_post_reach_the_server() {
    let s = setup(
        guests::API_CLIENT,
        "api-client",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[("api_token", "tok-123")],
    )
    .await;
    let o = run(
        &s,
        "api-client",
        "fetch_json",
        json!({"url": s.server.url("127.0.0.1", "/v1/hello")}),
    )
    .await;
    assert_eq!(o.output, json!({"status": 200, "json": {"hello": "world"}}));
    let o = run(
        &s,
        "api-client",
        "fetch_json",
        json!({"url": s.server.url("127.0.0.1", "/v1/echo"), "method": "post", "body": {"x": [1, 2]}}),
    )
    .await;
    assert_eq!(o.output, json!({"status": 200, "json": {"x": [1, 2]}}));
    let got = s.server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[1].method.as_str(), got[1].body.as_slice()),
        ("POST", br#"{"x":[1,2]}"#.as_slice())
    );
    let events = proxy_events(&s.host);
    assert_eq!(events[0]["allowed"], json!(true));
    assert_eq!(events[0]["status"], json!(200));
    assert_eq!(events[0]["bytes_in"], json!(17));
    assert_eq!(events[1]["method"], json!("POST"));
    assert_eq!(events[1]["bytes_out"], json!(11));
}

#[tokio::test]
async fn the_injected_credential_reaches_the_server_but_never_the_guest() {
    let s = setup(
        guests::API_CLIENT,
        "api-client",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[("api_token", "tok-secret-123")],
    )
    .await;
    let o = run(
        &s,
        "api-client",
        "fetch_json",
        json!({"url": s.server.url("127.0.0.1", "/v1/hello?x=1")}),
    )
    .await;
    assert_eq!(o.output["status"], json!(200));
    let got = s.server.received();
    let auth = got[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Bearer tok-secret-123"));
    assert!(!o.output.to_string().contains("tok-secret-123"));
    let all = serde_json::to_string(&s.host.events()).unwrap();
    assert!(
        !all.contains("tok-secret-123"),
        "the value leaked into events"
    );
    assert!(all.contains("\"operation\":\"inject\""), "{all}");
    // The recorded URL has no query.
    assert_eq!(
        proxy_events(&s.host)[0]["url"],
        json!(format!("http://127.0.0.1:{}/v1/hello", s.server.port))
    );
}

#[tokio::test]
async fn host_scheme_port_and_path_outside_the_allowlist_are_denied() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[],
    )
    .await;
    let port = s.server.port;
    for url in [
        format!("http://localhost:{port}/v1/hello"),       // host
        format!("https://127.0.0.1:{port}/v1/hello"),      // scheme
        format!("http://127.0.0.1:{}/v1/hello", port + 1), // port
        format!("http://127.0.0.1:{port}/admin"),          // path
        format!("http://127.0.0.1:{port}/v1/../admin"),    // path, via dot segments
        "file:///etc/passwd".to_string(),                  // scheme
    ] {
        let out = fetch(&s, &url).await;
        assert!(
            refused(&out).starts_with("ProxyError::Denied"),
            "{url}: {out}"
        );
    }
    assert!(s.server.received().is_empty(), "nothing reached the server");
    let events = proxy_events(&s.host);
    assert_eq!(events.len(), 6);
    assert!(
        events
            .iter()
            .all(|e| e["allowed"] == json!(false) && e["security_violation"] == json!(true))
    );
}

#[tokio::test]
async fn ssrf_forms_are_refused() {
    // The allowlist names these hosts, but none of their addresses literally
    // for these URLs: 127.0.0.1 is named only for another port, which opens
    // nothing else that resolves to it.
    let s = setup(
        guests::EGRESS,
        "egress",
        &[
            "http://localhost:{port}/v1/",
            "http://*.example.com/",
            "http://127.0.0.1:1/",
        ],
        ROOMY,
        &[],
    )
    .await;
    let port = s.server.port;
    let urls = vec![
        format!("http://127.0.0.1:{port}/v1/hello"),
        format!("http://[::1]:{port}/v1/hello"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://2130706433:{port}/v1/hello"),
        format!("http://0x7f000001:{port}/v1/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/v1/hello"),
        format!("http://localhost:{port}/v1/hello"),
    ];
    let o = run(&s, "egress", "probe", json!({ "urls": urls })).await;
    let results = o.output["results"].as_array().unwrap();
    assert_eq!(results.len(), urls.len());
    for r in results {
        assert!(refused(r).starts_with("ProxyError::Denied"), "{r}");
    }
    // The name that resolves to loopback is stopped by the SSRF guard itself.
    let by_name = refused(&results[6]);
    assert!(
        by_name.contains("localhost resolves to") && by_name.contains("SSRF guard"),
        "{by_name}"
    );
    assert!(s.server.received().is_empty(), "nothing reached the server");
    assert_eq!(o.usage.security_violations, urls.len() as u64);
}

#[tokio::test]
async fn a_literally_allowed_loopback_address_is_reachable_in_any_spelling() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[],
    )
    .await;
    let port = s.server.port;
    for url in [
        format!("http://127.0.0.1:{port}/v1/hello"),
        format!("http://2130706433:{port}/v1/hello"),
    ] {
        let out = fetch(&s, &url).await;
        assert_eq!(out["status"], json!(200), "{url}: {out}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[],
    )
    .await;
    let out = fetch(&s, &s.server.url("127.0.0.1", "/v1/redirect")).await;
    assert_eq!(out["status"], json!(302));
    assert_eq!(s.server.received().len(), 1);
    // Following the Location by hand is checked like any request.
    let out = fetch(&s, "http://169.254.169.254/latest/meta-data/").await;
    assert!(refused(&out).contains("not in allowed_endpoints"), "{out}");
}

#[tokio::test]
async fn an_oversized_response_is_refused() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[],
    )
    .await;
    let out = fetch(&s, &s.server.url("127.0.0.1", "/v1/bytes?n=5000000")).await;
    assert!(refused(&out).starts_with("ProxyError::TooLarge"), "{out}");
    let out = fetch(&s, &s.server.url("127.0.0.1", "/v1/bytes?n=1000")).await;
    assert_eq!(out["status"], json!(200));
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_it_is_sent() {
    let s = setup(
        guests::API_CLIENT,
        "api-client",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[("api_token", "tok-123")],
    )
    .await;
    let post = |n: usize| {
        json!({
            "url": s.server.url("127.0.0.1", "/v1/sink"),
            "method": "post",
            "body": "a".repeat(n),
        })
    };
    // A JSON string body is its text plus two quotes.
    let limit = chassis::caps::MAX_PROXY_REQUEST_BYTES;
    let o = run(&s, "api-client", "fetch_json", post(limit - 1)).await;
    let err = o.error.unwrap().to_string();
    assert!(
        err.contains("too large") && err.contains(&format!("request body over {limit} bytes")),
        "{err}"
    );
    assert!(s.server.received().is_empty(), "nothing was sent");
    let o = run(&s, "api-client", "fetch_json", post(limit - 2)).await;
    assert_eq!(
        o.output,
        json!({"status": 200, "json": {"received": limit}})
    );
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout_inside_the_task_deadline() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        "task_timeout_seconds = 2",
        &[],
    )
    .await;
    // The guest gets the timeout before its own deadline, so it can still
    // answer (past its deadline the task would end as a Timeout error).
    let out = fetch(&s, &s.server.url("127.0.0.1", "/v1/slow")).await;
    assert!(refused(&out).starts_with("ProxyError::Timeout"), "{out}");
    // The proxy let it out; it failed on the network: an allowed request
    // with a reason, not a denial.
    let events = proxy_events(&s.host);
    assert_eq!(events[0]["allowed"], json!(true), "{events:?}");
    assert!(events[0]["reason"].is_string(), "{events:?}");
    assert_eq!(events[0]["security_violation"], json!(false));
}

#[tokio::test]
async fn bandwidth_is_shaped_to_the_contract() {
    // 8 Mbit/s = 1 MB/s; 2 MB should take about 2 s (bursts are 0.1 s).
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        "task_timeout_seconds = 20\nmax_network_bandwidth_mbps = 8",
        &[],
    )
    .await;
    let started = Instant::now();
    let out = fetch(&s, &s.server.url("127.0.0.1", "/v1/bytes?n=2000000")).await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"].as_str().unwrap().len(), 2_000_000);
    assert!(took > 1.5, "2 MB at 1 MB/s took only {took:.2} s");
    assert!(took < 8.0, "2 MB at 1 MB/s took {took:.2} s");
}

#[tokio::test]
async fn uploads_are_shaped_too() {
    // 4 Mbit/s = 0.5 MB/s; a 1 MB body should take about 2 s to go out.
    let s = setup(
        guests::API_CLIENT,
        "api-client",
        &["http://127.0.0.1:{port}/v1/"],
        "task_timeout_seconds = 20\nmax_network_bandwidth_mbps = 4",
        &[("api_token", "tok-123")],
    )
    .await;
    let started = Instant::now();
    let o = run(
        &s,
        "api-client",
        "fetch_json",
        json!({
            "url": s.server.url("127.0.0.1", "/v1/sink"),
            "method": "post",
            "body": "a".repeat(999_998),
        }),
    )
    .await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        o.output,
        json!({"status": 200, "json": {"received": 1_000_000}})
    );
    assert!(took > 1.5, "1 MB up at 0.5 MB/s took only {took:.2} s");
    assert!(took < 8.0, "1 MB up at 0.5 MB/s took {took:.2} s");
}

#[tokio::test]
async fn a_secret_cannot_be_sent_to_a_denied_host() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[("api_key", "never-sent")],
    )
    .await;
    let o = run(
        &s,
        "egress",
        "send_secret",
        json!({"name": "api_key", "url": s.server.url("localhost", "/collect")}),
    )
    .await;
    assert!(
        refused(&o.output).starts_with("ProxyError::Denied"),
        "{}",
        o.output
    );
    assert!(s.server.received().is_empty());
    assert_eq!(o.usage.security_violations, 1);
    // To an allowed endpoint it goes, as a header the guest never sees.
    let o = run(
        &s,
        "egress",
        "send_secret",
        json!({"name": "api_key", "url": s.server.url("127.0.0.1", "/v1/hello")}),
    )
    .await;
    assert_eq!(o.output["status"], json!(200));
    assert!(!o.output.to_string().contains("never-sent"));
}

#[tokio::test]
async fn fetches_over_the_call_rate_are_refused_with_a_typed_error() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        "task_timeout_seconds = 20\nmax_network_bandwidth_mbps = 100\nmax_api_calls_per_second = 2",
        &[],
    )
    .await;
    let url = s.server.url("127.0.0.1", "/v1/hello");
    let o = run(
        &s,
        "egress",
        "probe",
        json!({ "urls": [&url, &url, &url, &url] }),
    )
    .await;
    let results = o.output["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], json!(200));
    assert_eq!(results[1]["status"], json!(200));
    for r in &results[2..] {
        assert!(refused(r).starts_with("ProxyError::RateLimited"), "{r}");
    }
    assert_eq!(
        s.server.received().len(),
        2,
        "refused calls never reach the server"
    );
    assert_eq!(o.usage.rate_limited_calls, 2);
}

/// `https` goes through a real TLS handshake whose certificate is verified:
/// refused from a CA the host does not trust, served once it does.
#[tokio::test]
async fn https_certificates_are_verified_against_the_hosts_roots() {
    let ca = TestCa::new();
    let server = TestServer::start_tls(&ca);
    let text = format!(
        "swarm_id = \"egress\"\n[security]\nnetwork_access = \"proxy_only\"\n\
         allowed_endpoints = [\"https://127.0.0.1:{}/v1/\"]\nscoped_credentials = [\"unused\"]\n",
        server.port
    );
    let url = format!("https://127.0.0.1:{}/v1/hello", server.port);
    for trusted in [false, true] {
        let mut host = TestHost::new();
        if trusted {
            host = host.config(|c| c.with_root_certificate(ca.root_der.clone()));
        }
        let chassis = host.component(guests::EGRESS, &text).build().await;
        let out = chassis
            .execute_task(
                "egress",
                TaskRequest::new("exfiltrate", json!({ "url": url })),
            )
            .await
            .unwrap()
            .output;
        if trusted {
            assert_eq!(out["status"], json!(200), "{out}");
            assert_eq!(out["body"], json!("{\"hello\":\"world\"}"));
            assert_eq!(server.received().len(), 1);
        } else {
            let why = refused(&out);
            assert!(
                why.starts_with("ProxyError::Network") && why.contains("certificate"),
                "{why}"
            );
            assert!(server.received().is_empty(), "nothing was sent unverified");
        }
    }
    // A root that is not a certificate is refused when the host is set up.
    let err = TestHost::new()
        .config(|c| c.with_root_certificate(b"nope".to_vec()))
        .try_build()
        .await
        .err()
        .expect("a bad root is refused");
    assert!(
        err.to_string().contains("extra root certificate #1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_recorded_as_escaped_bounded_text() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        ROOMY,
        &[],
    )
    .await;
    let long = "x".repeat(100_000);
    let bad = format!("http://exa mple.com/\u{1b}[2K\u{202e}{long}?token=abc#frag");
    let out = fetch(&s, &bad).await;
    assert!(
        refused(&out).starts_with("ProxyError::InvalidRequest"),
        "{out}"
    );
    let events = proxy_events(&s.host);
    let url = events[0]["url"].as_str().unwrap();
    // What the guest sent, up to its query: escaped, bounded, never empty.
    assert!(
        url.starts_with("http://exa mple.com/\\u{1b}[2K\\u{202e}xxx"),
        "{url}"
    );
    assert!(!url.chars().any(chassis::text::is_unsafe), "{url:?}");
    assert!(
        url.len() < 1200 && url.contains("[truncated"),
        "{} bytes",
        url.len()
    );
    assert!(!url.contains("token"), "{url}");
    assert_eq!(events[0]["allowed"], false);
}

/// `[budget] network_bytes`: the bytes through the proxy are the swarm's
/// for the period; the exchange that would pass the budget is refused as
/// `rate_limited` (a proxy error the guest sees), what fits still passes,
/// and once the budget is spent the next task is refused before it runs.
#[tokio::test]
async fn a_network_budget_refuses_what_would_pass_it() {
    let s = setup(
        guests::EGRESS,
        "egress",
        &["http://127.0.0.1:{port}/v1/"],
        &format!("{ROOMY}\n[budget]\nnetwork_bytes = 3000"),
        &[],
    )
    .await;
    let url = |n: u32| s.server.url("127.0.0.1", &format!("/v1/bytes?n={n}"));
    let o = run(
        &s,
        "egress",
        "probe",
        json!({ "urls": [url(2000), url(2000)] }),
    )
    .await;
    let results = o.output["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], json!(200));
    let refusal = refused(&results[1]);
    assert!(
        refusal.starts_with("ProxyError::RateLimited") && refusal.contains("network budget"),
        "{refusal}"
    );
    assert_eq!(fetch(&s, &url(1000)).await["status"], json!(200));
    let e = s
        .host
        .execute_task(
            "egress",
            TaskRequest::new("exfiltrate", json!({ "url": url(10) })),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            chassis::Error::Task(chassis::TaskError::BudgetExhausted {
                budget: chassis::BudgetKind::NetworkBytes,
                ..
            })
        ),
        "{e}"
    );
}
