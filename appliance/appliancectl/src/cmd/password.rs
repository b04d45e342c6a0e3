//! Passwords and names typed by the user: on the terminal without echo, or
//! one per line from standard input (`--password-stdin`) for scripts.

use std::io::{BufRead, Write};

use anyhow::Context;

/// Where passwords come from for one command.
#[derive(Debug)]
pub struct Input {
    stdin: bool,
}

impl Input {
    /// `stdin`: read lines from standard input instead of asking.
    pub fn new(stdin: bool) -> Self {
        Self { stdin }
    }

    /// One password: the next line of standard input, or asked without echo.
    pub fn read(&mut self, prompt: &str) -> anyhow::Result<String> {
        let password = if self.stdin {
            let mut line = String::new();
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            anyhow::ensure!(n > 0, "no password on standard input");
            line.trim_end_matches(['\r', '\n']).to_owned()
        } else {
            rpassword::prompt_password(prompt)
                .context("reading the password from the terminal (or pass --password-stdin)")?
        };
        anyhow::ensure!(!password.is_empty(), "empty password");
        Ok(password)
    }

    /// A new password: asked twice on the terminal, once from standard input.
    pub fn read_new(&mut self, prompt: &str) -> anyhow::Result<String> {
        let first = self.read(prompt)?;
        if !self.stdin {
            let again = self.read("again: ")?;
            anyhow::ensure!(first == again, "the two passwords differ");
        }
        Ok(first)
    }
}

/// A line typed on the terminal (a user name), trimmed.
pub fn ask_line(prompt: &str) -> anyhow::Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask on: pass --user NAME")?;
    let mut out = tty.try_clone()?;
    write!(out, "{prompt}")?;
    out.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(tty).read_line(&mut line)?;
    let line = line.trim().to_owned();
    anyhow::ensure!(!line.is_empty(), "no name given");
    Ok(line)
}
