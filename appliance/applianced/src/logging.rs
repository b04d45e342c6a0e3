//! Logging: `tracing` events go to the console and to a size-bounded log file
//! in the state directory, which the `Logs` API call reads back.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The current log file is rotated to `<name>.1` when it would exceed this size;
/// the log therefore never takes more than twice this on disk.
pub const MAX_LOG_BYTES: u64 = 2 * 1024 * 1024;

/// A log file that rotates once at a size bound, keeping one older file.
#[derive(Debug)]
pub struct BoundedFile {
    path: PathBuf,
    max: u64,
    file: File,
    written: u64,
}

impl BoundedFile {
    /// Opens `path` for appending.
    pub fn open(path: &Path, max: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max,
            file,
            written,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for BoundedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The log file as the subscriber writes it: closable, so that PID 1 can
/// unmount the data partition at shutdown while logging to the console goes on.
#[derive(Debug, Default)]
struct LogFile(Mutex<Option<BoundedFile>>);

impl LogFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<BoundedFile>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.lock().as_mut() {
            Some(f) => f.write(buf),
            // Closed: the event still reached the console.
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.lock().as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// The file of the installed subscriber.
static FILE: std::sync::OnceLock<std::sync::Arc<LogFile>> = std::sync::OnceLock::new();

/// Closes the log file; later events go to the console only.
pub fn close_file() {
    if let Some(file) = FILE.get() {
        if let Some(mut f) = file.lock().take() {
            let _ = f.flush();
            let _ = f.file.sync_all();
        }
    }
}

/// Installs the global subscriber: console (stderr) and the bounded file.
/// `filter` is an `EnvFilter` directive such as `info` or `applianced=debug`;
/// `ansi` colours the console (hosted mode on a terminal).
pub fn init(log_file: &Path, filter: &str, ansi: bool) -> io::Result<()> {
    let file = BoundedFile::open(log_file, MAX_LOG_BYTES)?;
    let filter = EnvFilter::try_new(filter).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log filter {filter:?} is not valid: {e}"),
        )
    })?;
    let file = std::sync::Arc::new(LogFile(Mutex::new(Some(file))));
    let _ = FILE.set(file.clone());
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(ansi)
                .with_target(false),
        )
        .with(
            fmt::layer()
                .with_writer(file)
                .with_ansi(false)
                .with_target(false),
        )
        .try_init()
        .map_err(|e| io::Error::other(format!("logging already initialised: {e}")))
}

/// The last `lines` lines of the log (both files), optionally only those that
/// mention `service=<name>`.
pub fn tail(log_file: &Path, lines: usize, service: Option<&str>) -> io::Result<Vec<String>> {
    let needle = service.map(|s| format!("service={s}"));
    let mut out = std::collections::VecDeque::with_capacity(lines.min(10_000));
    for path in [rotated(log_file), log_file.to_path_buf()] {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            if needle.as_ref().is_some_and(|n| !line.contains(n.as_str())) {
                continue;
            }
            if out.len() == lines {
                out.pop_front();
            }
            if lines > 0 {
                out.push_back(line);
            }
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_rotates_at_bound_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = BoundedFile::open(&path, 100).unwrap();
        for i in 0..30 {
            writeln!(f, "line {i:03} service=x").unwrap();
        }
        let cur = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(cur <= 100 && old <= 100, "{cur} {old}");
        let last = tail(&path, 3, None).unwrap();
        assert_eq!(
            last,
            vec![
                "line 027 service=x",
                "line 028 service=x",
                "line 029 service=x"
            ]
        );
    }

    #[test]
    fn tail_filters_by_service() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "a service=portal\nb service=audit\nc service=portal\n",
        )
        .unwrap();
        assert_eq!(
            tail(&path, 10, Some("portal")).unwrap(),
            vec!["a service=portal", "c service=portal"]
        );
        assert!(tail(&dir.path().join("none"), 5, None).unwrap().is_empty());
    }
}
