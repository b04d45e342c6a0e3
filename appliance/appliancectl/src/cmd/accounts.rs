//! `appliancectl --server URL accounts list|add|remove|passwd`.

use appliance_api::v1::{
    AccountsReply, AddAccountRequest, ChangePasswordRequest, ListAccountsRequest,
    RemoveAccountRequest,
};

use super::{password, time, MgmtClient};
use crate::output::{self, Format};

/// Subcommands of `accounts`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every account and its role.
    List,
    /// Create an account (the password is asked twice, or read from stdin).
    Add {
        /// Its name: a lower-case letter, then up to 31 of a-z 0-9 . _ -
        name: String,
        /// administrator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account (never the last administrator).
    Remove {
        /// Its name.
        name: String,
    },
    /// Change your password, or (administrators) another account's.
    Passwd {
        /// The account (default: yours; then your current password is asked first).
        name: Option<String>,
        /// Read from standard input: the current password's line first when
        /// NAME is left out, then the new one.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn print_accounts(format: Format, reply: &AccountsReply) -> anyhow::Result<()> {
    output::print(format, reply, |r| {
        let rows: Vec<Vec<String>> = r
            .accounts
            .iter()
            .map(|a| vec![a.name.clone(), a.role.clone(), time(a.changed_unix_ms)])
            .collect();
        output::table(&["NAME", "ROLE", "CHANGED"], &rows);
        if !r.first_admin_hint.is_empty() {
            println!();
            println!("{}", r.first_admin_hint);
        }
    })
}

/// Runs an `accounts` subcommand.
pub async fn run(mut client: MgmtClient, command: Command, format: Format) -> anyhow::Result<()> {
    let reply = match command {
        Command::List => client.list_accounts(ListAccountsRequest {}).await,
        Command::Add {
            name,
            role,
            password_stdin,
        } => {
            let password = password::Input::new(password_stdin)
                .read_new(&format!("password for the new account {name}: "))?;
            client
                .add_account(AddAccountRequest {
                    name,
                    role,
                    password,
                })
                .await
        }
        Command::Remove { name } => client.remove_account(RemoveAccountRequest { name }).await,
        Command::Passwd {
            name,
            password_stdin,
        } => {
            let mut input = password::Input::new(password_stdin);
            let current_password = match &name {
                None => input.read("current password: ")?,
                Some(_) => String::new(),
            };
            let new_password = input.read_new("new password: ")?;
            client
                .change_password(ChangePasswordRequest {
                    name: name.unwrap_or_default(),
                    current_password,
                    new_password,
                })
                .await
        }
    };
    print_accounts(format, &reply.map_err(output::status_error)?.into_inner())
}
