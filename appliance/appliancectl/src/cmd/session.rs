//! `appliancectl --server URL login|logout|whoami|sessions`: signing in to a
//! node's management port and the sessions signed in there.

use appliance_api::v1::{ListSessionsRequest, LoginRequest, LogoutRequest, WhoAmIRequest};

use super::{password, time, MgmtClient};
use crate::output::{self, Format};
use crate::remote::{Server, Store};

/// Arguments of `login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The account name (asked for when left out).
    #[arg(long, short)]
    user: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// Signs in and stores the token (0600) for later commands.
pub async fn login(
    mut client: MgmtClient,
    server: &Server,
    store: &Store,
    args: LoginArgs,
    format: Format,
) -> anyhow::Result<()> {
    let name = match args.user {
        Some(name) => name,
        None if args.password_stdin => {
            anyhow::bail!("--password-stdin needs --user NAME (standard input holds the password)")
        }
        None => password::ask_line("user: ")?,
    };
    let mut input = password::Input::new(args.password_stdin);
    let password = input.read(&format!("password for {name} on {server}: "))?;
    let reply = client
        .login(LoginRequest {
            name: name.clone(),
            password,
        })
        .await
        .map_err(output::status_error)?
        .into_inner();
    let path = store.save_token(server, &reply.token)?;
    let session = reply.session.unwrap_or_default();
    output::print(format, &session, |s| {
        println!(
            "signed in to {server} as {} ({}) until {}; token in {}",
            s.name,
            s.role,
            time(s.expires_unix_ms),
            path.display()
        );
    })
}

/// Ends the session on the server and deletes the stored token.
pub async fn logout(
    client: Option<MgmtClient>,
    server: &Server,
    store: &Store,
) -> anyhow::Result<()> {
    let Some(mut client) = client else {
        println!("not signed in to {server}");
        return Ok(());
    };
    let ended = client.logout(LogoutRequest {}).await;
    store.remove_token(server)?;
    match ended {
        Ok(_) => println!("signed out of {server}"),
        // An expired or ended session: nothing left to end but the file.
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            println!("signed out of {server} (the session had already ended)")
        }
        Err(status) => return Err(output::status_error(status)),
    }
    Ok(())
}

/// Prints the caller's session.
pub async fn whoami(mut client: MgmtClient, format: Format) -> anyhow::Result<()> {
    let s = client
        .who_am_i(WhoAmIRequest {})
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &s, |s| {
        println!("name:     {}", s.name);
        println!("role:     {}", s.role);
        println!("from:     {}", s.source);
        println!("since:    {}", time(s.created_unix_ms));
        println!("expires:  {}", time(s.expires_unix_ms));
    })
}

/// Lists the sessions signed in on this node.
pub async fn sessions(mut client: MgmtClient, format: Format) -> anyhow::Result<()> {
    let reply = client
        .list_sessions(ListSessionsRequest {})
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &reply, |r| {
        let rows: Vec<Vec<String>> = r
            .sessions
            .iter()
            .map(|s| {
                vec![
                    format!("{}{}", s.name, if s.current { " *" } else { "" }),
                    s.role.clone(),
                    s.kind.clone(),
                    s.source.clone(),
                    time(s.created_unix_ms),
                    time(s.expires_unix_ms),
                ]
            })
            .collect();
        output::table(&["NAME", "ROLE", "KIND", "FROM", "SINCE", "EXPIRES"], &rows);
    })
}
