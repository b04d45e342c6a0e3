//! How replies are printed: aligned text for people, JSON for scripts.

use serde::Serialize;

/// Output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text.
    Human,
    /// One JSON document.
    Json,
}

/// Prints `value` as JSON, or calls `human` to print it for people.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    human: impl FnOnce(&T),
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Human => human(value),
    }
    Ok(())
}

/// Prints rows as left-aligned columns under `header`.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A refusal by the server: its text says what was wrong; the code lets
/// `main` add a hint (sign in again) for the management port.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    /// The gRPC status code.
    pub code: tonic::Code,
    /// The server's message.
    pub message: String,
}

/// Turns a gRPC error into a plain message: the server's text says what was wrong.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(StatusError {
        code: status.code(),
        message: if status.message().is_empty() {
            status.code().to_string()
        } else {
            status.message().to_owned()
        },
    })
}
