use super::*;

fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<AuditEvent> {
    seqs.map(|seq| AuditEvent {
        seq,
        ..Default::default()
    })
    .collect()
}

fn seqs(page: &[AuditEvent]) -> Vec<u64> {
    page.iter().map(|e| e.seq).collect()
}

#[test]
fn the_first_page_is_the_newest_fifty_newest_first() {
    assert_eq!(listing_for(None), (0, 50));
    let page = page_of(events(151..=200), None);
    assert_eq!(page.len(), 50);
    assert_eq!(page[0].seq, 200);
    assert_eq!(page[49].seq, 151);
}

#[test]
fn an_older_page_asks_from_its_first_event_and_cuts_the_page_out() {
    // Events 101..=150 are the page before 151.
    assert_eq!(listing_for(Some(151)), (100, 1000));
    let page = page_of(events(101..=200), Some(151));
    assert_eq!(seqs(&page), (101..=150).rev().collect::<Vec<_>>());
}

#[test]
fn the_oldest_page_may_be_short() {
    assert_eq!(listing_for(Some(20)), (0, 1000));
    assert_eq!(
        seqs(&page_of(events(1..=60), Some(20))),
        (1..=19).rev().collect::<Vec<_>>()
    );
}
