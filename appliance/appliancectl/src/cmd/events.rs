//! `appliancectl --server URL events`: the audit trail.

use appliance_api::v1::ListEventsRequest;

use super::{time, MgmtClient};
use crate::output::{self, Format};

/// Arguments of `events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many (the newest of them; 0: the server's default, 200).
    #[arg(long, default_value_t = 0)]
    limit: u32,
}

/// Prints the audit trail, oldest first.
pub async fn run(mut client: MgmtClient, args: Args, format: Format) -> anyhow::Result<()> {
    let reply = client
        .list_events(ListEventsRequest {
            after_seq: args.after,
            limit: args.limit,
        })
        .await
        .map_err(output::status_error)?
        .into_inner();
    output::print(format, &reply, |r| {
        let rows: Vec<Vec<String>> = r
            .events
            .iter()
            .map(|e| {
                let result = if e.reason.is_empty() {
                    e.result.clone()
                } else {
                    format!("{}: {}", e.result, e.reason)
                };
                vec![
                    e.seq.to_string(),
                    time(e.at_unix_ms),
                    if e.actor.is_empty() { "-" } else { &e.actor }.to_owned(),
                    e.source.clone(),
                    e.node.clone(),
                    e.action.clone(),
                    e.detail.clone(),
                    result,
                ]
            })
            .collect();
        output::table(
            &[
                "SEQ", "TIME", "WHO", "FROM", "NODE", "ACTION", "DETAIL", "RESULT",
            ],
            &rows,
        );
    })
}
