//! Delivering outbox messages over SMTP (`email.smtp_url`) with lettre. With
//! no SMTP server configured nothing is delivered: messages stay in the
//! outbox, unsent, and nothing of them but recipient and subject is logged —
//! their bodies carry single-use tokens (verification, reset, invitations).

use async_trait::async_trait;
use gatehouse_core::email::Mailer;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends through an SMTP server: `smtp://host:25` (plain), `smtp://host:587?tls=required`
/// (STARTTLS) or `smtps://host:465`, with `user:password@` for authentication.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("email.smtp_url: {e}"))?
            .build();
        let from = from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from: {e}"))?;
        Ok(SmtpMailer { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body.to_string())
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Refuses every message (no SMTP server is configured): the outbox keeps it
/// as not sent and retries it, and its body — with its token — is never logged.
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, to: &str, subject: &str, _body: &str) -> Result<(), String> {
        tracing::warn!(%to, %subject, "email not sent: email.smtp_url is empty");
        Err("no SMTP server is configured (email.smtp_url)".into())
    }
}
