//! The README's configuration tables say what the binaries do: every flag a program takes is in its table with the
//! same environment variable and the same default, and the table lists no flag the program lacks.
//!
//! Defaults are defined once, as constants in the crates, and clap prints them in `--help`; this test holds the
//! README to `--help`, so a default changed in code and not in the README fails here, naming the flag.

mod common;

use std::collections::BTreeMap;

use common::{Proc, binary};

/// One option: its environment variable and its default, as a program or the README states them.
#[derive(Debug, PartialEq, Eq)]
struct Flag {
    env: Option<String>,
    default: Option<String>,
}

/// The options `--help` of `program` lists (clap's long help: `--flag <VALUE>`, then `[env: X=]`, `[default: Y]`).
fn help_flags(program: &str) -> BTreeMap<String, Flag> {
    let mut help = Proc::start(program, &["--help"]);
    help.assert_ok();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.stdout().lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--") {
            let name = format!("--{}", rest.split_whitespace().next().unwrap_or_default());
            flags.insert(name.clone(), Flag { env: None, default: None });
            current = Some(name);
        } else if line.starts_with("-") && line.contains(", --") {
            // `-v, --verbose`: a short form first.
            let name = line.split(", ").nth(1).and_then(|l| l.split_whitespace().next()).unwrap_or_default();
            flags.insert(name.to_owned(), Flag { env: None, default: None });
            current = Some(name.to_owned());
        } else if let Some(flag) = current.as_ref().and_then(|name| flags.get_mut(name)) {
            if let Some(env) = line.strip_prefix("[env: ") {
                flag.env = Some(env.split('=').next().unwrap_or_default().to_owned());
            } else if let Some(default) = line.strip_prefix("[default: ") {
                flag.default = Some(default.trim_end_matches(']').to_owned());
            }
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// The rows of the README's table under `**heading**`: flag → (env, the first `code` of the default cell).
fn readme_flags(heading: &str) -> BTreeMap<String, Flag> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let heading = format!("**{heading}**");
    let mut lines = readme.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "README has no {heading} line above its table");
    let mut flags = BTreeMap::new();
    for line in lines.skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `--flag` | `ENV` | default | meaning |
        let code = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
        let Some(name) = cells.get(1).and_then(|c| code(c)).filter(|n| n.starts_with("--")) else { continue };
        // A default computed at run time is written as a path under a placeholder (`<data-dir>/samples.jsonl`).
        let default = cells.get(3).and_then(|c| code(c)).filter(|d| !d.contains('<'));
        flags.insert(name, Flag { env: cells.get(2).and_then(|c| code(c)), default });
    }
    assert!(!flags.is_empty(), "README's {heading} table has no rows");
    flags
}

fn assert_readme_matches(program: &str) {
    binary(program);
    let help = help_flags(program);
    let readme = readme_flags(program);
    let missing: Vec<&String> = help.keys().filter(|f| !readme.contains_key(*f)).collect();
    let extra: Vec<&String> = readme.keys().filter(|f| !help.contains_key(*f)).collect();
    assert!(missing.is_empty(), "README's {program} table lacks {missing:?} (run `{program} --help`)");
    assert!(extra.is_empty(), "README's {program} table lists {extra:?}, which `{program} --help` does not have");
    for (name, flag) in &help {
        let row = &readme[name];
        assert_eq!(row.env, flag.env, "{program} {name}: README's env differs from --help");
        assert_eq!(row.default, flag.default, "{program} {name}: README's default differs from --help");
    }
}

#[test]
fn the_server_table_is_what_roster_server_help_says() {
    assert_readme_matches("roster-server");
}

#[test]
fn the_collector_table_is_what_roster_collector_help_says() {
    assert_readme_matches("roster-collector");
}
