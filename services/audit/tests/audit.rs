//! Runs the real `audit` binary on an ephemeral port and speaks its protocol.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills the server when the test ends, however it ends.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audit"))
        .args(["--listen", "127.0.0.1:0"])
        .env("APPLIANCE_DATA_DIR", data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start audit");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout piped");
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    // "audit listening on 127.0.0.1:PORT with N records in PATH"
    let addr = line
        .split_whitespace()
        .nth(3)
        .expect("address in banner")
        .to_string();
    Server(child, addr)
}

fn ask(conn: &mut (TcpStream, BufReader<TcpStream>), request: &str) -> String {
    conn.0
        .write_all(format!("{request}\n").as_bytes())
        .expect("send");
    let mut line = String::new();
    conn.1.read_line(&mut line).expect("answer");
    line
}

fn connect(server: &Server) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(&server.1).expect("connect");
    let r = BufReader::new(s.try_clone().expect("clone"));
    (s, r)
}

#[test]
fn append_count_tail_and_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut conn = connect(&server);
    assert_eq!(ask(&mut conn, "PING"), "PONG\n");
    assert_eq!(ask(&mut conn, "COUNT"), "0\n");
    assert_eq!(ask(&mut conn, "APPEND first event"), "OK 1\n");
    assert_eq!(ask(&mut conn, "APPEND .dotted"), "OK 2\n");
    assert_eq!(ask(&mut conn, "APPEND third"), "OK 3\n");
    assert_eq!(ask(&mut conn, "COUNT"), "3\n");
    assert_eq!(ask(&mut conn, "TAIL 2"), "..dotted\n");
    let mut rest = String::new();
    for _ in 0..2 {
        conn.1.read_line(&mut rest).expect("tail line");
    }
    assert_eq!(rest, "third\n.\n");
    assert!(ask(&mut conn, "BOGUS").starts_with("ERR "));
    assert!(ask(&mut conn, "TAIL x").starts_with("ERR "));
    drop(conn);
    drop(server);

    let log = std::fs::read_to_string(dir.path().join("audit.log")).expect("log");
    assert_eq!(log, "first event\n.dotted\nthird\n");
    let server = start(dir.path());
    let mut conn = connect(&server);
    assert_eq!(ask(&mut conn, "COUNT"), "3\n", "count reloaded on start");
    assert_eq!(ask(&mut conn, "APPEND fourth"), "OK 4\n");
}

#[test]
fn bad_arguments_exit_with_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_audit"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}
