//! `appliancectl cluster status|form|add|remove|roles|discovered`.

use appliance_api::v1::{
    ClusterAddEvent, ClusterAddRequest, ClusterChangeReply, ClusterDiscoveredRequest,
    ClusterFormRequest, ClusterRemoveRequest, ClusterSetRolesRequest, ClusterStatusReply,
    ClusterStatusRequest,
};
use serde::Serialize;

use super::Client;
use crate::output::{self, Format};

/// Subcommands of `cluster`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Membership as this node knows it, or its join code while it waits to be joined.
    Status,
    /// Make this node the first member of a new cluster (front-end and back-end).
    Form {
        /// A name for the cluster's CA certificate (default: this node's hostname).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Add the appliance at ADDRESS with the join code its console shows.
    Add {
        /// Its IP address (optionally with the peer port: 10.0.0.2:7443).
        address: String,
        /// The join code on its console, such as K7Q2M-XW9RT.
        code: String,
        /// Its roles, comma-separated: frontend, backend.
        #[arg(long, default_value = "frontend")]
        roles: String,
    },
    /// Drain and remove a member (node id or hostname); its certificates are revoked.
    Remove {
        /// Node id or hostname.
        node: String,
    },
    /// Give a member new roles (comma-separated: frontend, backend).
    Roles {
        /// Node id or hostname.
        node: String,
        /// The new roles.
        roles: String,
    },
    /// Appliances announcing themselves on the LAN that are not members.
    Discovered,
}

fn split_roles(roles: &str) -> Vec<String> {
    roles
        .split(',')
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect()
}

fn print_status(s: &ClusterStatusReply) {
    match s.node_state.as_str() {
        "member" => {
            println!("cluster:    {} (generation {})", s.cluster_id, s.generation);
            println!(
                "this node:  member{}",
                if s.authority { ", authority" } else { "" }
            );
            println!();
            let rows: Vec<Vec<String>> = s
                .members
                .iter()
                .map(|m| {
                    vec![
                        format!("{}{}", m.hostname, if m.this_node { " *" } else { "" }),
                        m.roles.join(","),
                        m.state.clone(),
                        m.addresses.join(","),
                        m.version.clone(),
                        if m.authority { "authority" } else { "" }.to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["NODE", "ROLES", "STATE", "ADDRESSES", "VERSION", ""],
                &rows,
            );
        }
        "unjoined" => {
            println!("this node:  not in a cluster; waiting to be joined");
            println!(
                "join code:  {} (expires {})",
                s.join_code,
                expiry(s.join_code_expires_unix_ms)
            );
            println!("peer port:  {}", s.peer_port);
            println!("certificate {}", s.fingerprint);
        }
        other => println!("this node:  {other}"),
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
}

/// `HH:MM UTC` of a Unix time in ms.
fn expiry(unix_ms: u64) -> String {
    let day = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02} UTC", day / 3600, (day % 3600) / 60)
}

fn print_change(r: &ClusterChangeReply) {
    println!("generation {}", r.generation);
    for p in &r.pushes {
        println!(
            "  {:<16} {}",
            p.hostname,
            if p.ok {
                p.message.clone()
            } else {
                format!("FAILED: {} (it catches up later)", p.message)
            }
        );
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
}

/// What `cluster add --output json` prints: every event and the outcome.
#[derive(Serialize)]
struct AddOutcome {
    ok: bool,
    node_id: String,
    hostname: String,
    generation: u64,
    events: Vec<ClusterAddEvent>,
}

async fn add(
    mut client: Client,
    address: String,
    code: String,
    roles: String,
    format: Format,
) -> anyhow::Result<()> {
    let mut stream = client
        .cluster_add(ClusterAddRequest {
            address,
            code,
            roles: split_roles(&roles),
        })
        .await
        .map_err(output::status_error)?
        .into_inner();
    let mut events = Vec::new();
    loop {
        let next = stream.message().await.map_err(output::status_error)?;
        let Some(e) = next else { break };
        if format == Format::Human {
            println!("[{:>6.2}s] {}", e.elapsed_ms as f64 / 1000.0, e.message);
            if e.kind != "preflight_failed" {
                for d in &e.details {
                    println!("          {d}");
                }
            }
        }
        let last = e.r#final;
        events.push(e);
        if last {
            break;
        }
    }
    let last = events.last().cloned().unwrap_or_default();
    if format == Format::Json {
        let outcome = AddOutcome {
            ok: last.ok,
            node_id: last.node_id.clone(),
            hostname: last.hostname.clone(),
            generation: last.generation,
            events: events.clone(),
        };
        output::print(format, &outcome, |_| {})?;
    }
    if last.ok {
        return Ok(());
    }
    if !last.r#final {
        anyhow::bail!("the join ended without an outcome: the connection to applianced was lost");
    }
    // Preflight failures one per line, so each is read on its own.
    let failures: Vec<&String> = events
        .iter()
        .filter(|e| e.kind == "preflight_failed")
        .flat_map(|e| e.details.iter())
        .collect();
    if failures.is_empty() {
        anyhow::bail!("the appliance was not added: {}", last.message)
    }
    let lines: Vec<String> = failures.iter().map(|f| format!("  - {f}")).collect();
    anyhow::bail!(
        "the appliance was not added; preflight failed, nothing was changed:\n{}",
        lines.join("\n")
    )
}

/// Runs a `cluster` subcommand.
pub async fn run(mut client: Client, command: Command, format: Format) -> anyhow::Result<()> {
    match command {
        Command::Status => {
            let r = client
                .cluster_status(ClusterStatusRequest {})
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &r, print_status)
        }
        Command::Form { name } => {
            let r = client
                .cluster_form(ClusterFormRequest { name })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &r, |s| {
                println!("formed a new cluster\n");
                print_status(s);
            })
        }
        Command::Add {
            address,
            code,
            roles,
        } => add(client, address, code, roles, format).await,
        Command::Remove { node } => {
            let r = client
                .cluster_remove(ClusterRemoveRequest { node })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &r, print_change)
        }
        Command::Roles { node, roles } => {
            let r = client
                .cluster_set_roles(ClusterSetRolesRequest {
                    node,
                    roles: split_roles(&roles),
                })
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &r, print_change)
        }
        Command::Discovered => {
            let r = client
                .cluster_discovered(ClusterDiscoveredRequest {})
                .await
                .map_err(output::status_error)?
                .into_inner();
            output::print(format, &r, |r| {
                if r.appliances.is_empty() {
                    println!("no appliance heard announcing itself");
                    return;
                }
                let rows: Vec<Vec<String>> = r
                    .appliances
                    .iter()
                    .map(|a| {
                        vec![
                            a.hostname.clone(),
                            a.addresses.join(","),
                            a.version.clone(),
                            format!("{}s ago", a.last_seen_ms_ago / 1000),
                            a.fingerprint.chars().take(16).collect(),
                        ]
                    })
                    .collect();
                output::table(
                    &["HOSTNAME", "ADDRESSES", "VERSION", "HEARD", "CERTIFICATE"],
                    &rows,
                );
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_expiry_are_read_and_shown() {
        assert_eq!(split_roles("frontend, backend,"), ["frontend", "backend"]);
        assert_eq!(
            expiry((14 * 3600 + 5 * 60) * 1000 + 86_400_000),
            "14:05 UTC"
        );
    }
}
