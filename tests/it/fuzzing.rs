//! The fuzz crate as docs/fuzzing.md describes it. Running the fuzzers takes minutes per
//! target (`fuzz/run.sh`), far too long for the test suite, so this checks what can be
//! checked quickly: every target the guide lists is built by the fuzz crate and the
//! other way round, and the script the guide runs is valid bash.

use std::process::Command;

const GUIDE: &str = include_str!("../../docs/fuzzing.md");
const MANIFEST: &str = include_str!("../../fuzz/Cargo.toml");

/// Targets named in the first column of the guide's table.
fn documented() -> Vec<&'static str> {
    GUIDE
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name)
        .collect()
}

/// `[[bin]]` names of the fuzz crate.
fn built() -> Vec<&'static str> {
    MANIFEST
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|name| *name != "identityd-fuzz")
        .collect()
}

#[test]
fn the_guide_lists_every_target() {
    let (mut documented, mut built) = (documented(), built());
    documented.sort_unstable();
    built.sort_unstable();
    assert_eq!(
        documented,
        [
            "authorization_header",
            "basic_decoding",
            "credential_dispatch",
            "request_path"
        ]
    );
    assert_eq!(documented, built);
    for name in built {
        let source = format!("{}/fuzz/fuzz_targets/{name}.rs", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&source).exists(), "{source}");
    }
}

#[test]
fn the_script_is_valid_bash() {
    let script = format!("{}/fuzz/run.sh", env!("CARGO_MANIFEST_DIR"));
    let checked = Command::new("bash")
        .args(["-n", &script])
        .output()
        .expect("run bash");
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(GUIDE.contains("fuzz/run.sh"));
}
