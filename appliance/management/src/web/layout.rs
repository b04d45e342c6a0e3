//! The frame of every page: head, navigation, the signed-in account.

use maud::{html, Markup, DOCTYPE};

use crate::auth::Principal;

/// A whole page: `title`, the navigation for `who` (none on the sign-in
/// pages), then `body`.
pub fn page(title: &str, who: Option<&Principal>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Appliance" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                @if let Some(p) = who {
                    header { nav { a href="/" { "Dashboard" } } span { (p.name) " (" (p.role) ")" } }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}
