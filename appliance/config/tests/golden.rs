//! Example configs under `tests/data/`: every `good/*.toml` must parse, and
//! every `bad/*.toml` must be refused with exactly the text in the matching
//! `bad/*.expected` golden file. Run with `BLESS=1` to rewrite the golden
//! files after an intended change of wording, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{ext} files in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn good_configs_parse_and_round_trip() {
    for path in files("good", "toml") {
        let cfg = appliance_config::parse(&read(&path))
            .unwrap_or_else(|e| panic!("{} was refused:\n{e}", path.display()));
        let again = appliance_config::parse(&cfg.to_toml())
            .unwrap_or_else(|e| panic!("{} re-rendered was refused:\n{e}", path.display()));
        assert_eq!(again, cfg, "{} does not round-trip", path.display());
    }
}

#[test]
fn bad_configs_are_refused_with_the_golden_message() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for path in files("bad", "toml") {
        let got = match appliance_config::parse(&read(&path)) {
            Ok(_) => format!("ACCEPTED (should be refused): {}", path.display()),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &got).expect("writing golden file");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
