//! One module per subcommand, each with its arguments and `run`.

pub mod accounts;
pub mod cluster;
pub mod config;
pub mod events;
pub mod firewall;
pub mod logs;
pub mod password;
pub mod peers;
pub mod services;
pub mod session;
pub mod settings;
pub mod status;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::remote::Bearer;

/// The client every node subcommand receives: the local socket, or the
/// management port's proxy with the session's token.
pub type Client = appliance_api::v1::node_client::NodeClient<InterceptedService<Channel, Bearer>>;

/// The management service's client (`--server` only).
pub type MgmtClient =
    appliance_api::v1::management_client::ManagementClient<InterceptedService<Channel, Bearer>>;

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS` UTC ("-" for 0).
pub fn time(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::time(0), "-");
        assert_eq!(super::time(1_000), "1970-01-01 00:00:01");
        assert_eq!(super::time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(super::time(1_796_428_799_000), "2026-12-04 23:59:59");
    }
}
