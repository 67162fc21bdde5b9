//! Outgoing mail: `.eml` files in a directory (`--mail-dir`) or SMTP (`--smtp-url`, lettre).
//! Handlers collect messages inside their write transaction and send them after it commits;
//! files are in place before the HTTP response goes out, SMTP delivery runs in the background.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lettre::message::SinglePart;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::clock::{Micros, rfc5322};
use crate::config::{MailTransport, ServeConfig};
use crate::error::{Error, Result};

/// One message to send.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: &'static str,
    pub body: String,
}

#[derive(Clone)]
enum Transport {
    Dir(PathBuf),
    Smtp(Arc<AsyncSmtpTransport<Tokio1Executor>>),
}

/// Cheap-to-clone mail sender; `configured()` is false when email is off.
#[derive(Clone)]
pub struct Mailer {
    transport: Option<Transport>,
    from: String,
    site_url: String,
}

impl Mailer {
    pub fn new(config: &ServeConfig, site_url: String) -> Result<Mailer> {
        let transport = match &config.mail {
            None => None,
            Some(MailTransport::Dir(dir)) => {
                std::fs::create_dir_all(dir)?;
                Some(Transport::Dir(dir.clone()))
            }
            Some(MailTransport::Smtp { url, password }) => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| Error::Internal(format!("invalid SMTP URL: {e}")))?;
                if let Some(password) = password {
                    let user = url
                        .split_once("://")
                        .and_then(|(_, rest)| rest.split_once('@'))
                        .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or("").to_owned())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(user, password.clone()));
                }
                Some(Transport::Smtp(Arc::new(builder.build())))
            }
        };
        let host = site_url
            .split_once("://")
            .map_or(site_url.as_str(), |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_owned();
        Ok(Mailer {
            transport,
            from: config
                .mail_from
                .clone()
                .unwrap_or_else(|| format!("usersvc@{host}")),
            site_url,
        })
    }

    pub fn configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Base of the links in messages, without a trailing `/`.
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// Sends after commit. A failure is logged, never shown to the client: the write it
    /// belongs to has already happened.
    pub async fn send(&self, mails: Vec<Mail>, now: Micros) {
        if mails.is_empty() {
            return;
        }
        match &self.transport {
            None => {}
            Some(Transport::Dir(dir)) => {
                let dir = dir.clone();
                let from = self.from.clone();
                let written = tokio::task::spawn_blocking(move || {
                    mails
                        .iter()
                        .try_for_each(|m| write_eml(&dir, &from, m, now))
                })
                .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("cannot write mail: {e}"),
                    Err(e) => tracing::error!("mail writer failed: {e}"),
                }
            }
            Some(Transport::Smtp(smtp)) => {
                let smtp = Arc::clone(smtp);
                let from = self.from.clone();
                tokio::spawn(async move {
                    for m in mails {
                        let sent = match smtp_message(&from, &m) {
                            Ok(msg) => smtp.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = sent {
                            tracing::error!(subject = m.subject, "SMTP delivery failed: {e}");
                        }
                    }
                });
            }
        }
    }
}

fn smtp_message(from: &str, mail: &Mail) -> std::result::Result<Message, String> {
    Message::builder()
        .from(from.parse().map_err(|e| format!("bad From: {e}"))?)
        .to(mail.to.parse().map_err(|e| format!("bad To: {e}"))?)
        .subject(mail.subject)
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .header(ContentTransferEncoding::EightBit)
                .body(mail.body.clone()),
        )
        .map_err(|e| e.to_string())
}

/// Writes `<unix-ms>-<uuid>.eml` under a temporary name, then renames it into place.
fn write_eml(dir: &Path, from: &str, mail: &Mail, now: Micros) -> std::io::Result<()> {
    let id = uuid::Uuid::now_v7();
    let name = format!("{}-{id}.eml", now.div_euclid(1000));
    let text = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{id}@usersvc>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        mail.to,
        mail.subject,
        rfc5322(now),
        mail.body.replace('\n', "\r\n"),
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// The messages usersvc sends (SPEC §10.5 subjects).
pub mod messages {
    use super::Mail;

    pub fn verify_email(site_url: &str, to: &str, uuid: &str, token: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Verify your email address",
            body: format!(
                "Confirm this email address by opening the link below (valid for a limited time):\n\n{site_url}/verify_email/{uuid}/{token}\n\nIf you did not ask for this, ignore this message.\n"
            ),
        }
    }

    /// Sent to both the old and the new address.
    pub fn email_changed(to: &str, old: &str, new: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Your email address was changed",
            body: format!(
                "The email address of your account was changed from {old} to {new}.\n\nIf you did not make this change, contact your administrator.\n"
            ),
        }
    }

    pub fn password_changed(to: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Your password was changed",
            body: "The password of your account was changed. Your other sessions were signed out.\n\nIf you did not make this change, reset your password and contact your administrator.\n".to_owned(),
        }
    }

    pub fn two_factor_enabled(to: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Two-factor authentication enabled",
            body: "Two-factor authentication is now enabled on your account.\n".to_owned(),
        }
    }

    pub fn two_factor_disabled(to: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Two-factor authentication disabled",
            body: "Two-factor authentication was disabled on your account.\n\nIf you did not make this change, contact your administrator.\n".to_owned(),
        }
    }

    pub fn backup_code_used(to: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "A backup code was used",
            body: "A backup code was used to sign in to your account. Each code works once.\n\nIf this was not you, contact your administrator.\n".to_owned(),
        }
    }

    pub fn reset_password(site_url: &str, to: &str, uuid: &str, token: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: "Reset your password",
            body: format!(
                "Choose a new password by opening the link below (valid for a limited time):\n\n{site_url}/reset/{uuid}/{token}\n\nIf you did not ask for this, ignore this message.\n"
            ),
        }
    }
}
