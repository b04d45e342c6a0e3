//! The append-only log file: one record per line, fsynced before an append is acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The log and its line count (the sequence number of the last record).
pub struct Store {
    path: PathBuf,
    file: File,
    count: u64,
}

impl Store {
    /// Opens (or creates) `path` and counts the records already in it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut count = 0;
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            line?;
            count += 1;
        }
        Ok(Store {
            path: path.to_path_buf(),
            file,
            count,
        })
    }

    /// Appends one record (newlines replaced by spaces), fsyncs, and returns its sequence number.
    pub fn append(&mut self, text: &str) -> io::Result<u64> {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.file.write_all(format!("{line}\n").as_bytes())?;
        self.file.sync_data()?;
        self.count += 1;
        Ok(self.count)
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> io::Result<Vec<String>> {
        let mut last = std::collections::VecDeque::with_capacity(n.min(1024));
        for line in BufReader::new(File::open(&self.path)?).split(b'\n') {
            if n == 0 {
                break;
            }
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(String::from_utf8_lossy(&line?).into_owned());
        }
        Ok(last.into())
    }
}
