//! What an orderly power off looks like on the image's console: the lines
//! applianced and the kernel print, in order, and every service stopped by
//! its stop signal, nothing killed or forced. One check for the VM tests and
//! the `shutdown_acpi` figure, so the two cannot drift apart.

use anyhow::{anyhow, bail, ensure};

/// The console lines of an orderly power off, in order: applianced's
/// (daemon.rs, boot/power.rs), then the kernel's.
pub const SHUTDOWN_LINES: [&str; 5] = [
    "applianced: powering off",
    "applianced: stopping services",
    "applianced: services stopped; stopping the API",
    "applianced: /data: unmounted",
    "reboot: Power down",
];

/// Console lines that mean a process was killed or a step forced during the
/// power off: a service killed after its stop timeout (the supervisor's
/// service.rs), processes left for PID 1's final sweep, the overall deadline
/// (daemon.rs, boot/power.rs), or an error of applianced's.
pub const FORCED: [&str; 5] = [
    "did not stop in time; SIGKILL",
    "left after SIGTERM",
    "survived SIGKILL",
    "shutdown deadline passed",
    "applianced: ERROR",
];

/// Whether the power off on console `log` was orderly: [`in_order`] and
/// [`services_stopped_cleanly`].
pub fn orderly(log: &str) -> anyhow::Result<()> {
    in_order(log)?;
    services_stopped_cleanly(log)
}

/// [`SHUTDOWN_LINES`] all on the console, in this order.
pub fn in_order(log: &str) -> anyhow::Result<()> {
    let mut from = 0;
    for line in SHUTDOWN_LINES {
        from = log[from..]
            .find(line)
            .map(|i| from + i)
            .ok_or_else(|| anyhow!("the console does not show {line:?} (in this order)"))?;
    }
    Ok(())
}

/// Every service started during the boot (a `started service=` line of the
/// supervisor, or named by applianced's `node ready:` line) has a `stopped
/// service=` line after "stopping services" (and before "services stopped",
/// when that line is there) whose exit status is not SIGKILL's (wait status
/// 9); and no [`FORCED`] line shows from the power off on.
pub fn services_stopped_cleanly(log: &str) -> anyhow::Result<()> {
    let mut services = started(log);
    services.extend(at_ready(log));
    services.sort();
    services.dedup();
    ensure!(!services.is_empty(), "no service start on the console");
    let off = log.find(SHUTDOWN_LINES[0]).unwrap_or(0);
    if let Some(forced) = log[off..]
        .lines()
        .find(|l| FORCED.iter().any(|f| l.contains(f)))
    {
        bail!("the power off was not orderly: {forced:?}");
    }
    let from = log[off..]
        .find(SHUTDOWN_LINES[1])
        .map(|i| off + i)
        .ok_or_else(|| anyhow!("no {:?} line", SHUTDOWN_LINES[1]))?;
    let to = log[from..]
        .find(SHUTDOWN_LINES[2])
        .map_or(log.len(), |i| from + i);
    let stops = &log[from..to];
    for name in &services {
        // The supervisor's line, with the exit status: a service's own log
        // line forwarded to the console ("managementd stopped
        // service=management") has none.
        let line = stops
            .lines()
            .find(|l| {
                l.contains(" stopped ")
                    && field(l, "service=") == Some(name.as_str())
                    && field(l, "status=").is_some()
            })
            .ok_or_else(|| anyhow!("{name} was not stopped during the power off"))?;
        let status = field(line, "status=").unwrap_or_default();
        ensure!(
            status.contains("unix_wait_status(") && !status.contains("unix_wait_status(9)"),
            "{name} was not stopped by its stop signal: {line:?}"
        );
    }
    Ok(())
}

/// The services of the supervisor's `started service=NAME` lines.
fn started(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" started service="))
        .filter_map(|l| field(l, "service="))
        .map(str::to_owned)
        .collect()
}

/// The services the `node ready: audit healthy, portal healthy ...` line
/// names (applianced's ready.rs).
pub fn at_ready(log: &str) -> Vec<String> {
    let Some((_, list)) = log.lines().find_map(|l| l.split_once("node ready: ")) else {
        return Vec::new();
    };
    if list.starts_with("no services placed") {
        return Vec::new();
    }
    list.split(", ")
        .filter_map(|item| item.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The value of `key` (`service=`, `status=`) in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console of an orderly power off, as the VM printed it (abridged).
    const ORDERLY: &str = "\
2026-12-04T17:01:12.364342Z  INFO started service=audit pid=105
2026-12-04T17:01:12.630070Z  INFO started service=portal pid=107
2026-12-04T17:02:32.484117Z  INFO node ready: audit healthy, portal healthy rss_kib=8544 anon_kib=1224 file_kib=7320
applianced: ready
applianced: powering off
applianced: stopping services
2026-12-04T17:02:42.574471Z  INFO stopped service=portal status=Some(ExitStatus(unix_wait_status(15)))
2026-12-04T17:02:42.589298Z  INFO stopped service=audit status=Some(ExitStatus(unix_wait_status(15)))
applianced: services stopped; stopping the API
2026-12-04T17:02:42.603690Z  INFO applianced stopped
[   26.731962] EXT4-fs (vda4): unmounting filesystem.
applianced: /data: unmounted
[   26.763703] ACPI: PM: Preparing to enter system sleep state S5
[   26.767138] reboot: Power down
";

    #[test]
    fn an_orderly_power_off_is_recognised() {
        orderly(ORDERLY).expect("orderly");
        assert_eq!(at_ready(ORDERLY), ["audit", "portal"]);
        // The ready line alone names the services too.
        let no_starts: String = ORDERLY
            .lines()
            .filter(|l| !l.contains(" started "))
            .map(|l| format!("{l}\n"))
            .collect();
        orderly(&no_starts).expect("orderly without start lines");
        // A service's own "stopped" line, forwarded with its name, before
        // the supervisor's.
        let own_line = ORDERLY.replace(
            "applianced: stopping services\n",
            "applianced: stopping services\n\
             2026-12-04T17:02:42.570000Z  INFO portal stopped service=portal\n",
        );
        orderly(&own_line).expect("orderly with a service's own stopped line");
    }

    #[test]
    fn a_power_off_that_kills_skips_or_forces_is_not_orderly() {
        let broken = [
            // A service that had to be killed.
            ORDERLY.replace(
                "INFO stopped service=audit status=Some(ExitStatus(unix_wait_status(15)))",
                "WARN service=audit grace=5s did not stop in time; SIGKILL\n\
                 INFO stopped service=audit status=Some(ExitStatus(unix_wait_status(9)))",
            ),
            // Killed without the supervisor's warning.
            ORDERLY.replace(
                "unix_wait_status(15)))\napplianced: services",
                "unix_wait_status(9)))\napplianced: services",
            ),
            // A service never reported stopped.
            ORDERLY.replace(
                "2026-12-04T17:02:42.574471Z  INFO stopped service=portal status=Some(ExitStatus(unix_wait_status(15)))\n",
                "",
            ),
            // A service started but not named at ready, never stopped.
            ORDERLY.replace(
                "applianced: ready",
                "2026-12-04T17:02:33Z  INFO started service=extra pid=120\napplianced: ready",
            ),
            // Processes left for the final SIGTERM/SIGKILL sweep.
            ORDERLY.replace(
                "applianced: /data: unmounted",
                "applianced: 1 process(es) left after SIGTERM; sending SIGKILL\napplianced: /data: unmounted",
            ),
            // /data only remounted read-only.
            ORDERLY.replace(
                "/data: unmounted",
                "/data: remounted read-only (unmount failed: busy)",
            ),
            // The shutdown deadline forced the rest.
            ORDERLY.replace(
                "applianced: services stopped; stopping the API",
                "applianced: shutdown deadline passed; forcing the rest",
            ),
            // Out of order: the services stopped after the API.
            ORDERLY.replace("applianced: stopping services\n", "").replace(
                "applianced: services stopped; stopping the API\n",
                "applianced: services stopped; stopping the API\napplianced: stopping services\n",
            ),
            // No power down by the kernel.
            ORDERLY.replace("reboot: Power down", ""),
        ];
        for (i, log) in broken.iter().enumerate() {
            assert_ne!(log.as_str(), ORDERLY, "case {i} changed nothing");
            assert!(orderly(log).is_err(), "case {i} passed:\n{log}");
        }
        // The errors name the service.
        let err = services_stopped_cleanly(&broken[2]).expect_err("portal not stopped");
        assert!(err.to_string().contains("portal"), "{err}");
    }
}
