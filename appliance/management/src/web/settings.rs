//! `/settings`: the cluster-wide settings — DNS servers, NTP servers and
//! the networks that may reach the management port, one per line — and the
//! management certificate (where it comes from, its fingerprint, names and
//! expiry; an upload form for a certificate and its key, and going back to
//! the nodes' own).
//!
//! applianced validates everything and refuses, with the reason, a setting
//! that would shut out the address of the browser asking for it.

use appliance_api::v1::{
    GetManagementTlsRequest, GetSettingsRequest, ManagementTls, SetManagementCertificateRequest,
    SetSettingsRequest, Settings,
};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{app_page, csrf, error_box, light, notice_box, Frame, Nav};
use super::view::{self, parse_lines, Tone};
use super::DoneQuery;
use crate::auth::sessions::now_ms;
use crate::auth::web::{check_csrf, AdminSession, WebSession};
use crate::auth::Principal;
use crate::state::AppState;

/// A certificate expiring sooner than this is shown amber.
const EXPIRY_WARNING_MS: u64 = 30 * 24 * 3600 * 1000;

/// The settings form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub dns_servers: String,
    #[serde(default)]
    pub ntp_servers: String,
    #[serde(default)]
    pub management_networks: String,
    #[serde(default)]
    pub generation: u64,
}

impl SettingsForm {
    fn of(s: &Settings) -> Self {
        SettingsForm {
            csrf: String::new(),
            dns_servers: s.dns_servers.join("\n"),
            ntp_servers: s.ntp_servers.join("\n"),
            management_networks: s.management_networks.join("\n"),
            generation: s.generation,
        }
    }

    /// The settings the form asks for.
    pub fn settings(&self) -> Settings {
        Settings {
            dns_servers: parse_lines(&self.dns_servers),
            ntp_servers: parse_lines(&self.ntp_servers),
            management_networks: parse_lines(&self.management_networks),
            generation: self.generation,
        }
    }
}

/// The certificate upload (or, with `clear`, going back to the nodes' own).
#[derive(Debug, Default, Deserialize)]
pub struct CertificateForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub cert_pem: String,
    #[serde(default)]
    pub key_pem: String,
    pub clear: Option<String>,
}

async fn tls(state: &AppState) -> Result<ManagementTls, tonic::Status> {
    let mut t = state
        .backend()
        .admin()
        .get_management_tls(GetManagementTlsRequest {})
        .await?
        .into_inner();
    // The key never leaves this function.
    t.key_pem.clear();
    Ok(t)
}

/// `GET /settings`.
pub async fn page(
    State(state): State<AppState>,
    WebSession(who): WebSession,
    Query(done): Query<DoneQuery>,
) -> Response {
    let top = super::notice(done.done.as_deref()).map(notice_box);
    render(&state, &who, None, top, None).await
}

async fn render(
    state: &AppState,
    who: &Principal,
    typed: Option<&SettingsForm>,
    top: Option<Markup>,
    cert_error: Option<Markup>,
) -> Response {
    let mut admin = state.backend().admin();
    let (cluster, settings, tls) = tokio::join!(
        super::cluster_status(state),
        async {
            admin
                .get_settings(GetSettingsRequest {})
                .await
                .map(|r| r.into_inner())
        },
        tls(state),
    );
    let frame = Frame {
        who,
        nav: Nav::Settings,
        cluster: super::cluster_badge(&cluster),
    };
    let member = matches!(&cluster, Ok(c) if c.node_state == "member");
    app_page(
        "Settings",
        &frame,
        html! {
            @if let Some(t) = top { (t) }
            p.muted { @if member { "These settings apply to every member of the cluster." }
                      @else { "This appliance is not in a cluster: these settings are its own." } }
            @match (&settings, typed) {
                (Err(e), _) => (error_box("The settings cannot be read.", e.message(), "Reload the page in a moment.")),
                (Ok(s), None) => (settings_form(who, &SettingsForm::of(s))),
                (Ok(_), Some(f)) => (settings_form(who, f)),
            }
            @if let Some(e) = cert_error { (e) }
            (certificate(who, &tls))
        },
    )
    .into_response()
}

fn settings_form(who: &Principal, f: &SettingsForm) -> Markup {
    let editable = who.can_change();
    html! {
        section.panel #settings {
            h2 { "Network services and access" }
            form.stack method="post" action="/settings" {
                (csrf(who))
                input type="hidden" name="generation" value=(f.generation);
                label { "DNS servers"
                    span.hint { "One address a line. Empty: each node keeps the resolvers of its own configuration." }
                    textarea name="dns_servers" rows="3" spellcheck="false" readonly[!editable] { (f.dns_servers) }
                }
                label { "NTP servers"
                    span.hint { "One name or address a line." }
                    textarea name="ntp_servers" rows="3" spellcheck="false" readonly[!editable] { (f.ntp_servers) }
                }
                label { "Management networks"
                    span.hint { "Networks (CIDR) that may reach the management port, one a line. Empty: any address. \
                                 Your address is " span.mono { (who.source) } "; a setting that leaves it out is refused." }
                    textarea name="management_networks" rows="4" spellcheck="false" readonly[!editable] { (f.management_networks) }
                }
                @if editable {
                    div.actions { button type="submit" { "Save settings" } }
                } @else {
                    p.muted { "Only an administrator can change the settings." }
                }
            }
        }
    }
}

fn certificate(who: &Principal, tls: &Result<ManagementTls, tonic::Status>) -> Markup {
    html! {
        section.panel #certificate {
            h2 { "Management certificate" }
            @match tls {
                Err(e) => p.muted { "The certificate cannot be read: " (e.message()) },
                Ok(t) => {
                    @let left = t.not_after_unix_ms.saturating_sub(now_ms());
                    @let tone = if t.not_after_unix_ms == 0 { Tone::Grey }
                        else if left == 0 { Tone::Red }
                        else if left < EXPIRY_WARNING_MS { Tone::Amber } else { Tone::Green };
                    dl.facts {
                        dt { "Source" } dd { (source_words(&t.source)) }
                        dt { "Fingerprint (SHA-256)" } dd.mono.small { (t.fingerprint) }
                        dt { "Names" } dd { @for n in &t.names { span.tag { (n) } } }
                        dt { "Expires" } dd { (light(tone, &format!("{}{}", view::utc(t.not_after_unix_ms),
                            if left == 0 && t.not_after_unix_ms != 0 { " (expired)".to_string() } else if t.not_after_unix_ms != 0 { format!(" (in {})", view::ago(left)) } else { String::new() }))) }
                        dt { "Port" } dd { (t.port) }
                    }
                }
            }
            @if who.can_change() {
                h3 { "Upload a certificate for every node" }
                p.muted.small { "PEM text. It must be valid now, match its key, and name every member's hostname and \
                                 addresses; otherwise it is refused with the reason and nothing changes." }
                form.stack method="post" action="/settings/certificate" {
                    (csrf(who))
                    label { "Certificate (with its chain)"
                        input type="file" accept=".pem,.crt,.cer" data-into="cert_pem";
                        textarea.pem #cert_pem name="cert_pem" spellcheck="false" placeholder="-----BEGIN CERTIFICATE-----" {}
                    }
                    label { "Private key"
                        input type="file" accept=".pem,.key" data-into="key_pem";
                        textarea.pem #key_pem name="key_pem" spellcheck="false" placeholder="-----BEGIN PRIVATE KEY-----" {}
                    }
                    div.actions { button type="submit" { "Upload certificate" } }
                }
                @if matches!(tls, Ok(t) if t.source == "uploaded") {
                    form.stack method="post" action="/settings/certificate" {
                        (csrf(who))
                        input type="hidden" name="clear" value="yes";
                        div.actions { button.secondary type="submit" { "Remove the uploaded certificate" } }
                    }
                }
            }
        }
    }
}

fn source_words(source: &str) -> &str {
    match source {
        "self-signed" => "self-signed by this appliance (it is not in a cluster)",
        "cluster-ca" => "signed by the cluster's CA",
        "uploaded" => "uploaded by an administrator",
        other => other,
    }
}

/// `POST /settings`.
pub async fn save(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(form): Form<SettingsForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let settings = form.settings();
    let detail = format!(
        "dns [{}] ntp [{}] management networks [{}]",
        settings.dns_servers.join(", "),
        settings.ntp_servers.join(", "),
        settings.management_networks.join(", ")
    );
    let reply = state
        .backend()
        .admin()
        .set_settings(SetSettingsRequest {
            settings: Some(settings),
            client_address: who.source.to_string(),
        })
        .await;
    super::audit_call(&state, &who, "settings.set", detail, &reply).await;
    match reply {
        Ok(_) => Redirect::to("/settings?done=settings-saved").into_response(),
        Err(e) => {
            let top = error_box(
                "The settings were not saved.",
                e.message(),
                "Nothing changed. Correct the value the message names and save again.",
            );
            let page = render(&state, &who, Some(&form), Some(top), None).await;
            (super::http_status(&e), page).into_response()
        }
    }
}

/// `POST /settings/certificate`.
pub async fn certificate_post(
    State(state): State<AppState>,
    AdminSession(who): AdminSession,
    Form(form): Form<CertificateForm>,
) -> Response {
    if let Err(refused) = check_csrf(&who, &form.csrf) {
        return refused;
    }
    let clear = form.clear.as_deref() == Some("yes");
    let request = if clear {
        SetManagementCertificateRequest::default()
    } else {
        SetManagementCertificateRequest {
            cert_pem: form.cert_pem.trim().to_string() + "\n",
            key_pem: form.key_pem.trim().to_string() + "\n",
        }
    };
    if !clear && (form.cert_pem.trim().is_empty() || form.key_pem.trim().is_empty()) {
        let e = error_box(
            "The certificate was not uploaded.",
            "both the certificate and its private key are needed",
            "Paste (or choose) both PEM files and upload again.",
        );
        return (
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            render(&state, &who, None, None, Some(e)).await,
        )
            .into_response();
    }
    let action = if clear {
        "certificate.clear"
    } else {
        "certificate.set"
    };
    let reply = state
        .backend()
        .admin()
        .set_management_certificate(request)
        .await;
    let detail = match &reply {
        Ok(r) => format!("fingerprint {}", r.get_ref().fingerprint),
        Err(_) => "the uploaded certificate".to_string(),
    };
    super::audit_call(&state, &who, action, detail, &reply).await;
    match reply {
        Ok(_) if clear => Redirect::to("/settings?done=certificate-cleared").into_response(),
        Ok(_) => Redirect::to("/settings?done=certificate-set").into_response(),
        Err(e) => {
            let boxed = error_box("The certificate was not accepted.", e.message(),
                "Nothing changed. Fix what the message names (expiry, key, names) and upload again.");
            (
                super::http_status(&e),
                render(&state, &who, None, None, Some(boxed)).await,
            )
                .into_response()
        }
    }
}
