//! What appliancectl keeps between runs, in `$XDG_CONFIG_HOME/appliancectl/`
//! (default `~/.config/appliancectl/`, made 0700): one token file per server
//! (0600) and `known_servers`, the pinned certificate fingerprints (0600),
//! one `HOST:PORT FINGERPRINT` line each, as ssh's `known_hosts`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::server::Server;

/// Why the stored tokens or fingerprints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("no configuration directory: set XDG_CONFIG_HOME or HOME")]
    NoHome,
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A line of `known_servers` that is not `HOST:PORT FINGERPRINT`.
    #[error("{path} line {line}: expected \"HOST:PORT SHA256-FINGERPRINT\", found {text:?}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// appliancectl's configuration directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The directory from the environment (`XDG_CONFIG_HOME`, else `HOME/.config`).
    pub fn from_env() -> Result<Self, StoreError> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(xdg) => PathBuf::from(xdg),
            None => PathBuf::from(
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .ok_or(StoreError::NoHome)?,
            )
            .join(".config"),
        };
        Ok(Self::at(base.join("appliancectl")))
    }

    /// A store in `dir` (tests).
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The pinned fingerprints' file.
    pub fn known_servers_path(&self) -> PathBuf {
        self.dir.join("known_servers")
    }

    /// The token file of `server`.
    pub fn token_path(&self, server: &Server) -> PathBuf {
        self.dir.join(format!("token-{}", server.file_key()))
    }

    /// Creates the directory 0700 (and makes an existing one 0700: it holds
    /// credentials).
    fn ensure_dir(&self) -> Result<(), StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&self.dir))
    }

    /// The stored token of `server`, if signed in.
    pub fn token(&self, server: &Server) -> Result<Option<String>, StoreError> {
        let path = self.token_path(server);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Stores the token of `server`, 0600, replacing the former one at once
    /// (written beside it, then renamed).
    pub fn save_token(&self, server: &Server, token: &str) -> Result<PathBuf, StoreError> {
        self.ensure_dir()?;
        let path = self.token_path(server);
        let tmp = path.with_extension("new");
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(format!("{token}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Deletes the token of `server`; true when there was one.
    pub fn remove_token(&self, server: &Server) -> Result<bool, StoreError> {
        let path = self.token_path(server);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The pinned fingerprint of `server`, if any.
    pub fn known_fingerprint(&self, server: &Server) -> Result<Option<String>, StoreError> {
        let path = self.known_servers_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let key = server.to_string();
        Ok(parse_known_servers(&path, &text)?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, fp)| fp))
    }

    /// Pins `fingerprint` for `server` (appends a line; the file is 0600).
    pub fn add_known(&self, server: &Server, fingerprint: &str) -> Result<PathBuf, StoreError> {
        self.ensure_dir()?;
        let path = self.known_servers_path();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(format!("{server} {fingerprint}\n").as_bytes())
            .map_err(io_err(&path))?;
        Ok(path)
    }
}

/// The `(HOST:PORT, fingerprint)` pairs of a `known_servers` file; blank
/// lines and `#` comments are skipped.
pub fn parse_known_servers(path: &Path, text: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields = trimmed.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(server), Some(fp), None) if server.contains(':') && is_fingerprint(fp) => {
                pairs.push((server.to_owned(), fp.to_owned()));
            }
            _ => {
                return Err(StoreError::Malformed {
                    path: path.to_owned(),
                    line: i + 1,
                    text: line.to_owned(),
                })
            }
        }
    }
    Ok(pairs)
}

/// True for a SHA-256 fingerprint in hex, with or without colons.
pub fn is_fingerprint(text: &str) -> bool {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// The comparable form of a fingerprint: lower-case hex without colons.
pub fn normalize_fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    fn server(host: &str) -> Server {
        Server {
            host: host.to_owned(),
            port: 8443,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn tokens_are_private_files_one_per_server() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let store = Store::at(tmp.path().join("appliancectl"));
        let (a, b) = (server("10.0.0.1"), server("fd00::1"));
        assert_eq!(store.token(&a)?, None);
        let path = store.save_token(&a, "tok-a")?;
        store.save_token(&b, "tok-b")?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("appliancectl")), 0o700);
        assert_eq!(store.token(&a)?.as_deref(), Some("tok-a"));
        assert_eq!(store.token(&b)?.as_deref(), Some("tok-b"));
        // Replacing keeps the mode, even if someone loosened it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        store.save_token(&a, "tok-a2")?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(store.token(&a)?.as_deref(), Some("tok-a2"));
        assert!(store.remove_token(&a)?);
        assert!(!store.remove_token(&a)?);
        assert_eq!(store.token(&a)?, None);
        assert_eq!(store.token(&b)?.as_deref(), Some("tok-b"));
        Ok(())
    }

    #[test]
    fn the_directory_is_made_private_even_when_it_existed() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("appliancectl");
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let store = Store::at(dir.clone());
        store.add_known(&server("h"), FP)?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&store.known_servers_path()), 0o600);
        Ok(())
    }

    #[test]
    fn known_servers_round_trip_and_lookup() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let store = Store::at(tmp.path().to_owned());
        assert_eq!(store.known_fingerprint(&server("a"))?, None);
        store.add_known(&server("a"), FP)?;
        store.add_known(&server("fd00::2"), &FP.replace(':', ""))?;
        assert_eq!(store.known_fingerprint(&server("a"))?.as_deref(), Some(FP));
        assert!(store.known_fingerprint(&server("fd00::2"))?.is_some());
        assert_eq!(store.known_fingerprint(&server("b"))?, None);
        Ok(())
    }

    #[test]
    fn known_servers_parsing_skips_comments_and_names_bad_lines() {
        let path = Path::new("known_servers");
        let text = format!(
            "# pinned\n\n  a:8443 {FP}  \n[fd00::1]:8443 {}\n",
            FP.to_lowercase()
        );
        let pairs = parse_known_servers(path, &text).unwrap_or_default();
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0], ("a:8443".to_owned(), FP.to_owned()));
        assert_eq!(pairs[1].0, "[fd00::1]:8443");
        for bad in [
            "a:8443".to_owned(),
            format!("a:8443 {FP} extra"),
            "a:8443 AB:CD".to_owned(),
            format!("a {FP}"),
        ] {
            let text = format!("# ok\n{bad}\n");
            match parse_known_servers(path, &text) {
                Err(StoreError::Malformed { line, text, .. }) => {
                    assert_eq!((line, text), (2, bad));
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn fingerprints_compare_without_case_or_colons() {
        assert!(is_fingerprint(FP));
        assert!(is_fingerprint(&FP.replace(':', "")));
        assert!(!is_fingerprint("SHA256:abc"));
        assert_eq!(
            normalize_fingerprint(FP),
            normalize_fingerprint(&FP.replace(':', "").to_lowercase())
        );
    }
}
