//! Pure rendering decisions of the pages, kept apart from I/O so they are
//! unit-tested: a service's health colour and reason, the cluster's
//! high-availability sentence, multi-line form lists, dates and sizes.

use appliance_api::v1::{ClusterMember, ClusterStatusReply, ServiceInfo};

/// A traffic-light colour, as the pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Working as intended.
    Green,
    /// Transient or degraded: starting, restarting, stopping, no HA.
    Amber,
    /// Broken: failed or unhealthy.
    Red,
    /// Nothing to judge (stopped on purpose, unknown).
    Grey,
}

impl Tone {
    /// The CSS class of the colour.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Green => "green",
            Tone::Amber => "amber",
            Tone::Red => "red",
            Tone::Grey => "grey",
        }
    }

    /// The word a screen reader (and a colour-blind reader) gets.
    pub fn word(self) -> &'static str {
        match self {
            Tone::Green => "OK",
            Tone::Amber => "Attention",
            Tone::Red => "Failed",
            Tone::Grey => "Unknown",
        }
    }
}

/// A service's health: its colour and the reason in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The colour.
    pub tone: Tone,
    /// Why, for the reader ("healthy", "failed: exit status 1", ...).
    pub reason: String,
}

/// Judges a service from what the supervisor reports of it.
pub fn service_health(s: &ServiceInfo) -> Health {
    let tone = match s.state.as_str() {
        "healthy" | "running" => Tone::Green,
        "starting" | "backoff" | "stopping" => Tone::Amber,
        "unhealthy" | "failed" => Tone::Red,
        _ => Tone::Grey,
    };
    let mut reason = s.state.clone();
    if reason.is_empty() {
        reason.push_str("unknown");
    }
    let why = if !s.last_error.is_empty() {
        s.last_error.as_str()
    } else if tone != Tone::Green && !s.last_exit.is_empty() {
        s.last_exit.as_str()
    } else {
        ""
    };
    if tone != Tone::Green && !why.is_empty() {
        reason.push_str(": ");
        reason.push_str(why);
    }
    if s.restarts > 0 {
        let plural = if s.restarts == 1 { "" } else { "s" };
        reason.push_str(&format!(" ({} restart{plural})", s.restarts));
    }
    Health { tone, reason }
}

/// The colour of a member's state in the cluster.
pub fn member_tone(state: &str) -> Tone {
    match state {
        "active" => Tone::Green,
        "joining" | "removing" => Tone::Amber,
        _ => Tone::Grey,
    }
}

/// The cluster's high-availability verdict, in one sentence, with its colour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// Green: highly available; amber: it works but a single node's loss
    /// stops something; grey: not a cluster.
    pub tone: Tone,
    /// The short verdict ("High availability", "No high availability", ...).
    pub headline: String,
    /// Why, naming the nodes.
    pub why: String,
}

fn has_role(m: &ClusterMember, role: &str) -> bool {
    m.roles.iter().any(|r| r == role)
}

/// Judges the cluster from `ClusterStatus`: the back-end runs on exactly 1
/// or 3 nodes, so high availability needs 3 back-ends and at least 2
/// front-ends (members being removed no longer count).
pub fn availability(status: &ClusterStatusReply) -> Availability {
    if status.node_state != "member" {
        let headline = match status.node_state.as_str() {
            "unjoined" => "Not in a cluster",
            "off" => "Clustering off",
            "idle" => "Changing state",
            _ => "Not in a cluster",
        };
        return Availability {
            tone: Tone::Grey,
            headline: headline.to_string(),
            why: "this appliance runs alone: no high availability. Form a cluster or add \
                  it to one from a cluster member's Add appliance page."
                .to_string(),
        };
    }
    let counted: Vec<&ClusterMember> = status
        .members
        .iter()
        .filter(|m| m.state != "removing")
        .collect();
    let names = |role: &str| -> Vec<&str> {
        counted
            .iter()
            .filter(|m| has_role(m, role))
            .map(|m| m.hostname.as_str())
            .collect()
    };
    let backends = names("backend");
    let frontends = names("frontend");
    let mut problems = Vec::new();
    match backends.as_slice() {
        [] => problems.push("no member has the back-end role".to_string()),
        [one] => problems.push(format!(
            "{one} is the only back-end: if it stops, the back-end services stop"
        )),
        _ if backends.len() < 3 => problems.push(format!(
            "{} back-ends ({}): a quorum of fewer than 3 cannot survive a loss",
            backends.len(),
            backends.join(", ")
        )),
        _ => {}
    }
    match frontends.as_slice() {
        [] => problems.push("no member has the front-end role".to_string()),
        [one] => problems.push(format!(
            "{one} is the only front-end: if it stops, the public services stop"
        )),
        _ => {}
    }
    if problems.is_empty() {
        Availability {
            tone: Tone::Green,
            headline: "High availability".to_string(),
            why: format!(
                "{} back-ends ({}) and {} front-ends: any one member may stop",
                backends.len(),
                backends.join(", "),
                frontends.len()
            ),
        }
    } else {
        Availability {
            tone: Tone::Amber,
            headline: "No high availability".to_string(),
            why: problems.join("; "),
        }
    }
}

/// A textarea's list, one item a line: trimmed, blank lines and `#`
/// comments dropped, commas also separating (a pasted "a, b" works).
pub fn parse_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Roles from a form's two checkboxes, in the API's words.
pub fn roles_from_checks(frontend: bool, backend: bool) -> Vec<String> {
    let mut roles = Vec::new();
    if frontend {
        roles.push("frontend".to_string());
    }
    if backend {
        roles.push("backend".to_string());
    }
    roles
}

/// Roles as a reader says them: "front-end and back-end".
pub fn describe_roles(roles: &[String]) -> String {
    let words: Vec<&str> = roles
        .iter()
        .map(|r| match r.as_str() {
            "frontend" => "front-end",
            "backend" => "back-end",
            other => other,
        })
        .collect();
    match words.as_slice() {
        [] => "no role".to_string(),
        [one] => one.to_string(),
        _ => words.join(" and "),
    }
}

/// A Unix time in milliseconds as UTC ISO 8601, to the second
/// ("2026-12-04T20:35:07Z"); "—" for 0 (never).
pub fn utc(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "—".to_string();
    }
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A duration in milliseconds, coarsely: "45 s", "12 min", "3 h", "2 d".
pub fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        5400..=172_799 => format!("{} h", (s + 1800) / 3600),
        _ => format!("{} d", (s + 43_200) / 86_400),
    }
}

/// A byte count with a binary unit: "512 B", "1.5 KiB", "3.2 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests;
