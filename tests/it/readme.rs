//! The walkthroughs of the README and the guides in `docs/`, run for real: the
//! `identityd` binary on a fresh database, the real `grpcurl`, `jq` and `curl`, and the
//! documents' own commands.
//!
//! Every ```sh block between `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->`
//! (a document may have several such parts) runs in order in one bash session. A
//! ```json block right after it must be a subset of the block's last JSON output; a
//! ```text block's lines must all appear in its output. The test also checks that the
//! server's debug log never contains a secret.

use crate::binary::RunningBinary;
use crate::support::{Backend, TEST_MASTER_KEY, TestDb};
use serde_json::Value;
use std::process::Command;

const README: &str = include_str!("../../README.md");
const SECURITY: &str = include_str!("../../docs/security.md");
const ADDRESS_IN_README: &str = "localhost:50051";
const HTTP_ADDRESS_IN_README: &str = "localhost:9090";

/// One runnable step of the walkthrough.
#[derive(Debug)]
struct Step {
    script: String,
    expect: Option<(String, String)>,
}

/// The text of every walkthrough part of `doc`, in order.
fn walkthrough_parts(doc: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("<!-- walkthrough:start -->") {
        let end = rest[start..]
            .find("<!-- walkthrough:end -->")
            .expect("each walkthrough part ends")
            + start;
        parts.push(&rest[start..end]);
        rest = &rest[end..];
    }
    assert!(!parts.is_empty(), "the document has a walkthrough");
    parts
}

fn walkthrough(doc: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let text = walkthrough_parts(doc).join("\n");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let body = body.join("\n");
        match lang {
            "sh" => steps.push(Step {
                script: body,
                expect: None,
            }),
            "json" | "text" => {
                let step = steps.last_mut().expect("an expectation follows a command");
                step.expect = Some((lang.to_owned(), body));
            }
            _ => {}
        }
    }
    steps
}

/// True when every field of `expected` appears in `actual` with a matching value.
fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| json_subset(v, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| json_subset(ev, av))
        }
        _ => expected == actual,
    }
}

/// The last top-level JSON value in grpcurl's output.
fn last_json(output: &str) -> Option<Value> {
    let start = output
        .rfind("\n{")
        .map(|i| i + 1)
        .or_else(|| output.find('{'))?;
    serde_json::from_str(&output[start..]).ok()
}

fn require_tool(name: &str) {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(name)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} must be on PATH for the README walkthrough (.ci/run installs it)"
    );
}

/// What a document's walkthrough holds secret: shell variables it sets to secrets, and
/// secrets it types itself; at least `least` of them must be seen.
struct Secrets {
    variables: &'static [&'static str],
    typed: &'static [&'static str],
    least: usize,
}

const README_SECRETS: Secrets = Secrets {
    variables: &[
        "T1",
        "T2",
        "ALICE1",
        "ALICE2",
        "CLIENT_SECRET",
        "MACHINE",
        "AT1",
        "RT1",
        "RT2",
        "AT3",
        "AT4",
    ],
    typed: &[],
    least: 13,
};

const SECURITY_SECRETS: Secrets = Secrets {
    variables: &[],
    typed: &["correct horse battery staple", "guess-1", "guess-10"],
    least: 5,
};

fn run_walkthrough(doc: &str, secrets_held: &Secrets, backend: Backend) {
    require_tool("grpcurl");
    require_tool("jq");
    require_tool("curl");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(TestDb::new(backend));
    // SQLite generates its master key beside the database; PostgreSQL needs one given.
    let mut env = vec![("IDENTITYD_LOG", "debug")];
    if backend == Backend::Postgres {
        env.push(("IDENTITYD_MASTER_KEY", TEST_MASTER_KEY));
    }
    let server = RunningBinary::start(&["--database-url", &db.url], &env);
    let steps = walkthrough(doc);
    assert!(steps.len() >= 4, "walkthrough has its steps");

    // One bash session: variables set by one step are seen by the next.
    let separator = "__IDENTITYD_STEP__";
    let mut script = String::from("set -euo pipefail\n");
    for step in &steps {
        script.push_str(
            &step
                .script
                .replace(ADDRESS_IN_README, &server.address)
                .replace(HTTP_ADDRESS_IN_README, &server.http_address),
        );
        script.push_str(&format!("\necho {separator}\n"));
    }
    // Finally, print the credentials the walkthrough held, to check the log against them.
    if !secrets_held.variables.is_empty() {
        let printed: Vec<String> = secrets_held
            .variables
            .iter()
            .map(|v| format!("\"${{{v}:-}}\""))
            .collect();
        script.push_str(&format!("printf 'secret:%s\\n' {}\n", printed.join(" ")));
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("ADMIN", &server.admin_header)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outputs: Vec<&str> = stdout.split(&format!("{separator}\n")).collect();
    for (i, step) in steps.iter().enumerate() {
        let Some((kind, expected)) = &step.expect else {
            continue;
        };
        let out = outputs[i];
        if kind == "json" {
            let expected: Value = serde_json::from_str(expected).expect("README json block parses");
            let actual =
                last_json(out).unwrap_or_else(|| panic!("step {i} printed no JSON:\n{out}"));
            assert!(
                json_subset(&expected, &actual),
                "step {i}:\n{}\nexpected ⊆\n{expected:#}\ngot\n{actual:#}",
                step.script
            );
        } else {
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    out.contains(line.trim()),
                    "step {i}: {line:?} not in\n{out}"
                );
            }
        }
    }

    // Every token the walkthrough saw, and the bootstrap secrets, stay out of the log.
    let mut secrets = server.secrets.clone();
    secrets.extend(
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("secret:"))
            .map(|s| s.trim_start_matches("Basic ").to_owned()),
    );
    secrets.extend(secrets_held.typed.iter().map(|s| (*s).to_owned()));
    assert!(
        secrets.iter().filter(|s| !s.is_empty()).count() >= secrets_held.least,
        "{secrets:?}"
    );
    let log = server.stop();
    assert!(log.contains("checked"), "debug log was captured");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}

#[test]
fn readme_walkthrough_sqlite() {
    run_walkthrough(README, &README_SECRETS, Backend::Sqlite);
}

#[test]
fn readme_walkthrough_postgres() {
    run_walkthrough(README, &README_SECRETS, Backend::Postgres);
}

#[test]
fn security_walkthrough_sqlite() {
    run_walkthrough(SECURITY, &SECURITY_SECRETS, Backend::Sqlite);
}

#[test]
fn security_walkthrough_postgres() {
    run_walkthrough(SECURITY, &SECURITY_SECRETS, Backend::Postgres);
}

#[test]
fn subset_matching_can_fail() {
    let actual: Value = serde_json::json!({"a": 1, "b": {"c": [1, 2]}});
    assert!(json_subset(
        &serde_json::json!({"b": {"c": [1, 2]}}),
        &actual
    ));
    assert!(!json_subset(&serde_json::json!({"b": {"c": [1]}}), &actual));
    assert!(!json_subset(&serde_json::json!({"a": 2}), &actual));
    assert!(!json_subset(&serde_json::json!({"z": 1}), &actual));
}
