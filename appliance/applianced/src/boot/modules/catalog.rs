//! What a stage's module files say: its lists and depmod's files, read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::depmod::{
    parse_alias, parse_builtin, parse_dep, parse_list, parse_softdep, Alias, DepEntry,
};
use super::error::CatalogError;

/// The list of hardware drivers, beside a stage's module list.
pub const HARDWARE_SUFFIX: &str = ".hardware";

/// What a stage's module files say.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Modules always loaded.
    pub always: Vec<String>,
    /// Hardware drivers: loaded when a device matches.
    pub hardware: Vec<String>,
    /// modules.dep.
    pub dep: BTreeMap<String, DepEntry>,
    /// modules.softdep (empty when absent).
    pub softdep: BTreeMap<String, Vec<String>>,
    /// modules.builtin (empty when absent).
    pub builtin: BTreeSet<String>,
    /// modules.alias; `None` when absent or unreadable: every hardware driver
    /// is then loaded.
    pub aliases: Option<Vec<Alias>>,
    /// What could not be read and what was done instead, for the console.
    pub notes: Vec<String>,
}

impl Catalog {
    /// Reads the stage's list `list`, the hardware list beside it (named
    /// with [`HARDWARE_SUFFIX`]; optional) and depmod's files in `dir`.
    pub fn read(list: &Path, dir: &Path) -> Result<Catalog, CatalogError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CatalogError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let mut hw_list = list.as_os_str().to_owned();
        hw_list.push(HARDWARE_SUFFIX);
        let dep_file = dir.join("modules.dep");
        let mut cat = Catalog {
            always: parse_list(&read(list)?),
            hardware: std::fs::read_to_string(PathBuf::from(hw_list))
                .map(|t| parse_list(&t))
                .unwrap_or_default(),
            dep: parse_dep(&read(&dep_file)?).map_err(|source| CatalogError::Dep {
                path: dep_file.clone(),
                source,
            })?,
            builtin: std::fs::read_to_string(dir.join("modules.builtin"))
                .map(|t| parse_builtin(&t))
                .unwrap_or_default(),
            ..Catalog::default()
        };
        let softdep_file = dir.join("modules.softdep");
        if let Ok(text) = std::fs::read_to_string(&softdep_file) {
            match parse_softdep(&text) {
                Ok(s) => cat.softdep = s,
                Err(e) => cat.notes.push(format!(
                    "{}: {e}; loading without soft dependencies",
                    softdep_file.display()
                )),
            }
        }
        let alias_file = dir.join("modules.alias");
        match std::fs::read_to_string(&alias_file) {
            Ok(text) => match parse_alias(&text) {
                Ok(a) => cat.aliases = Some(a),
                Err(e) => cat.notes.push(format!(
                    "{}: {e}; loading every hardware driver",
                    alias_file.display()
                )),
            },
            // An image from before modules.alias: everything is loaded, as then.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => cat.notes.push(format!(
                "cannot read {}: {e}; loading every hardware driver",
                alias_file.display()
            )),
        }
        Ok(cat)
    }
}
