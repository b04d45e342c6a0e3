//! Cluster-wide settings over the `Admin` service: the reply, and the
//! change a `SetSettings` asks for, refused when its management networks
//! would exclude the client asking (the address managementd fills in).

use std::net::IpAddr;

use appliance_api::v1::{self, SetSettingsRequest};
use appliance_cluster::{AdminChange, Settings};
use tonic::Status;

use super::data::{refused, Versioned};

/// The settings on the wire.
pub fn reply((data, generation): &Versioned) -> v1::Settings {
    let s = data.settings();
    v1::Settings {
        dns_servers: s.dns_servers.iter().map(ToString::to_string).collect(),
        ntp_servers: s.ntp_servers.clone(),
        management_networks: s
            .management_networks
            .iter()
            .map(ToString::to_string)
            .collect(),
        generation: *generation,
    }
}

/// The change a `SetSettings` asks for, every entry and the client checked.
pub fn set_change(req: &SetSettingsRequest) -> Result<AdminChange, Status> {
    let wanted = req.settings.clone().unwrap_or_default();
    let settings = Settings::parse(
        &wanted.dns_servers,
        &wanted.ntp_servers,
        &wanted.management_networks,
    )
    .map_err(refused)?;
    let client = req.client_address.trim();
    if !client.is_empty() {
        let addr = parse_client(client)?;
        settings.check_client(&addr).map_err(refused)?;
    }
    Ok(AdminChange::SetSettings(settings))
}

/// The client's address as managementd gives it: an address, possibly with
/// a port (`192.0.2.7:51000`, `[2001:db8::7]:51000`); an IPv4-mapped IPv6
/// address counts as the IPv4 one.
fn parse_client(text: &str) -> Result<IpAddr, Status> {
    let addr = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .map_err(|_| {
            Status::invalid_argument(format!(
                "the client address {text:?} is not an IP address (with or without a port)"
            ))
        })?;
    Ok(match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    use appliance_cluster::AdminData;

    use super::*;

    fn req(nets: &[&str], client: &str) -> SetSettingsRequest {
        SetSettingsRequest {
            settings: Some(v1::Settings {
                dns_servers: vec!["192.0.2.53".into()],
                ntp_servers: vec!["pool.ntp.org".into()],
                management_networks: nets.iter().map(|s| s.to_string()).collect(),
                generation: 0,
            }),
            client_address: client.into(),
        }
    }

    #[test]
    fn the_client_must_stay_inside() {
        assert!(set_change(&req(&["10.0.0.0/8"], "10.1.2.3")).is_ok());
        assert!(set_change(&req(&["10.0.0.0/8"], "[::ffff:10.1.2.3]:4000")).is_ok());
        assert!(set_change(&req(&["10.0.0.0/8"], "")).is_ok());
        assert!(set_change(&req(&[], "192.0.2.9")).is_ok());
        let e = set_change(&req(&["10.0.0.0/8"], "192.0.2.9:555")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("192.0.2.9") && e.message().contains("10.0.0.0/8"),
            "{}",
            e.message()
        );
        let e = set_change(&req(&["10.0.0.0/8"], "nowhere")).unwrap_err();
        assert!(e.message().contains("\"nowhere\""), "{}", e.message());
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let e = set_change(&req(&["10.0.0.1"], "")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("\"10.0.0.1\""), "{}", e.message());
    }

    #[test]
    fn reply_shows_the_settings_and_generation() {
        let mut d = AdminData::default();
        let AdminChange::SetSettings(s) = set_change(&req(&["10.0.0.0/8"], "")).unwrap() else {
            panic!("not settings");
        };
        d.apply(&AdminChange::SetSettings(s)).unwrap();
        let r = reply(&(d, 4));
        assert_eq!(r.dns_servers, ["192.0.2.53"]);
        assert_eq!(r.ntp_servers, ["pool.ntp.org"]);
        assert_eq!(r.management_networks, ["10.0.0.0/8"]);
        assert_eq!(r.generation, 4);
    }
}
