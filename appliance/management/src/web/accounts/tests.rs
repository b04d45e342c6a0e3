use super::*;

fn add_form(p1: &str, p2: &str) -> AddForm {
    AddForm {
        csrf: String::new(),
        name: "ann".into(),
        role: "viewer".into(),
        password: p1.into(),
        password2: p2.into(),
    }
}

#[test]
fn a_new_account_s_password_is_typed_twice_the_same() {
    let good = "correct horse battery";
    assert_eq!(add_problem(&add_form(good, good)), None);
    let problem = add_problem(&add_form(good, "correct horse batterY"));
    assert_eq!(problem.as_deref(), Some("the two passwords differ"));
}

#[test]
fn a_new_password_is_typed_twice_the_same() {
    let form = |new: &str, new2: &str| PasswordForm {
        csrf: String::new(),
        current: "whatever".into(),
        new: new.into(),
        new2: new2.into(),
    };
    assert_eq!(
        password_problem(&form("twelve chars", "twelve chars")),
        None
    );
    assert!(password_problem(&form("twelve chars", "twelve charz")).is_some());
}
