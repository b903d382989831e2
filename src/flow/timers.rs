//! The sender's provider's deadlines (`pec-spec.md` §6) as a decision: a
//! 12 h or 24 h deadline of a certified recipient is due.
//!
//! The notice — one `preavviso-errore-consegna` type for both, the 24 h one
//! carrying `5.4.1` — goes to the sender; the 24 h deadline also closes the
//! recipient and stops the relays that only served closed recipients. The
//! batch holds only while the deadline is still armed, so two runs (a
//! restart, another node) fire it once.

use crate::pec::daticert::Certified;
use crate::pec::receipt::{self, Preavviso};
use crate::pec::types::Tipo;

use super::batch::{Batch, Deadline, DueTimer, EventKind, Guard, TimerOp};
use super::{emit, Now, Us};

/// Fire `t`. `certified` is the message it is about (none: a timer for a
/// message we no longer know is only disarmed).
pub fn fire(us: &Us<'_>, now: &Now<'_>, t: &DueTimer, certified: Option<&Certified>) -> Batch {
    let mut b = Batch::at(now.ms);
    b.guard = Some(Guard::TimerArmed(t.clone()));
    if let Some(c) = certified {
        let (stage, label) = match t.deadline {
            Deadline::Preavviso => (Preavviso::Ore12, "12h"),
            Deadline::Expire => (Preavviso::Ore24, "24h"),
        };
        let msg = receipt::preavviso(&now.emitter(us), c, &t.recipient, stage);
        let em = emit(
            us,
            &mut b,
            msg,
            Tipo::PreavvisoErroreConsegna,
            EventKind::PreavvisoErroreConsegna,
            c,
            format!("preavviso-{label}:{}:{}", c.identificativo, t.recipient),
            &c.mittente,
        );
        let mut ev = em.event;
        ev.detail = Some(format!("{label} notice for {}", t.recipient));
        if stage == Preavviso::Ore24 {
            ev.error = Some(receipt::expiry_esteso(&us.provider.name));
        }
        b.log(ev);
        b.job(em.job);
    }
    if t.deadline == Deadline::Expire {
        b.timers.push(TimerOp::Close {
            identificativo: t.identificativo.clone(),
            recipient: t.recipient.clone(),
            by: "scadenza-24h",
        });
        b.timers.push(TimerOp::StopRelays {
            identificativo: t.identificativo.clone(),
        });
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::{check, render, T0};
    use crate::pec::daticert::Destinatario;
    use crate::pec::envelope::Provider;
    use crate::pec::ids::SequentialIds;
    use crate::pec::types::{ReceiptType, RecipientType};

    fn certified() -> Certified {
        Certified {
            mittente: "mario@pec.alpha.test".into(),
            destinatari: vec![Destinatario {
                address: "b@pec.beta.test".into(),
                tipo: RecipientType::Certificato,
            }],
            risposte: "mario@pec.alpha.test".into(),
            oggetto: Some("Fattura".into()),
            identificativo: "pecd.20181113043927.T000001@pec.alpha.test".into(),
            msgid: Some("<orig.1@client.example>".into()),
            ricevuta: ReceiptType::Completa,
        }
    }

    fn fire_at(deadline: Deadline, c: Option<&Certified>) -> Batch {
        let p = Provider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
        };
        let d = vec!["pec.alpha.test".to_string()];
        let us = Us {
            provider: &p,
            domains: &d,
            hostname: "mx.pec.alpha.test",
        };
        let ids = SequentialIds::default();
        let t = DueTimer {
            identificativo: "pecd.20181113043927.T000001@pec.alpha.test".into(),
            recipient: "b@pec.beta.test".into(),
            deadline,
        };
        fire(&us, &Now { ms: T0, ids: &ids }, &t, c)
    }

    #[test]
    fn golden_preavviso_12h_and_24h() {
        let c = certified();
        let b = fire_at(Deadline::Preavviso, Some(&c));
        assert!(b.timers.is_empty(), "the 12 h warning closes nothing");
        check("timers-12h", &render(&b));
        let b = fire_at(Deadline::Expire, Some(&c));
        assert_eq!(b.timers.len(), 2, "closed, relays stopped");
        check("timers-24h", &render(&b));
    }

    #[test]
    fn a_timer_for_an_unknown_message_is_only_disarmed() {
        let b = fire_at(Deadline::Preavviso, None);
        assert!(b.jobs.is_empty() && b.log.is_empty() && b.blobs.is_empty());
        assert!(matches!(b.guard, Some(Guard::TimerArmed(_))));
    }
}
