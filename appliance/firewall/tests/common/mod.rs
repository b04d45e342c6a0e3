//! Helpers for root tests: network namespaces with a Drop guard, running
//! code inside one, and a serial lock.

#![allow(dead_code)]

use std::fs::File;
use std::process::Command;
use std::sync::Mutex;

use nix::sched::CloneFlags;

/// Kernel tests run one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A single-threaded runtime for one root test (the serial lock is a std
/// Mutex held outside of it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `ip args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace this test created; deleted on drop.
pub struct Netns {
    /// Its name, `fw-<pid>-<suffix>`.
    pub name: String,
}

impl Netns {
    /// Creates `fw-<pid>-<suffix>` with `lo` up.
    pub fn new(suffix: &str) -> Netns {
        let name = format!("fw-{}-{suffix}", std::process::id());
        // A leftover from a crashed run with the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// creates stay in the namespace wherever they are used later.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).expect("open netns file");
            nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns into test netns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
