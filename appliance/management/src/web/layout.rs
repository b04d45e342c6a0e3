//! The frame of every page: head, the top bar (product, cluster state, the
//! signed-in account and its sign-out button), the navigation, and the
//! boxes every page uses (error, notice, the hidden CSRF field).

use maud::{html, Markup, DOCTYPE};

use crate::auth::Principal;
use crate::web::view::Tone;

/// The product's name in the top bar and the titles.
pub const PRODUCT: &str = "Appliance";

/// The navigation's entries; the current page's is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Add,
    Events,
    Settings,
    Accounts,
    /// A page outside the navigation (node detail, confirmations).
    Other,
}

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Add, "/add", "Add appliance"),
    (Nav::Events, "/events", "Events"),
    (Nav::Settings, "/settings", "Settings"),
    (Nav::Accounts, "/accounts", "Accounts"),
];

/// What the frame of a signed-in page shows besides the page itself.
pub struct Frame<'a> {
    /// The signed-in account.
    pub who: &'a Principal,
    /// Where the page sits in the navigation.
    pub nav: Nav,
    /// The cluster's state for the top bar (colour, one line), when known.
    pub cluster: Option<(Tone, String)>,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (PRODUCT) }
            link rel="stylesheet" href="/assets/style.css";
            script src="/assets/app.js" defer {}
        }
    }
}

/// The hidden field every form of `who`'s session carries.
pub fn csrf(who: &Principal) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// A signed-in page: top bar, navigation, then `body` under its title.
pub fn app_page(title: &str, frame: &Frame<'_>, body: Markup) -> Markup {
    let who = frame.who;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.app {
                header.topbar {
                    a.brand href="/" { span.logo aria-hidden="true" { "◆" } (PRODUCT) " management" }
                    @if let Some((tone, text)) = &frame.cluster {
                        span.cluster-state #cluster-state title="Cluster state" {
                            span class={ "dot " (tone.class()) } aria-hidden="true" {} (text)
                        }
                    }
                    span.spacer {}
                    span.account {
                        span.account-name { (who.name) }
                        span class={ "role-tag " (who.role.as_str()) } { (who.role) }
                    }
                    form.signout method="post" action="/signout" {
                        (csrf(who))
                        button.ghost type="submit" { "Sign out" }
                    }
                }
                div.shell {
                    nav.sidebar aria-label="Main" {
                        @for (entry, href, label) in NAV {
                            @if entry == frame.nav {
                                a.current href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    main.content {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
    }
}

/// A whole page: `title`, the navigation for `who` (none on the sign-in
/// pages, which get a centred card), then `body`.
pub fn page(title: &str, who: Option<&Principal>, body: Markup) -> Markup {
    match who {
        Some(p) => app_page(
            title,
            &Frame {
                who: p,
                nav: Nav::Other,
                cluster: None,
            },
            body,
        ),
        None => html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body.bare {
                    main.card-page {
                        div.brand-large { span.logo aria-hidden="true" { "◆" } (PRODUCT) " management" }
                        section.card {
                            h1 { (title) }
                            (body)
                        }
                    }
                }
            }
        },
    }
}

/// What applianced (or this server) refused or failed, verbatim, and what
/// to do next.
pub fn error_box(what: &str, message: &str, next: &str) -> Markup {
    html! {
        div.alert.error role="alert" {
            strong { (what) }
            p.verbatim { (message) }
            @if !next.is_empty() { p.next { (next) } }
        }
    }
}

/// A change that went through.
pub fn notice_box(text: &str) -> Markup {
    html! { div.alert.ok role="status" { (text) } }
}

/// Something worth knowing that is not an error (warnings of a change).
pub fn warning_box(title: &str, lines: &[String]) -> Markup {
    html! {
        @if !lines.is_empty() {
            div.alert.warn role="status" {
                strong { (title) }
                ul { @for l in lines { li { (l) } } }
            }
        }
    }
}

/// A coloured dot with its word for screen readers, then `text`.
pub fn light(tone: Tone, text: &str) -> Markup {
    html! {
        span class={ "light " (tone.class()) } {
            span class={ "dot " (tone.class()) } aria-hidden="true" {}
            span.sr-only { (tone.word()) ": " }
            (text)
        }
    }
}
