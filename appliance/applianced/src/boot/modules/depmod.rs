//! depmod's files (`modules.dep`, `modules.softdep`, `modules.alias`,
//! `modules.builtin`) and a stage's module lists, parsed: pure.

use std::collections::{BTreeMap, BTreeSet};

use super::error::ModError;

/// One module: its file (relative to the module directory) and the names of
/// everything it needs loaded first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    /// File, relative to `/lib/modules/<release>`.
    pub path: String,
    /// Names of its dependencies, as depmod lists them.
    pub deps: Vec<String>,
}

/// The module name of a path or a listed name: the file stem, with `-` as `_`
/// (the kernel treats both alike).
pub fn module_name(path_or_name: &str) -> String {
    let file = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The content lines of a depmod file, numbered from 1: comments and blank
/// lines skipped.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses depmod's `modules.dep`.
pub fn parse_dep(text: &str) -> Result<BTreeMap<String, DepEntry>, ModError> {
    let mut out = BTreeMap::new();
    for (line, text) in content_lines(text) {
        let syntax = || ModError::Syntax {
            file: "modules.dep",
            line,
            text: text.to_owned(),
            expected: "module.ko: dependency.ko ...",
        };
        let (path, deps) = text.split_once(':').ok_or_else(syntax)?;
        let path = path.trim();
        if path.is_empty() || !path.contains(".ko") {
            return Err(syntax());
        }
        out.insert(
            module_name(path),
            DepEntry {
                path: path.to_owned(),
                deps: deps.split_whitespace().map(module_name).collect(),
            },
        );
    }
    Ok(out)
}

/// Parses depmod's `modules.softdep` into module → the modules to load
/// before it (`pre:`; `post:` names are not needed by anything here).
pub fn parse_softdep(text: &str) -> Result<BTreeMap<String, Vec<String>>, ModError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (line, text) in content_lines(text) {
        let mut words = text.split_whitespace();
        let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
            return Err(ModError::Syntax {
                file: "modules.softdep",
                line,
                text: text.to_owned(),
                expected: "softdep module pre: module ... post: module ...",
            });
        };
        let pre = out.entry(module_name(module)).or_default();
        let mut in_pre = false;
        for w in words {
            match w {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                w if in_pre => pre.push(module_name(w)),
                _ => {}
            }
        }
    }
    out.retain(|_, pre| !pre.is_empty());
    Ok(out)
}

/// One line of `modules.alias`: devices whose modalias matches `pattern`
/// (fnmatch) are driven by `module`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The pattern, e.g. `pci:v00001AF4d*sv*sd*bc*sc*i*`.
    pub pattern: String,
    /// The module name.
    pub module: String,
}

/// Parses depmod's `modules.alias` (`alias <pattern> <module>`).
pub fn parse_alias(text: &str) -> Result<Vec<Alias>, ModError> {
    content_lines(text)
        .map(|(line, text)| {
            let mut words = text.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => Ok(Alias {
                    pattern: pattern.to_owned(),
                    module: module_name(module),
                }),
                _ => Err(ModError::Syntax {
                    file: "modules.alias",
                    line,
                    text: text.to_owned(),
                    expected: "alias pattern module",
                }),
            }
        })
        .collect()
}

/// Parses a module list: one name per line, `#` comments and blank lines skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// Names in `modules.builtin` (modules compiled into the kernel).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}
