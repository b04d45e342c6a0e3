use super::*;

fn service(state: &str, last_error: &str, last_exit: &str, restarts: u32) -> ServiceInfo {
    ServiceInfo {
        name: "portal".into(),
        role: "frontend".into(),
        state: state.into(),
        last_error: last_error.into(),
        last_exit: last_exit.into(),
        restarts,
        ..Default::default()
    }
}

fn member(name: &str, roles: &[&str], state: &str) -> ClusterMember {
    ClusterMember {
        node_id: format!("id-{name}"),
        hostname: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        state: state.into(),
        ..Default::default()
    }
}

fn cluster(members: Vec<ClusterMember>) -> ClusterStatusReply {
    ClusterStatusReply {
        node_state: "member".into(),
        members,
        ..Default::default()
    }
}

#[test]
fn healthy_and_running_services_are_green() {
    for state in ["healthy", "running"] {
        let h = service_health(&service(state, "", "", 0));
        assert_eq!(h.tone, Tone::Green, "{state}");
        assert_eq!(h.reason, state);
    }
}

#[test]
fn transient_states_are_amber_with_the_last_exit() {
    for state in ["starting", "backoff", "stopping"] {
        assert_eq!(service_health(&service(state, "", "", 0)).tone, Tone::Amber);
    }
    let h = service_health(&service("backoff", "", "exit status 1", 3));
    assert_eq!(h.reason, "backoff: exit status 1 (3 restarts)");
}

#[test]
fn failed_and_unhealthy_are_red_with_the_error_first() {
    let h = service_health(&service("failed", "cannot bind :443", "exit status 2", 1));
    assert_eq!(h.tone, Tone::Red);
    assert_eq!(h.reason, "failed: cannot bind :443 (1 restart)");
    let h = service_health(&service("unhealthy", "probe timed out", "", 0));
    assert_eq!(h.tone, Tone::Red);
    assert_eq!(h.reason, "unhealthy: probe timed out");
}

#[test]
fn a_green_service_hides_an_old_exit_but_stopped_and_unknown_are_grey() {
    let h = service_health(&service("running", "", "exit status 1", 1));
    assert_eq!(h.reason, "running (1 restart)");
    assert_eq!(
        service_health(&service("stopped", "", "", 0)).tone,
        Tone::Grey
    );
    let h = service_health(&service("", "", "", 0));
    assert_eq!((h.tone, h.reason.as_str()), (Tone::Grey, "unknown"));
}

#[test]
fn member_states_have_colours() {
    assert_eq!(member_tone("active"), Tone::Green);
    assert_eq!(member_tone("joining"), Tone::Amber);
    assert_eq!(member_tone("removing"), Tone::Amber);
    assert_eq!(member_tone("whatever"), Tone::Grey);
}

#[test]
fn a_node_outside_a_cluster_has_no_high_availability() {
    let s = ClusterStatusReply {
        node_state: "unjoined".into(),
        ..Default::default()
    };
    let a = availability(&s);
    assert_eq!(a.tone, Tone::Grey);
    assert_eq!(a.headline, "Not in a cluster");
    assert!(a.why.contains("no high availability"), "{}", a.why);
}

#[test]
fn one_back_end_is_no_high_availability_naming_it() {
    let a = availability(&cluster(vec![
        member("a", &["frontend", "backend"], "active"),
        member("b", &["frontend"], "active"),
    ]));
    assert_eq!(a.tone, Tone::Amber);
    assert_eq!(a.headline, "No high availability");
    assert!(a.why.contains("a is the only back-end"), "{}", a.why);
    assert!(
        !a.why.contains("front-end"),
        "two front-ends are fine: {}",
        a.why
    );
}

#[test]
fn a_single_front_end_is_named_too() {
    let a = availability(&cluster(vec![
        member("a", &["frontend", "backend"], "active"),
        member("b", &["backend"], "active"),
        member("c", &["backend"], "active"),
    ]));
    assert_eq!(a.tone, Tone::Amber);
    assert!(a.why.contains("a is the only front-end"), "{}", a.why);
}

#[test]
fn three_back_ends_and_two_front_ends_are_highly_available() {
    let a = availability(&cluster(vec![
        member("a", &["frontend", "backend"], "active"),
        member("b", &["frontend", "backend"], "active"),
        member("c", &["backend"], "active"),
    ]));
    assert_eq!(a.tone, Tone::Green, "{a:?}");
    assert_eq!(a.headline, "High availability");
    assert!(a.why.contains("3 back-ends (a, b, c)"), "{}", a.why);
}

#[test]
fn members_being_removed_do_not_count() {
    let a = availability(&cluster(vec![
        member("a", &["frontend", "backend"], "active"),
        member("b", &["frontend", "backend"], "active"),
        member("c", &["frontend", "backend"], "removing"),
    ]));
    assert_eq!(a.tone, Tone::Amber);
    assert!(a.why.contains("2 back-ends (a, b)"), "{}", a.why);
}

#[test]
fn lists_parse_one_a_line_with_commas_comments_and_blanks() {
    assert_eq!(
        parse_lines("10.0.0.1\n\n  10.0.0.2 , 10.0.0.3\r\n# a comment\n192.0.2.0/24 # office\n"),
        vec!["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.0/24"]
    );
    assert!(parse_lines("  \n\n").is_empty());
}

#[test]
fn roles_come_from_checkboxes_and_read_as_words() {
    assert_eq!(roles_from_checks(true, true), vec!["frontend", "backend"]);
    assert!(roles_from_checks(false, false).is_empty());
    assert_eq!(
        describe_roles(&roles_from_checks(true, true)),
        "front-end and back-end"
    );
    assert_eq!(describe_roles(&roles_from_checks(false, true)), "back-end");
    assert_eq!(describe_roles(&[]), "no role");
}

#[test]
fn times_are_utc_iso() {
    assert_eq!(utc(0), "—");
    assert_eq!(utc(1_000), "1970-01-01T00:00:01Z");
    assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(utc(1_796_416_507_999), "2026-12-04T20:35:07Z");
}

#[test]
fn durations_and_sizes_are_coarse() {
    assert_eq!(ago(45_000), "45 s");
    assert_eq!(ago(12 * 60_000), "12 min");
    assert_eq!(ago(3 * 3_600_000), "3 h");
    assert_eq!(ago(2 * 86_400_000), "2 d");
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
}
