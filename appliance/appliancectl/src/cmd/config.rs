//! `appliancectl config get|validate|set`.

use std::path::PathBuf;

use anyhow::Context;
use appliance_api::v1::{ConfigText, GetConfigRequest};

use super::Client;
use crate::output::{self, Format};

/// Subcommands of `config`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the applied configuration (TOML).
    Get,
    /// Check a configuration file without applying it.
    Validate {
        /// TOML file (`-` for standard input).
        file: PathBuf,
    },
    /// Validate and apply a configuration file; nothing changes if it is refused.
    Set {
        /// TOML file (`-` for standard input).
        file: PathBuf,
    },
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the configuration from standard input")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// Runs a `config` subcommand.
pub async fn run(mut client: Client, command: Command, format: Format) -> anyhow::Result<()> {
    match command {
        Command::Get => {
            let reply = client
                .get_config(GetConfigRequest {})
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &reply, |r| print!("{}", r.toml))
        }
        Command::Validate { file } => {
            let toml = read(&file)?;
            let reply = client
                .validate_config(ConfigText { toml })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &reply, |r| {
                if r.valid {
                    println!("{}: valid", file.display());
                } else {
                    for p in &r.problems {
                        println!("{p}");
                    }
                }
            })?;
            if reply.valid {
                Ok(())
            } else {
                anyhow::bail!("{} is not valid: nothing was changed", file.display())
            }
        }
        Command::Set { file } => {
            let toml = read(&file)?;
            let reply = client
                .set_config(ConfigText { toml })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &reply, |r| {
                println!("applied generation {}", r.generation);
                for c in &r.changes {
                    println!("  {c}");
                }
            })
        }
    }
}
