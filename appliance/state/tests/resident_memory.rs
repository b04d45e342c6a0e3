//! The resident memory a store costs its process: opening the database and
//! committing must stay small (the appliance's whole daemon aims for < 15 MB).
//! Its own test binary, so no other test's allocations run in this process.

use appliance_state::{Batch, Store};

/// Resident anonymous memory of this process in KiB (heap, stacks, anonymous maps).
fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn open_and_commit_cost_little_resident_memory() {
    let dir = tempfile::tempdir().unwrap();
    let before = rss_anon_kib().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.identity().unwrap();
    for i in 0..50u32 {
        let mut batch = Batch::default();
        batch.put("a", &i).unwrap().put("b", &vec![i; 64]).unwrap();
        store.commit(batch).unwrap();
    }
    assert_eq!(store.get::<u32>("a").unwrap(), Some(49));
    let grown = rss_anon_kib().unwrap().saturating_sub(before);
    eprintln!("resident anonymous memory grew by {grown} KiB");
    assert!(grown < 6 * 1024, "the store costs {grown} KiB resident");
}
