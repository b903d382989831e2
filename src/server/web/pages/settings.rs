//! The account settings page (`/settings`, "Impostazioni"): password,
//! second factor, app passwords, the notice of a new PEC at an ordinary
//! address. The page shows the state; every change
//! goes through `/api/v1/account/` from the one script, which shows the
//! secrets those calls return (TOTP secret and QR code, recovery codes,
//! a new app password) once, without any reload that could show them again.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::{lang, render, LangQuery, Sidebar, T};
use super::{ApiError, Auth, Web};

/// The strings of the settings page in one language.
pub struct S {
    title: &'static str,
    password_h: &'static str,
    password_rule: &'static str,
    current: &'static str,
    new_: &'static str,
    again: &'static str,
    change: &'static str,
    changed: &'static str,
    mismatch: &'static str,
    wrong_password: &'static str,
    too_short: &'static str,
    too_common: &'static str,
    throttled: &'static str,
    totp_h: &'static str,
    totp_on: &'static str,
    totp_off: &'static str,
    totp_effect: &'static str,
    recovery_left: &'static str,
    off_code: &'static str,
    turn_off: &'static str,
    turn_on: &'static str,
    scan: &'static str,
    qr_alt: &'static str,
    secret_label: &'static str,
    uri_label: &'static str,
    confirm_code: &'static str,
    confirm: &'static str,
    wrong_code: &'static str,
    recovery_note: &'static str,
    done: &'static str,
    app_h: &'static str,
    app_intro: &'static str,
    label: &'static str,
    created: &'static str,
    last_used: &'static str,
    never: &'static str,
    actions: &'static str,
    revoke: &'static str,
    revoke_confirm: &'static str,
    no_apps: &'static str,
    notify_h: &'static str,
    notify_intro: &'static str,
    notify_label: &'static str,
    notify_save: &'static str,
    notify_saved: &'static str,
    notify_stopped: &'static str,
    new_app: &'static str,
    create: &'static str,
    app_once: &'static str,
}

static IT: S = S {
    title: "Impostazioni",
    password_h: "Password",
    password_rule: "Almeno 10 caratteri, e non una delle password più comuni. Cambiarla chiude le altre sessioni aperte nel browser.",
    current: "Password attuale",
    new_: "Nuova password",
    again: "Ripeti la nuova password",
    change: "Cambia password",
    changed: "Password cambiata. Le altre sessioni sono state chiuse.",
    mismatch: "Le due nuove password non coincidono.",
    wrong_password: "La password attuale non è corretta.",
    too_short: "La nuova password è troppo corta: servono almeno 10 caratteri.",
    too_common: "La nuova password è tra le più comuni: sceglierne un'altra.",
    throttled: "Troppi tentativi sbagliati: riprovare tra qualche minuto.",
    totp_h: "Verifica in due passaggi",
    totp_on: "Attiva: l'accesso alla webmail chiede il codice dell'app di autenticazione.",
    totp_off: "Non attiva.",
    totp_effect: "Una volta attiva, l'accesso alla webmail chiede anche un codice dell'app di autenticazione, e i programmi di posta (IMAP, POP3, SMTP) non accettano più la password dell'account: usano le password per le app qui sotto.",
    recovery_left: "Codici di recupero non ancora usati:",
    off_code: "Codice dell'app (o un codice di recupero) per disattivarla",
    turn_off: "Disattiva",
    turn_on: "Attiva la verifica in due passaggi",
    scan: "Inquadrare il codice QR con l'app di autenticazione (o inserire a mano la chiave), poi scrivere il codice di 6 cifre che mostra.",
    qr_alt: "Codice QR da inquadrare con l'app di autenticazione",
    secret_label: "Chiave da inserire a mano:",
    uri_label: "Indirizzo otpauth",
    confirm_code: "Codice di 6 cifre dell'app",
    confirm: "Conferma e attiva",
    wrong_code: "Codice non valido: controllare l'ora del telefono e usare il codice mostrato adesso.",
    recovery_note: "Verifica in due passaggi attiva. Conservare questi codici di recupero in un luogo sicuro: ciascuno vale una volta al posto del codice dell'app, e non saranno più mostrati.",
    done: "Fatto",
    app_h: "Password per le app",
    app_intro: "Per i programmi di posta (IMAP, POP3, SMTP) quando la verifica in due passaggi è attiva: una password diversa per ogni programma o dispositivo, revocabile in ogni momento.",
    label: "Nome",
    created: "Creata il",
    last_used: "Ultimo uso",
    never: "mai",
    actions: "Azioni",
    revoke: "Revoca",
    revoke_confirm: "Revocare questa password? I programmi che la usano non potranno più accedere.",
    no_apps: "Nessuna password per le app.",
    notify_h: "Avviso di nuova PEC",
    notify_intro: "A ogni PEC ricevuta, una breve e-mail ordinaria (non PEC) a questo indirizzo con mittente, oggetto e ora, mai il contenuto; al più una al minuto, le altre riassunte nella successiva. Vuoto: nessun avviso.",
    notify_label: "Indirizzo e-mail ordinario",
    notify_save: "Salva",
    notify_saved: "Salvato: gli avvisi vanno a",
    notify_stopped: "Salvato: nessun avviso.",
    new_app: "Nome della nuova password (programma o dispositivo)",
    create: "Crea",
    app_once: "Ecco la nuova password: inserirla ora nel programma di posta, non sarà più mostrata.",
};

static EN: S = S {
    title: "Settings",
    password_h: "Password",
    password_rule: "At least 10 characters, and not one of the most common passwords. Changing it ends the other browser sessions.",
    current: "Current password",
    new_: "New password",
    again: "New password again",
    change: "Change password",
    changed: "Password changed. The other sessions were ended.",
    mismatch: "The two new passwords differ.",
    wrong_password: "The current password is wrong.",
    too_short: "The new password is too short: at least 10 characters are needed.",
    too_common: "The new password is one of the most common ones: choose another.",
    throttled: "Too many wrong attempts: try again in a few minutes.",
    totp_h: "Two-step verification",
    totp_on: "On: the webmail login asks for the authenticator app's code.",
    totp_off: "Off.",
    totp_effect: "Once on, the webmail login also asks for a code of an authenticator app, and mail programs (IMAP, POP3, SMTP) no longer take the account password: they use the app passwords below.",
    recovery_left: "Recovery codes not used yet:",
    off_code: "App code (or a recovery code) to turn it off",
    turn_off: "Turn off",
    turn_on: "Turn on two-step verification",
    scan: "Scan the QR code with the authenticator app (or type the key), then enter the 6-digit code it shows.",
    qr_alt: "QR code to scan with the authenticator app",
    secret_label: "Key to type by hand:",
    uri_label: "otpauth address",
    confirm_code: "6-digit code of the app",
    confirm: "Confirm and turn on",
    wrong_code: "Wrong code: check the phone's time and use the code it shows now.",
    recovery_note: "Two-step verification is on. Keep these recovery codes somewhere safe: each works once in place of the app's code, and they will not be shown again.",
    done: "Done",
    app_h: "App passwords",
    app_intro: "For mail programs (IMAP, POP3, SMTP) while two-step verification is on: one password per program or device, revocable at any time.",
    label: "Name",
    created: "Created",
    last_used: "Last used",
    never: "never",
    actions: "Actions",
    revoke: "Revoke",
    revoke_confirm: "Revoke this password? The programs using it will no longer get in.",
    no_apps: "No app passwords.",
    notify_h: "New PEC notice",
    notify_intro: "For each PEC received, a short ordinary e-mail (not PEC) to this address with sender, subject and time, never the content; at most one a minute, the others summed up in the next. Empty: no notice.",
    notify_label: "Ordinary e-mail address",
    notify_save: "Save",
    notify_saved: "Saved: notices go to",
    notify_stopped: "Saved: no notices.",
    new_app: "Name of the new password (program or device)",
    create: "Create",
    app_once: "Here is the new password: enter it in the mail program now, it will not be shown again.",
};

/// One app password row.
pub struct AppRow {
    id: String,
    label: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    t: &'static T,
    s: &'static S,
    user: String,
    csrf: String,
    folders: Sidebar,
    totp_on: bool,
    recovery_left: i64,
    apps: Vec<AppRow>,
    notify: String,
}

pub(super) async fn settings(
    State(web): State<Arc<Web>>,
    a: Result<Auth, ApiError>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let Ok(a) = a else {
        return Redirect::to("/login").into_response();
    };
    let (t, set) = lang(&headers, &q.lang);
    let s = if t.lang == "en" { &EN } else { &IT };
    let st = &web.ctx.store;
    let state = async {
        let totp_on = st.totp_secret(&a.user).await?.is_some();
        let left = st.recovery_codes_left(&a.user).await?;
        let apps = st.app_passwords(&a.user).await?;
        let notify = st.notice_email(&a.user).await?.unwrap_or_default();
        Ok::<_, crate::store::StoreError>((totp_on, left, apps, notify))
    };
    let (totp_on, recovery_left, apps, notify) = match state.await {
        Ok(x) => x,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let human = crate::pec::clock::human_ms;
    let apps = apps
        .into_iter()
        .map(|p| AppRow {
            id: p.id,
            label: p.label,
            created: human(p.created_at),
            last_used: p.last_used.map(human).unwrap_or_else(|| s.never.into()),
        })
        .collect();
    render(
        SettingsPage {
            t,
            s,
            user: a.user,
            csrf: a.csrf,
            folders: Sidebar::default(),
            totp_on,
            recovery_left,
            apps,
            notify,
        },
        set,
    )
}
