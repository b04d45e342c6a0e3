//! A LAN: a bridge in a "switch" namespace, with hosts attached by veth pairs.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::netns::Netns;

/// A bridged LAN. Dropping it removes the switch (and with it every veth).
#[derive(Debug)]
pub struct Lan {
    switch: Netns,
    tag: String,
    ports: std::cell::Cell<u32>,
}

impl Lan {
    /// A new, empty LAN; `tag` keeps names unique (at most 6 characters).
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let switch = Netns::create(&format!("qa-{tag}-sw"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            switch,
            tag: tag.to_owned(),
            ports: std::cell::Cell::new(0),
        })
    }

    /// Plugs `host` into the LAN with an interface named `ifname` (left down
    /// and unaddressed: applianced configures its own; see [`Lan::address`]).
    pub fn attach(&self, host: &Netns, ifname: &str) -> anyhow::Result<()> {
        let n = self.ports.get() + 1;
        self.ports.set(n);
        let outer = format!("q{}p{n}", self.tag);
        self.switch.ip(&[
            "link",
            "add",
            &outer,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            host.name(),
        ])?;
        self.switch.ip(&["link", "set", &outer, "master", "br0"])?;
        self.switch.ip(&["link", "set", &outer, "up"])?;
        Ok(())
    }

    /// Gives a plain (non-appliance) host an address and brings its link up.
    pub fn address(host: &Netns, ifname: &str, cidr: &str) -> anyhow::Result<()> {
        host.ip(&["addr", "add", cidr, "dev", ifname])?;
        host.ip(&["link", "set", ifname, "up"])?;
        Ok(())
    }
}

/// Opens a TCP connection from inside `ns`, bounded by `limit`.
pub fn connect_from(
    ns: &Netns,
    addr: SocketAddr,
    limit: Duration,
) -> anyhow::Result<std::io::Result<TcpStream>> {
    ns.run_in(|| TcpStream::connect_timeout(&addr, limit))
}
