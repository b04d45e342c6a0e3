//! The layering of applianced's modules: fails, printing the loop, if the
//! modules import each other in a circle, or if a top-level module imports
//! from a layer above its own ([`LAYERS`], as the crate's top doc states).
//!
//! The graph is read from the source text, without a parser crate: every
//! `crate::…`, `super::…` and `self::…` path (including `use` trees with
//! braces), and bare paths that start with a child module's name, count as
//! an import of the module they name. Comments and string literals are
//! skipped; `mod` declarations are not imports. Two levels are checked:
//! the top-level modules (each folder module counted as one, the crate root
//! `main.rs` as `crate`), and inside each folder module its `mod.rs` and its
//! direct children.
//!
//! `MODULE_GRAPH_OUT=<file> cargo test -p applianced --test module_layers`
//! writes the graph (edges with the lines that make them, and the loops).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

/// A module's path from the crate root; the root itself is empty.
type ModPath = Vec<String>;

/// One import: the line that makes it, for the report.
#[derive(Debug, Clone)]
struct Evidence {
    file: String,
    line: usize,
    path: String,
}

/// The imports between modules: from -> to -> the lines that make them.
type Edges = BTreeMap<ModPath, BTreeMap<ModPath, Vec<Evidence>>>;

/// Reads every `.rs` file under `src`, keyed by its module path.
fn load(src: &Path) -> BTreeMap<ModPath, (String, String)> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = rel.display().to_string();
                files.insert(module_of(&name), (name, text));
            }
        }
    }
    files
}

/// `boot/stage2.rs` -> `[boot, stage2]`; `boot/mod.rs` -> `[boot]`;
/// `main.rs` -> `[]`.
fn module_of(rel: &str) -> ModPath {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod") || parts == ["main"] || parts == ["lib"] {
        parts.pop();
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

/// Tokens of the source with their line numbers; comments, strings and
/// character literals dropped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && {
                let mut j = i + 1;
                while b.get(j) == Some(&b'#') {
                    j += 1;
                }
                b.get(j) == Some(&b'"')
            } =>
            {
                // Raw string: r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b[j] == b'#' {
                    hashes += 1;
                    j += 1;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&h| h == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    line += usize::from(b[j] == b'\n');
                    j += 1;
                }
                i = j;
                out.push((Tok::Other, line));
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    line += usize::from(b.get(i) == Some(&b'\n'));
                    i += 1;
                }
                i += 1;
                out.push((Tok::Other, line));
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    i += 1;
                }
                out.push((Tok::Other, line));
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push((Tok::Colons, line));
                i += 2;
            }
            b'{' => {
                out.push((Tok::Open, line));
                i += 1;
            }
            b'}' => {
                out.push((Tok::Close, line));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, line));
                i += 1;
            }
            b'*' => {
                out.push((Tok::Star, line));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_owned()), line));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                out.push((Tok::Other, line));
                i += 1;
            }
        }
    }
    out
}

/// Parses a path tree from `toks[*i]` (`a::b::{c, d::e}`), each full path
/// appended to `out` after `prefix`.
fn path_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
            }
            Some(Tok::Star) => {
                *i += 1;
                break;
            }
            Some(Tok::Open) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Close) => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Comma) => *i += 1,
                        None => break,
                        _ => {
                            let before = *i;
                            path_tree(toks, i, &path, out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                return;
            }
            _ => break,
        }
        if toks.get(*i).map(|t| &t.0) == Some(&Tok::Colons) {
            *i += 1;
        } else {
            break;
        }
    }
    out.push(path);
}

/// Every module path `file` (the module `module`) refers to, made absolute
/// (not yet cut to a known module), with its line.
fn references(module: &ModPath, src: &str, known: &BTreeSet<ModPath>) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(src);
    let mut refs = Vec::new();
    // Inline modules (`mod tests { … }`) open a scope: `super::` inside one
    // is the file's module.
    let mut scope: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        match tok {
            Tok::Open => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Close => {
                if scope.last().is_some_and(|(_, d)| *d == depth) {
                    scope.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    scope.push((name.clone(), depth + 1));
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let starts = i == 0 || toks[i - 1].0 != Tok::Colons;
        let here: ModPath = module
            .iter()
            .cloned()
            .chain(scope.iter().map(|(n, _)| n.clone()))
            .collect();
        if let (Tok::Ident(first), true, Some((Tok::Colons, _))) = (tok, starts, toks.get(i + 1)) {
            let mut base: Option<Vec<String>> = None;
            let mut j = i;
            match first.as_str() {
                "crate" => {
                    base = Some(Vec::new());
                    j += 2;
                }
                "self" => {
                    base = Some(here.clone());
                    j += 2;
                }
                "super" => {
                    let mut b = here.clone();
                    while let (Some((Tok::Ident(s), _)), Some((Tok::Colons, _))) =
                        (toks.get(j), toks.get(j + 1))
                    {
                        if s != "super" {
                            break;
                        }
                        b.pop();
                        j += 2;
                    }
                    base = Some(b);
                }
                name => {
                    // A bare path through a child module of this scope.
                    let mut child = here.clone();
                    child.push(name.to_owned());
                    if known.contains(&child) {
                        base = Some(here.clone());
                    }
                }
            }
            if let Some(base) = base {
                let mut paths = Vec::new();
                path_tree(&toks, &mut j, &base, &mut paths);
                refs.extend(paths.into_iter().map(|p| (p, line)));
                i = j.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    refs
}

/// The longest known module that `path` starts with.
fn resolve(known: &BTreeSet<ModPath>, path: &[String]) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
        .unwrap_or_default()
}

/// All imports between the modules of `files` (module -> (file name, text)).
fn edges(files: &BTreeMap<ModPath, (String, String)>) -> Edges {
    let known: BTreeSet<ModPath> = files.keys().cloned().collect();
    let mut edges = Edges::new();
    for (module, (file, text)) in files {
        for (path, line) in references(module, text, &known) {
            let target = resolve(&known, &path);
            if &target != module {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .push(Evidence {
                        file: file.clone(),
                        line,
                        path: path.join("::"),
                    });
            }
        }
    }
    edges
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

/// The graph at one level: inside `folder` (the crate root: empty), each
/// module cut to `folder` plus one segment.
fn level(edges: &Edges, folder: &[String]) -> Edges {
    let cut = |m: &ModPath| -> Option<ModPath> {
        m.starts_with(folder)
            .then(|| m[..m.len().min(folder.len() + 1)].to_vec())
    };
    let mut out = Edges::new();
    for (from, tos) in edges {
        for (to, ev) in tos {
            if let (Some(f), Some(t)) = (cut(from), cut(to)) {
                if f != t {
                    out.entry(f)
                        .or_default()
                        .entry(t)
                        .or_default()
                        .extend(ev.iter().cloned());
                }
            }
        }
    }
    out
}

/// One loop of a graph: a shortest cycle, and the other modules of its
/// strongly connected component.
struct Loop {
    cycle: Vec<ModPath>,
    also: Vec<ModPath>,
}

/// The loops of a graph: one per strongly connected component of more than
/// one module.
fn cycles(g: &Edges) -> Vec<Loop> {
    let nodes: BTreeSet<ModPath> = g
        .iter()
        .flat_map(|(f, tos)| std::iter::once(f.clone()).chain(tos.keys().cloned()))
        .collect();
    // Breadth-first parents of everything reachable from `from`.
    let reach = |from: &ModPath| -> BTreeMap<ModPath, ModPath> {
        let mut parent = BTreeMap::new();
        let mut queue = VecDeque::from([from.clone()]);
        while let Some(n) = queue.pop_front() {
            for t in g.get(&n).into_iter().flat_map(|t| t.keys()) {
                if !parent.contains_key(t) {
                    parent.insert(t.clone(), n.clone());
                    queue.push_back(t.clone());
                }
            }
        }
        parent
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if seen.contains(n) {
            continue;
        }
        let from_n = reach(n);
        if !from_n.contains_key(n) {
            continue;
        }
        let comp: BTreeSet<ModPath> = from_n
            .keys()
            .filter(|m| reach(m).contains_key(n))
            .cloned()
            .collect();
        // Read the shortest way back to n from the parents, then reverse.
        let mut cycle = vec![n.clone()];
        let mut cur = from_n[n].clone();
        while &cur != n {
            cycle.push(cur.clone());
            cur = from_n[&cur].clone();
        }
        cycle.push(n.clone());
        cycle.reverse();
        let also = comp
            .iter()
            .filter(|m| !cycle.contains(m))
            .cloned()
            .collect();
        seen.extend(comp);
        out.push(Loop { cycle, also });
    }
    out
}

/// The folder modules: those with children.
fn folders(files: &BTreeMap<ModPath, (String, String)>) -> BTreeSet<ModPath> {
    files
        .keys()
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect()
}

/// The graph, level by level, and its loops, as text.
fn describe(files: &BTreeMap<ModPath, (String, String)>) -> (String, usize) {
    let all = edges(files);
    let mut text = String::new();
    let mut loops = 0;
    for folder in folders(files) {
        let g = level(&all, &folder);
        let nodes: BTreeSet<String> = files
            .keys()
            .filter(|m| m.starts_with(&folder))
            .map(|m| name(&m[..m.len().min(folder.len() + 1)]))
            .collect();
        let count: usize = g.values().map(BTreeMap::len).sum();
        let _ = writeln!(
            text,
            "== level {} ({} modules, {} imports)\nmodules: {}",
            name(&folder),
            nodes.len(),
            count,
            nodes.into_iter().collect::<Vec<_>>().join(" ")
        );
        for (from, tos) in &g {
            for (to, ev) in tos {
                let lines: Vec<String> = ev
                    .iter()
                    .map(|e| format!("{}:{} {}", e.file, e.line, e.path))
                    .collect();
                let _ = writeln!(
                    text,
                    "  {} -> {}    [{}]",
                    name(from),
                    name(to),
                    lines.join("; ")
                );
            }
        }
        for l in cycles(&g) {
            loops += 1;
            let cycle: Vec<String> = l.cycle.iter().map(|m| name(m)).collect();
            let _ = write!(text, "  LOOP: {}", cycle.join(" -> "));
            if !l.also.is_empty() {
                let also: Vec<String> = l.also.iter().map(|m| name(m)).collect();
                let _ = write!(text, " (same component: {})", also.join(" "));
            }
            let _ = writeln!(text);
        }
        let _ = writeln!(text);
    }
    (text, loops)
}

#[test]
fn applianced_modules_import_no_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = load(&src);
    let (text, loops) = describe(&files);
    if let Ok(out) = std::env::var("MODULE_GRAPH_OUT") {
        std::fs::write(&out, &text).unwrap_or_else(|e| panic!("{out}: {e}"));
    }
    assert!(
        loops == 0,
        "applianced's modules import each other in a loop:\n{text}"
    );
}

/// applianced's top-level modules in their layers, from the bottom, as the
/// crate's top doc (`main.rs`) states them. A module may import from its own
/// layer (loops are caught above) and from those below, never from above.
const LAYERS: &[&[&str]] = &[
    &[
        "time",
        "console",
        "args",
        "mode",
        "logging",
        "nft",
        "identity",
        "failpoints",
    ],
    &["desired", "error"],
    &["observations", "leftovers", "node", "ready"],
    &["cluster"],
    &["api", "admin"],
    &["daemon"],
    &["boot", "crate"],
];

/// The imports that go up the layers, and the modules in no layer.
fn upward(files: &BTreeMap<ModPath, (String, String)>) -> Vec<String> {
    let layer = |m: &[String]| LAYERS.iter().position(|l| l.contains(&name(m).as_str()));
    let g = level(&edges(files), &[]);
    let mut wrong = Vec::new();
    for m in files
        .keys()
        .map(|m| m[..m.len().min(1)].to_vec())
        .collect::<BTreeSet<_>>()
    {
        if layer(&m).is_none() {
            wrong.push(format!(
                "{} is in no layer: add it to LAYERS and the top doc",
                name(&m)
            ));
        }
    }
    for (from, tos) in &g {
        for (to, ev) in tos {
            if let (Some(f), Some(t)) = (layer(from), layer(to)) {
                if t > f {
                    wrong.push(format!(
                        "{} (layer {f}) imports {} (layer {t}): {}:{}",
                        name(from),
                        name(to),
                        ev[0].file,
                        ev[0].line
                    ));
                }
            }
        }
    }
    wrong
}

#[test]
fn applianced_modules_import_only_downwards() {
    let files = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let wrong = upward(&files);
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// A synthetic crate: (file, text) pairs.
fn synthetic(files: &[(&str, &str)]) -> BTreeMap<ModPath, (String, String)> {
    files
        .iter()
        .map(|(f, t)| (module_of(f), ((*f).to_owned(), (*t).to_owned())))
        .collect()
}

#[test]
fn finds_the_loops_applianced_had() {
    // The shapes of the loops before issue 9: helpers imported across
    // layers, PID 1's boot and the daemon importing each other, children
    // of a folder using their parent's items while it uses theirs.
    let files = synthetic(&[
        ("main.rs", "mod api; mod boot; mod daemon;\nfn main() { boot::stage2::run(); }\npub fn report() {}"),
        ("api.rs", "use crate::ready::Readiness;\npub fn state_name() {}"),
        ("ready.rs", "pub struct Readiness;\nfn f() { crate::api::state_name(); }"),
        ("daemon.rs", "use crate::boot::stage2::{Booted, SHUTDOWN_LIMIT};\npub fn run() {}"),
        ("boot/mod.rs", "pub mod stage2;\npub fn fatal() {}"),
        (
            "boot/stage2.rs",
            "use super::{console, power};\npub fn run() { crate::daemon::run(); super::fatal(&crate::report()); }",
        ),
        ("boot/console.rs", "// crate::daemon in a comment is no import\nconst S: &str = \"crate::api\";"),
        ("cluster/mod.rs", "mod tasks;\npub struct Ctx;\nfn f() { tasks::start(); }"),
        ("cluster/tasks.rs", "use super::Ctx;\npub fn start() {}\n#[cfg(test)]\nmod tests { use super::*; }"),
    ]);
    let (text, loops) = describe(&files);
    assert!(
        text.contains("LOOP: api -> ready -> api") || text.contains("LOOP: ready -> api -> ready"),
        "{text}"
    );
    assert!(
        text.contains("boot -> daemon") && text.contains("daemon -> boot"),
        "{text}"
    );
    assert!(text.contains("boot -> crate"), "{text}");
    assert!(
        text.contains("LOOP: cluster -> cluster::tasks -> cluster"),
        "{text}"
    );
    assert!(
        !text.contains("console -> daemon") && !text.contains("console -> api"),
        "{text}"
    );
    assert_eq!(loops, 3, "{text}");
}

#[test]
fn layered_modules_pass() {
    let files = synthetic(&[
        (
            "main.rs",
            "mod a; mod b;\nuse crate::b::top;\nfn main() { b::top(); a::x(); }",
        ),
        (
            "a.rs",
            "pub fn x() {}\n#[cfg(test)]\nmod tests { use super::*; use crate::a::x; }",
        ),
        ("b/mod.rs", "mod c;\npub use c::top;"),
        (
            "b/c.rs",
            "use crate::a::{self, x};\npub fn top() { a::x(); }",
        ),
    ]);
    let (text, loops) = describe(&files);
    assert_eq!(loops, 0, "{text}");
    assert!(text.contains("  b -> a"), "{text}");
    assert!(text.contains("crate -> b"), "{text}");
}

#[test]
fn finds_an_import_up_the_layers_and_a_module_in_no_layer() {
    let files = synthetic(&[
        ("main.rs", "mod daemon; mod time; mod extra;"),
        (
            "time.rs",
            "fn f() { let _ = crate::daemon::SHUTDOWN_LIMIT; }",
        ),
        ("daemon.rs", "pub const SHUTDOWN_LIMIT: u8 = 1;"),
        ("extra.rs", ""),
    ]);
    let wrong = upward(&files).join("\n");
    assert!(
        wrong.contains("time (layer 0) imports daemon (layer 5): time.rs:1"),
        "{wrong}"
    );
    assert!(wrong.contains("extra is in no layer"), "{wrong}");
}
