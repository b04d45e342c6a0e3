//! Why a module cannot be planned, a depmod file cannot be parsed, or a
//! stage's module files cannot be read.

use std::path::PathBuf;

/// Why a module cannot be planned, or a module file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModError {
    /// Neither in modules.dep nor built in.
    #[error("module {name} is not in modules.dep{}", needed_by.as_ref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    Missing {
        /// The module.
        name: String,
        /// The module that depends on it, if it was not listed itself.
        needed_by: Option<String>,
    },
    /// Dependencies that loop.
    #[error("modules.dep has a dependency cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The modules of the cycle, the first repeated at the end.
        chain: Vec<String>,
    },
    /// A line of a depmod file that is not in its format.
    #[error("{file} line {line}: {text:?} is not \"{expected}\"")]
    Syntax {
        /// The file: modules.dep, modules.alias or modules.softdep.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
        /// The form expected.
        expected: &'static str,
    },
}

/// Why a stage's module files cannot be read (see `Catalog::read`).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The stage's list or `modules.dep` cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `modules.dep` is not in depmod's format.
    #[error("{}: {source}", path.display())]
    Dep {
        /// The file.
        path: PathBuf,
        /// Where and how.
        source: ModError,
    },
}
