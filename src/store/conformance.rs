//! The same expectations of every typed operation (`backend::Tx`) run
//! against both backends: SQLite in a temp folder, and PostgreSQL in a
//! throwaway cluster (`crate::labpg`, shared with the integration tests
//! and `pecd bench --store postgresql`). A backend that answers differently from the other fails here.

use std::collections::HashSet;

use super::account::{AppPasswordAdded, MAX_APP_PASSWORDS};
use super::api::{token_hash, CreateRefused, KeyClaim, Scopes, MAX_PER_USER};
use super::backend::Tx;
use super::log::{chain_next, row_digest, Event, EventKind, Query, GENESIS};
use super::messages::Accepted;
use super::quarantine::Quarantined;
use super::queue::{
    BlobRef, Deadline, DueTimer, JobId, JobState, Kind, Listing, NewJob, MAX_CRASHES,
};
use super::seal::Seal;
use super::users::{Quota, TotpOutcome, TOTP_MAX_FAILURES};
use super::{Database, PgSettings, Result, Store, StoreError};
use crate::flow::notice::State as NoticeState;

/// A throwaway cluster for one test (`crate::labpg`, fsync off).
fn pg_cluster() -> crate::labpg::PgCluster {
    crate::labpg::PgCluster::start(false).unwrap_or_else(|e| panic!("{e}"))
}

fn w<R: Send + 'static>(s: &Store, f: impl FnOnce(&dyn Tx) -> Result<R> + Send + 'static) -> R {
    s.write_blocking(f).unwrap()
}

fn r<R>(s: &Store, f: impl FnOnce(&dyn Tx) -> Result<R>) -> R {
    s.read_blocking(f).unwrap()
}

fn job(key: &str, kind: Kind, id: &str, rcpts: &[&str], due: i64) -> NewJob {
    NewJob {
        key: key.into(),
        kind,
        identificativo: Some(id.into()),
        mail_from: "a@x.test".into(),
        recipients: rcpts.iter().map(|s| s.to_string()).collect(),
        next_hop: Some("y.test".into()),
        blob: Some(BlobRef::Spooled(format!("seg1@{}", key.len()))),
        data: None,
        due_at: due,
    }
}

/// The ids of the jobs a claim at `now` hands out, released again.
fn due_jobs(s: &Store, now: i64, limit: usize) -> Vec<JobId> {
    let got = w(s, move |d| {
        let got = d.claim_jobs("look", now, now + 1, limit, &HashSet::new())?;
        d.release_node("look")?;
        Ok(got)
    });
    got.claimed.iter().map(|j| j.id).collect()
}

/// The deadlines a claim at `now` hands out, released again.
fn due_timers(s: &Store, now: i64, limit: usize) -> Vec<DueTimer> {
    let got = w(s, move |d| {
        let got = d.claim_timers("look", now, now + 1, limit)?;
        d.release_node("look")?;
        Ok(got)
    });
    got.into_iter().map(|(t, _)| t).collect()
}

fn users(s: &Store) {
    assert!(w(s, |d| d.user_add("Alice@X.test", "h1", 5)));
    assert!(!w(s, |d| d.user_add("alice@x.test", "h2", 6)));
    assert_eq!(
        r(s, |d| d.user_password_hash("ALICE@x.test")).as_deref(),
        Some("h1")
    );
    assert!(w(s, |d| d.user_set_password("alice@x.test", "h3")));
    assert!(!w(s, |d| d.user_set_password("nobody@x.test", "h3")));
    assert!(w(s, |d| d.user_set_quota("alice@x.test", Quota::Bytes(1000))));
    assert_eq!(
        r(s, |d| d.user_quota("alice@x.test")),
        Some(Quota::Bytes(1000))
    );
    assert!(w(s, |d| d.user_add("bob@x.test", "h", 5)));
    assert!(w(s, |d| d.user_set_quota("bob@x.test", Quota::Unlimited)));
    assert_eq!(
        r(s, |d| d.users_with_quotas()),
        vec![
            ("alice@x.test".to_string(), Quota::Bytes(1000)),
            ("bob@x.test".to_string(), Quota::Unlimited)
        ]
    );
    // The second factor: a step works once, failures lock.
    assert!(!w(s, |d| d.totp_set("nobody@x.test", "s", 1)));
    assert!(w(s, |d| d.totp_set("alice@x.test", "sec", 1)));
    assert_eq!(
        r(s, |d| d.totp_secret("alice@x.test")).as_deref(),
        Some("sec")
    );
    assert_eq!(
        w(s, |d| d.totp_attempt("alice@x.test", Some(7), 10)),
        TotpOutcome::Accepted
    );
    assert_eq!(
        w(s, |d| d.totp_attempt("alice@x.test", Some(7), 11)),
        TotpOutcome::Replayed
    );
    // The replay counted as the first failure.
    for _ in 2..TOTP_MAX_FAILURES {
        assert_eq!(
            w(s, |d| d.totp_attempt("alice@x.test", None, 12)),
            TotpOutcome::Wrong { locked: false }
        );
    }
    assert_eq!(
        w(s, |d| d.totp_attempt("alice@x.test", None, 12)),
        TotpOutcome::Wrong { locked: true }
    );
    assert!(matches!(
        w(s, |d| d.totp_attempt("alice@x.test", Some(9), 13)),
        TotpOutcome::Locked(_)
    ));
    assert_eq!(
        w(s, |d| d.totp_attempt("bob@x.test", Some(1), 13)),
        TotpOutcome::NotEnabled
    );
    assert!(w(s, |d| d.totp_reseal("alice@x.test", "sec", "sec2")));
    assert!(!w(s, |d| d.totp_reseal("alice@x.test", "sec", "sec3")));
    assert_eq!(
        r(s, |d| d.totp_secrets()),
        vec![("alice@x.test".to_string(), "sec2".to_string())]
    );
    // Sessions end with a change of credentials.
    w(s, |d| {
        d.session_create("tok", "alice@x.test", "csrf", 100, 60_000, 600_000)
    });
    let found = r(s, |d| d.session_find("tok")).unwrap();
    assert_eq!((found.csrf.as_str(), found.last_seen), ("csrf", 100));
    w(s, |d| d.session_touch("tok", 200));
    w(s, |d| d.session_touch("tok", 150));
    assert_eq!(r(s, |d| d.session_find("tok")).unwrap().last_seen, 200);
    assert!(w(s, |d| d.totp_clear("alice@x.test")));
    assert!(r(s, |d| d.session_find("tok")).is_none());
    w(s, |d| {
        d.session_create("t2", "bob@x.test", "c", 100, 60_000, 600_000)
    });
    w(s, |d| d.session_end("t2"));
    assert!(r(s, |d| d.session_find("t2")).is_none());
    assert!(w(s, |d| d.user_delete("bob@x.test")));
    assert!(!r(s, |d| d.user_exists("bob@x.test")));
}

/// Account self-service (`store::account`): app passwords, the second
/// factor's enrolment and recovery codes, a password change keeping the
/// session it came from.
fn account(s: &Store) {
    assert!(w(s, |d| d.user_add("carol@x.test", "h", 1)));
    assert!(w(s, |d| d.user_add("dave@x.test", "h", 1)));
    // App passwords: per user, found by digest, revoked by their owner only.
    assert_eq!(
        w(s, |d| d.app_password_add(
            "nobody@x.test",
            "i0",
            "l",
            &[0; 32],
            1
        )),
        AppPasswordAdded::NoUser
    );
    assert_eq!(
        w(s, |d| d.app_password_add(
            "Carol@X.test",
            "i1",
            "phone",
            &[1; 32],
            10
        )),
        AppPasswordAdded::Added
    );
    w(s, |d| {
        d.app_password_add("carol@x.test", "i2", "laptop", &[2; 32], 20)
    });
    w(s, |d| {
        d.app_password_add("dave@x.test", "i3", "pc", &[3; 32], 5)
    });
    let found = r(s, |d| d.app_password_find("carol@x.test", &[1; 32])).unwrap();
    assert_eq!(
        (
            found.id.as_str(),
            found.label.as_str(),
            found.created_at,
            found.last_used
        ),
        ("i1", "phone", 10, None)
    );
    // Dave's secret does not open Carol's account.
    assert!(r(s, |d| d.app_password_find("carol@x.test", &[3; 32])).is_none());
    assert!(!w(s, |d| d.app_password_revoke("carol@x.test", "i3")));
    assert!(r(s, |d| d.app_password_find("dave@x.test", &[3; 32])).is_some());
    // The last use only moves forward.
    w(s, |d| d.app_password_used("i1", 50));
    w(s, |d| d.app_password_used("i1", 40));
    let list = r(s, |d| d.app_passwords("CAROL@x.test"));
    assert_eq!(
        list.iter()
            .map(|p| (p.id.as_str(), p.last_used))
            .collect::<Vec<_>>(),
        vec![("i1", Some(50)), ("i2", None)]
    );
    assert!(w(s, |d| d.app_password_revoke("carol@x.test", "i1")));
    assert!(r(s, |d| d.app_password_find("carol@x.test", &[1; 32])).is_none());
    assert!(!w(s, |d| d.app_password_revoke("carol@x.test", "i1")));
    // At most MAX_APP_PASSWORDS each.
    w(s, |d| {
        for i in 1..MAX_APP_PASSWORDS {
            let mut digest = [9u8; 32];
            digest[..8].copy_from_slice(&i.to_be_bytes());
            d.app_password_add("carol@x.test", &format!("m{i}"), "m", &digest, 30)?;
        }
        Ok(())
    });
    assert_eq!(
        r(s, |d| d.app_passwords("carol@x.test")).len() as i64,
        MAX_APP_PASSWORDS
    );
    assert_eq!(
        w(s, |d| d.app_password_add(
            "carol@x.test",
            "over",
            "x",
            &[4; 32],
            31
        )),
        AppPasswordAdded::TooMany
    );
    // A password change ends the user's other web sessions, not this one.
    for t in ["here", "there"] {
        w(s, move |d| {
            d.session_create(t, "carol@x.test", "c", 100, 60_000, 600_000)
        });
    }
    assert!(w(s, |d| d.user_change_password(
        "carol@x.test",
        "h2",
        "here"
    )));
    assert!(!w(s, |d| d.user_change_password(
        "nobody@x.test",
        "h2",
        "here"
    )));
    assert_eq!(
        r(s, |d| d.user_password_hash("carol@x.test")).as_deref(),
        Some("h2")
    );
    assert!(r(s, |d| d.session_find("here")).is_some());
    assert!(r(s, |d| d.session_find("there")).is_none());
    // An enrolment: its start is kept (the web refuses one past 15
    // minutes), a restart replaces secret and start, and only the secret
    // in progress confirms, once.
    assert!(!w(s, |d| d.totp_pending_set("nobody@x.test", "s", 1)));
    assert!(w(s, |d| d.totp_pending_set("carol@x.test", "s1", 100)));
    assert_eq!(
        r(s, |d| d.totp_pending("carol@x.test")),
        Some(("s1".to_string(), 100))
    );
    assert!(w(s, |d| d.totp_pending_set("carol@x.test", "s2", 200)));
    assert_eq!(
        r(s, |d| d.totp_pending("carol@x.test")),
        Some(("s2".to_string(), 200))
    );
    w(s, |d| {
        d.session_create("there", "carol@x.test", "c", 100, 60_000, 600_000)
    });
    assert!(!w(s, |d| d.totp_confirm(
        "carol@x.test",
        "s1",
        5,
        &[],
        300,
        "here"
    )));
    assert_eq!(r(s, |d| d.totp_secret("carol@x.test")), None);
    let codes = [[7u8; 32], [8u8; 32], [10u8; 32]];
    assert!(w(s, move |d| d.totp_confirm(
        "carol@x.test",
        "s2",
        5,
        &codes,
        300,
        "here"
    )));
    assert!(!w(s, move |d| d.totp_confirm(
        "carol@x.test",
        "s2",
        5,
        &codes,
        300,
        "here"
    )));
    assert_eq!(r(s, |d| d.totp_pending("carol@x.test")), None);
    assert_eq!(
        r(s, |d| d.totp_secret("carol@x.test")).as_deref(),
        Some("s2")
    );
    assert!(r(s, |d| d.session_find("here")).is_some());
    assert!(r(s, |d| d.session_find("there")).is_none());
    // The confirming code's step is used.
    assert_eq!(
        w(s, |d| d.totp_attempt("carol@x.test", Some(5), 301)),
        TotpOutcome::Replayed
    );
    // Recovery codes work once; wrong ones lock like wrong TOTP codes
    // (the replay above was the first failure).
    assert_eq!(r(s, |d| d.totp_recovery_left("carol@x.test")), 3);
    assert_eq!(
        w(s, |d| d.totp_recovery_attempt(
            "carol@x.test",
            &[7; 32],
            302
        )),
        TotpOutcome::Accepted
    );
    assert_eq!(
        w(s, |d| d.totp_recovery_attempt(
            "carol@x.test",
            &[7; 32],
            303
        )),
        TotpOutcome::Wrong { locked: false }
    );
    for _ in 2..TOTP_MAX_FAILURES {
        assert_eq!(
            w(s, |d| d.totp_recovery_attempt(
                "carol@x.test",
                &[9; 32],
                304
            )),
            TotpOutcome::Wrong { locked: false }
        );
    }
    assert_eq!(
        w(s, |d| d.totp_recovery_attempt(
            "carol@x.test",
            &[9; 32],
            305
        )),
        TotpOutcome::Wrong { locked: true }
    );
    assert!(matches!(
        w(s, |d| d.totp_recovery_attempt(
            "carol@x.test",
            &[8; 32],
            306
        )),
        TotpOutcome::Locked(_)
    ));
    assert_eq!(r(s, |d| d.totp_recovery_left("carol@x.test")), 2);
    assert_eq!(
        w(s, |d| d.totp_recovery_attempt("dave@x.test", &[8; 32], 306)),
        TotpOutcome::NotEnabled
    );
    // A new secret from the operator forgets the old secret's codes.
    assert!(w(s, |d| d.totp_set("carol@x.test", "s3", 400)));
    assert_eq!(r(s, |d| d.totp_recovery_left("carol@x.test")), 0);
    // Turning it off from the web keeps that session.
    w(s, |d| {
        d.session_create("here", "carol@x.test", "c", 500, 60_000, 600_000)
    });
    w(s, |d| d.totp_pending_set("carol@x.test", "s4", 500));
    assert!(w(s, |d| d.totp_disable_keeping("carol@x.test", "here")));
    assert!(!w(s, |d| d.totp_disable_keeping("carol@x.test", "here")));
    assert_eq!(r(s, |d| d.totp_pending("carol@x.test")), None);
    assert!(r(s, |d| d.session_find("here")).is_some());
    // The new-PEC notice address and its state, changed only from the
    // state it was read in.
    assert!(!w(s, |d| d.notice_set("nobody@x.test", "n@plain.test")));
    assert_eq!(r(s, |d| d.notice_get("carol@x.test")), None);
    assert!(w(s, |d| d.notice_set("Carol@x.test", "n@plain.test")));
    let zero = NoticeState::default();
    assert_eq!(
        r(s, |d| d.notice_get("carol@x.test")),
        Some(("n@plain.test".to_string(), zero))
    );
    let waiting = NoticeState {
        next_at: 70,
        held: 2,
        summary_job: Some(JobId(9)),
    };
    assert!(w(s, move |d| d.notice_swap(
        "carol@x.test",
        &zero,
        &waiting
    )));
    assert!(!w(s, move |d| d.notice_swap("carol@x.test", &zero, &zero)));
    let other_job = NoticeState {
        summary_job: Some(JobId(8)),
        ..waiting
    };
    assert!(!w(s, move |d| d.notice_swap(
        "carol@x.test",
        &other_job,
        &zero
    )));
    // Through the write door: a batch guarded on a stale state is refused
    // whole, one on the state as it is moves it.
    let guarded = |seen: NoticeState, then: NoticeState| {
        let mut b = crate::flow::batch::Batch::at(60);
        b.guard = Some(crate::flow::batch::Guard::Notice {
            address: "carol@x.test".into(),
            seen,
            then,
        });
        b
    };
    assert!(matches!(
        s.commit_blocking(guarded(zero, zero)),
        Err(StoreError::Changed(_))
    ));
    assert_eq!(r(s, |d| d.notice_get("carol@x.test")).unwrap().1, waiting);
    let moved = NoticeState { held: 3, ..waiting };
    s.commit_blocking(guarded(waiting, moved)).unwrap();
    assert_eq!(r(s, |d| d.notice_get("carol@x.test")).unwrap().1, moved);
    assert!(w(s, move |d| d.notice_swap(
        "carol@x.test",
        &moved,
        &waiting
    )));
    // A new address keeps the state; an empty one removes both.
    assert!(w(s, |d| d.notice_set("carol@x.test", "m@plain.test")));
    assert_eq!(
        r(s, |d| d.notice_get("carol@x.test")),
        Some(("m@plain.test".to_string(), waiting))
    );
    assert!(w(s, move |d| d.notice_swap(
        "carol@x.test",
        &waiting,
        &zero
    )));
    assert!(w(s, |d| d.notice_set("carol@x.test", "")));
    assert_eq!(r(s, |d| d.notice_get("carol@x.test")), None);
    assert!(!w(s, move |d| d.notice_swap("carol@x.test", &zero, &zero)));
    w(s, |d| d.notice_set("dave@x.test", "d@plain.test"));
    // Deleting a user takes its app passwords, codes and enrolment along.
    w(s, |d| {
        d.totp_pending_set("dave@x.test", "d1", 600)?;
        d.totp_confirm("dave@x.test", "d1", 1, &[[11; 32]], 600, "none")?;
        d.totp_pending_set("dave@x.test", "d2", 601)
    });
    assert_eq!(r(s, |d| d.totp_recovery_left("dave@x.test")), 1);
    assert!(w(s, |d| d.user_delete("dave@x.test")));
    assert!(r(s, |d| d.app_passwords("dave@x.test")).is_empty());
    assert!(r(s, |d| d.app_password_find("dave@x.test", &[3; 32])).is_none());
    assert_eq!(r(s, |d| d.totp_recovery_left("dave@x.test")), 0);
    assert_eq!(r(s, |d| d.totp_pending("dave@x.test")), None);
    assert_eq!(r(s, |d| d.notice_get("dave@x.test")), None);
    // Re-creating the address starts clean.
    assert!(w(s, |d| d.user_add("dave@x.test", "h", 2)));
    assert!(r(s, |d| d.app_passwords("dave@x.test")).is_empty());
    assert_eq!(r(s, |d| d.totp_secret("dave@x.test")), None);
    assert!(w(s, |d| d.user_delete("dave@x.test")));
}

fn messages(s: &Store) {
    let m = |id: &str, at: i64| Accepted {
        identificativo: id.into(),
        msgid: Some(format!("<{id}@x.test>")),
        sender: "Alice@X.test".into(),
        subject: "s".into(),
        recipients: "b@y.test".into(),
        receipt_type: "completa".into(),
        daticert: format!("<d>{id}</d>"),
        accepted_at: at,
    };
    let (m1, m2) = (m("m1", 1), m("m2", 2));
    w(s, move |d| d.message_insert(&m1));
    w(s, move |d| d.message_insert(&m2));
    let dup = m("m1", 3);
    assert!(s.write_blocking(move |d| d.message_insert(&dup)).is_err());
    assert_eq!(r(s, |d| d.message_get("m1")), Some(m("m1", 1)));
    assert_eq!(
        r(s, |d| d.message_daticert("m2")).as_deref(),
        Some("<d>m2</d>")
    );
    assert_eq!(r(s, |d| d.message_accepted_at("m2")), Some(2));
    let sent = r(s, |d| d.sent_by("alice@x.test", 0, 10));
    let ids: Vec<_> = sent.iter().map(|m| m.identificativo.as_str()).collect();
    assert_eq!(ids, ["m2", "m1"]);
    assert_eq!(r(s, |d| d.sent_by("alice@x.test", 1, 10)).len(), 1);
    assert_eq!(
        r(s, |d| d.sent_with_msgid("ALICE@x.test", "m1@x.test"))
            .unwrap()
            .identificativo,
        "m1"
    );
    assert!(r(s, |d| d.sent_with_msgid("other@x.test", "m1@x.test")).is_none());
}

fn queue(s: &Store) {
    let j1 = job("relay:1", Kind::Relay, "id1", &["b@y.test"], 100);
    let j2 = job("mailbox:1", Kind::Mailbox, "id1", &["a@x.test"], 200);
    let (a, b) = (j1.clone(), j2.clone());
    assert!(w(s, move |d| d.job_enqueue(&a, 1)));
    assert!(w(s, move |d| d.job_enqueue(&b, 1)));
    let a = j1.clone();
    assert!(!w(s, move |d| d.job_enqueue(&a, 2)), "one job per key");
    let bad = NewJob {
        blob: Some(BlobRef::New(0)),
        ..job("x", Kind::Relay, "i", &[], 0)
    };
    assert!(s.write_blocking(move |d| d.job_enqueue(&bad, 1)).is_err());
    // Mailbox deliveries first, then by due time.
    let due = due_jobs(s, 1_000, 10);
    assert_eq!(due.len(), 2);
    let (relay, mailbox) = (due[1], due[0]);
    assert_eq!(r(s, |d| d.job_get(mailbox)).unwrap().kind, Kind::Mailbox);
    assert_eq!(due_jobs(s, 150, 10), vec![relay]);
    assert_eq!(due_jobs(s, 1_000, 1), vec![mailbox]);
    assert_eq!(r(s, |d| d.jobs_next_due()), Some(100));
    let got = r(s, |d| d.job_get(relay)).unwrap();
    assert_eq!(got.recipients, vec!["b@y.test".to_string()]);
    assert_eq!(got.state, JobState::Pending);
    w(s, move |d| d.job_reschedule(relay, "busy", 500, 3));
    let got = r(s, |d| d.job_get(relay)).unwrap();
    assert_eq!((got.attempts, got.due_at), (1, 500));
    assert_eq!(got.last_error.as_deref(), Some("busy"));
    w(s, move |d| d.job_mark_done(mailbox, 4));
    assert_eq!(due_jobs(s, 1_000, 10), vec![relay]);
    // Crashes (a node's claims found at its restart) hold a job at the
    // third; the operator's retry frees it.
    for death in 1..=MAX_CRASHES {
        let got = w(s, |d| d.claim_jobs("n1", 1_000, 2_000, 10, &HashSet::new()));
        assert_eq!(got.claimed.len(), 1);
        let (again, held) = w(s, |d| d.recover_node("n1", 5));
        if death < MAX_CRASHES {
            assert_eq!((again, held.len()), (vec![relay], 0));
        } else {
            assert!(again.is_empty());
            assert_eq!(held[0].state, JobState::Held);
            assert_eq!(held[0].claimed_by, None);
        }
    }
    let counts = r(s, |d| d.job_counts());
    assert_eq!(
        counts,
        vec![
            (JobState::Pending, 0),
            (JobState::Held, 1),
            (JobState::Failed, 0)
        ]
    );
    assert_eq!(r(s, |d| d.job_list(Listing::Waiting)).len(), 1);
    assert_eq!(r(s, |d| d.job_list(Listing::All)).len(), 2);
    assert_eq!(w(s, move |d| d.jobs_retry_now(Some(relay), 6)), 1);
    w(s, move |d| d.job_mark_failed(relay, "no", 7));
    assert_eq!(r(s, |d| d.job_list(Listing::Failed)).len(), 1);
    assert_eq!(w(s, |d| d.jobs_retry_failed(8)), 1);
    assert_eq!(w(s, |d| d.jobs_retry_now(None, 9)), 1);
    assert_eq!(r(s, |d| d.pending_relays()), 1);
    assert!(w(s, move |d| d.job_cancel(relay, 10)));
    assert!(!w(s, move |d| d.job_cancel(relay, 10)));
    // Spool segments: named by a job's blob until forgotten.
    assert!(!r(s, |d| d.segment_in_use("seg1", 11, 0)));
    let j3 = job("relay:3", Kind::Relay, "id3", &["c@y.test"], 100);
    assert!(w(s, move |d| d.job_enqueue(&j3, 11)));
    assert!(r(s, |d| d.segment_in_use("seg1", 11, 0)));
    assert!(!r(s, |d| d.segment_in_use("seg", 11, 0)));
    w(s, |d| d.forget_segment("seg1"));
    assert!(!r(s, |d| d.segment_in_use("seg1", 11, 0)));
    assert_eq!(w(s, |d| d.jobs_purge_finished(1_000, 10)), 2);

    // Timers.
    w(s, |d| d.timer_start("id3", "c@y.test", 1, 100, 200));
    w(s, |d| d.timer_start("id3", "c@y.test", 9, 900, 900));
    w(s, |d| d.timer_start("id3", "d@y.test", 1, 100, 200));
    assert_eq!(r(s, |d| d.jobs_next_due()), Some(100));
    let due = due_timers(s, 150, 10);
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|t| t.deadline == Deadline::Preavviso));
    // Past both deadlines, only the final one.
    let due = due_timers(s, 250, 10);
    assert_eq!(due.len(), 2);
    assert!(due.iter().all(|t| t.deadline == Deadline::Expire));
    assert!(w(s, |d| d.timer_presa("id3", "c@y.test", 120)));
    assert_eq!(
        r(s, |d| d.presa_times("id3")),
        vec![("c@y.test".to_string(), 120)]
    );
    let t = DueTimer {
        identificativo: "id3".into(),
        recipient: "d@y.test".into(),
        deadline: Deadline::Preavviso,
    };
    let t2 = t.clone();
    assert!(w(s, move |d| d.timer_fired(&t)));
    assert!(!w(s, move |d| d.timer_fired(&t2)));
    assert_eq!(
        w(s, |d| d.timer_close("id3", "c@y.test", 130, "ricevuta")),
        Some(1)
    );
    assert_eq!(w(s, |d| d.timer_close("id3", "c@y.test", 131, "x")), None);
    // The relay stops once every certified recipient is closed.
    let j4 = job(
        "relay:4",
        Kind::Relay,
        "id3",
        &["c@y.test", "d@y.test"],
        100,
    );
    assert!(w(s, move |d| d.job_enqueue(&j4, 12)));
    w(s, |d| d.stop_relays("id3", 13));
    assert_eq!(r(s, |d| d.pending_relays()), 1);
    w(s, |d| {
        d.timer_close("id3", "d@y.test", 14, "expire").map(|_| ())
    });
    w(s, |d| d.stop_relays("id3", 15));
    assert_eq!(r(s, |d| d.pending_relays()), 0);

    // A job written already claimed (a commit's hand-over): its first
    // claim, fence 1; nobody else is handed it before the lease lapses.
    let j5 = job("relay:5", Kind::Relay, "id5", &["e@y.test"], 16);
    let again = j5.clone();
    let id = w(s, move |d| {
        d.job_enqueue_claimed(&j5, Some("seg2@1"), 16, "n1", 1_016)
    })
    .expect("a new key gives its id");
    let got = r(s, move |d| d.job_get(id)).unwrap();
    assert_eq!(got.key, "relay:5");
    assert_eq!(got.blob.as_deref(), Some("seg2@1"));
    assert_eq!(
        (got.state, got.due_at, got.created_at),
        (JobState::Pending, 16, 16)
    );
    assert_eq!(got.claimed_by.as_deref(), Some("n1"));
    assert_eq!((got.claimed_until, got.fence), (Some(1_016), 1));
    assert_eq!(
        w(s, move |d| d
            .job_enqueue_claimed(&again, None, 17, "n2", 1_017)),
        None,
        "one job per key"
    );
    assert!(due_jobs(s, 1_000, 10).is_empty(), "held under its claim");
    assert_eq!(due_jobs(s, 1_016, 10), vec![id], "the lease lapsed");
}

fn chain_of(s: &Store) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut prev = GENESIS;
    r(s, |d| {
        d.log_for_each_chained(0, i64::MAX, &mut |e, h| {
            prev = chain_next(&prev, &row_digest(e));
            assert_eq!(h, Some(prev), "row {}", e.id);
            ids.push(e.id);
            true
        })
    });
    ids
}

fn log_and_seals(s: &Store) {
    let ev = |k: EventKind, ts: i64, id: &str| Event {
        identificativo: Some(id.into()),
        sender: Some("Alice@X.test".into()),
        msgid: Some(format!("<{id}@m>")),
        detail: Some("accettazione di x".into()),
        ..Event::new(k, ts)
    };
    let e1 = ev(EventKind::Accettazione, 1_000, "L1");
    assert_eq!(w(s, move |d| d.log_append(&e1)), 1);
    // A transaction that fails after appending leaves no hole.
    let e2 = ev(EventKind::Deposito, 2_000, "L2");
    let failed = s.write_blocking(move |d| {
        d.log_append(&e2)?;
        Err::<(), _>(StoreError::Commit("refused".into()))
    });
    assert!(failed.is_err());
    let (e2, e3) = (
        ev(EventKind::Deposito, 2_000, "L2"),
        ev(EventKind::AvvenutaConsegna, 3_000, "L3"),
    );
    assert_eq!(
        w(s, move |d| Ok((d.log_append(&e2)?, d.log_append(&e3)?))),
        (2, 3)
    );
    assert_eq!(chain_of(s), vec![1, 2, 3]);
    assert_eq!(r(s, |d| d.log_id_bounds()), Some((1, 3)));
    assert_eq!(r(s, |d| d.log_last_id_before(2_500)), Some(2));
    assert_eq!(r(s, |d| d.log_first_id_from(2_500)), Some(3));
    assert_eq!(r(s, |d| d.log_chain_before(2)).unwrap().0, 1);
    let q = |q: Query| -> Vec<i64> { r(s, |d| d.log_query(&q)).iter().map(|e| e.id).collect() };
    assert_eq!(
        q(Query {
            identificativo: Some("<L2>".into()),
            ..Query::default()
        }),
        [2]
    );
    assert_eq!(
        q(Query {
            msgid: Some("L3@m".into()),
            ..Query::default()
        }),
        [3]
    );
    assert_eq!(
        q(Query {
            address: Some("alice@x".into()),
            events: vec![EventKind::Deposito, EventKind::AvvenutaConsegna],
            from_ms: Some(2_500),
            ..Query::default()
        }),
        [3]
    );
    assert_eq!(r(s, |d| d.count_deposits("accettazione")), 1);
    assert_eq!(
        r(s, |d| d.deposit_times("accettazione")),
        vec![("L2".to_string(), 2_000)]
    );
    let fail = Event {
        recipients: Some("z@ord.test".into()),
        error: Some("5.1.1".into()),
        ..ev(EventKind::parse("mancata-consegna-esterno"), 3_500, "L3")
    };
    w(s, move |d| d.log_append(&fail));
    assert_eq!(
        r(s, |d| d.esterno_failures("L3")),
        vec![("z@ord.test".to_string(), 3_500, "5.1.1".to_string())]
    );

    // Seals.
    let range = r(s, |d| d.seal_range(0, 2_500, &GENESIS)).unwrap();
    assert_eq!((range.first_id, range.last_id, range.rows), (1, 2, 2));
    assert_eq!(r(s, |d| d.log_count_rows(1, 4)), 4);
    assert_eq!(r(s, |d| d.log_first_unsealed_ts(2)), Some(3_000));
    let seal = Seal {
        date: "1970-01-01".into(),
        first_id: 1,
        last_id: 2,
        rows: 2,
        prev_hash: GENESIS.to_vec(),
        last_hash: range.last_hash.clone(),
        seal: b"seal".to_vec(),
        signature: b"sig".to_vec(),
        tsr: None,
        created_at: 9,
        stamped_at: None,
    };
    let (a, b) = (seal.clone(), seal.clone());
    assert!(w(s, move |d| d.seal_insert(&a)));
    assert!(!w(s, move |d| d.seal_insert(&b)), "one seal a day");
    assert!(w(s, |d| d.seal_set_tsr("1970-01-01", b"tsr", 10)));
    assert!(!w(s, |d| d.seal_set_tsr("1970-01-01", b"tsr2", 11)));
    let all = r(s, |d| d.seal_all());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tsr.as_deref(), Some(&b"tsr"[..]));
    assert_eq!(r(s, |d| d.seal_last()).unwrap().last_id, 2);
    assert_eq!(
        r(s, |d| d.seal_newest_date()).as_deref(),
        Some("1970-01-01")
    );
    let unsealed = r(s, |d| d.unsealed_days(&all, i64::MAX / 2));
    assert_eq!(unsealed.iter().map(|u| u.rows).sum::<i64>(), 2);
    w(s, |d| {
        d.seal_set_error(&["1970-01-02".into(), "1970-01-03".into()], "tsa down", 5)
    });
    w(s, |d| {
        d.seal_set_error(&["1970-01-02".into()], "still down", 6)
    });
    w(s, |d| d.seal_clear_errors_except(&["1970-01-02".into()]));
    let errs = r(s, |d| d.seal_errors());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs["1970-01-02"], ("still down".to_string(), 6));
    // Rows past 30 months go; the rest stay.
    assert_eq!(w(s, |d| d.log_purge_expired(4_000)), 0);

    // Quarantine.
    let q1 = Quarantined {
        id: 0,
        identificativo: Some("Q1".into()),
        virus: "Eicar".into(),
        sender: "a@x.test".into(),
        recipients: "b@y.test".into(),
        point: "submission".into(),
        file: "q1.eml".into(),
        size: 68,
        at: 1,
    };
    let q = q1.clone();
    let id = w(s, move |d| d.quarantine_insert(&q));
    assert!(id > 0);
    assert_eq!(r(s, |d| d.quarantine_list()).len(), 1);
    assert_eq!(r(s, |d| d.quarantine_get("Q1")).unwrap().id, id);
    assert_eq!(
        r(s, |d| d.quarantine_get(&id.to_string())).unwrap().file,
        "q1.eml"
    );
    assert_eq!(
        w(s, |d| d.quarantine_purge_expired(crate::store::now_ms())),
        vec!["q1.eml".to_string()]
    );
    w(s, |d| d.health_touch(1));
}

/// The nodes' heartbeats and the claims per node (`pecd cluster status`).
fn cluster(s: &Store) {
    assert!(r(s, |d| d.nodes_seen()).is_empty());
    w(s, |d| d.node_beat("n2", 900, 1_000, "0.1.0"));
    w(s, |d| d.node_beat("n1", 950, 1_100, "0.1.0"));
    w(s, |d| d.node_beat("n1", 950, 1_200, "0.1.0"));
    let seen = r(s, |d| d.nodes_seen());
    let names: Vec<_> = seen.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["n1", "n2"]);
    assert_eq!((seen[0].started_at, seen[0].heartbeat_at), (950, 1_200));
    assert_eq!(seen[0].stopped_at, None);
    w(s, |d| d.node_stop("n1", 1_300));
    let n1 = r(s, |d| d.nodes_seen()).remove(0);
    assert_eq!((n1.stopped_at, n1.heartbeat_at), (Some(1_300), 1_300));
    // A restart under the same name is up again, with its new start.
    w(s, |d| d.node_beat("n1", 1_400, 1_400, "0.2.0"));
    let n1 = r(s, |d| d.nodes_seen()).remove(0);
    assert_eq!(
        (n1.stopped_at, n1.started_at, n1.version.as_str()),
        (None, 1_400, "0.2.0")
    );

    // Claims per node: n1 holds one job until 5,000, n2 one deadline
    // until 4,000; at 4,500 n2's has lapsed.
    w(s, |d| {
        d.job_enqueue(&job("cl1", Kind::Relay, "idc", &["c@y.test"], 10), 10)
    });
    w(s, |d| d.timer_start("idc", "c@y.test", 1, 10, 20));
    let got = w(s, |d| d.claim_jobs("n1", 3_000, 5_000, 1, &HashSet::new()));
    assert_eq!(got.claimed.len(), 1);
    let timers = w(s, |d| d.claim_timers("n2", 3_000, 4_000, 1));
    assert_eq!(timers.len(), 1);
    let held = r(s, |d| d.claims_per_node(4_500));
    let of = |n: &str| {
        held.iter()
            .find(|c| c.node == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (of("n1").jobs, of("n1").jobs_lapsed, of("n1").timers),
        (1, 0, 0)
    );
    assert_eq!(
        (of("n2").jobs, of("n2").timers, of("n2").timers_lapsed),
        (0, 0, 1)
    );
    w(s, |d| d.release_node("n1"));
    w(s, |d| d.release_node("n2"));
    assert!(r(s, |d| d.claims_per_node(4_500)).is_empty());
}

fn login_counts(s: &Store) {
    use crate::throttle::counts::{CountKey, FailureCount};
    let acct = CountKey::Account("victim@x.test".into());
    let net = CountKey::Network("192.0.2.0".parse().unwrap());
    let a = acct.clone();
    assert_eq!(w(s, move |d| d.login_count_take(&a)), None);
    let c = FailureCount {
        failures: 3,
        pending: 1,
        last_ms: 1_000,
        next_allowed_ms: 1_400,
    };
    let a = acct.clone();
    w(s, move |d| d.login_count_put(&a, Some(&c)));
    let a = acct.clone();
    assert_eq!(w(s, move |d| d.login_count_take(&a)), Some(c));
    // One key per scope: the network's count is another row.
    let n2 = net.clone();
    assert_eq!(w(s, move |d| d.login_count_take(&n2)), None);
    let later = FailureCount {
        failures: u32::MAX,
        last_ms: 2_000,
        ..c
    };
    let (a, n2) = (acct.clone(), net.clone());
    w(s, move |d| {
        d.login_count_put(&a, Some(&later))?;
        d.login_count_put(&n2, Some(&c))
    });
    let a = acct.clone();
    assert_eq!(w(s, move |d| d.login_count_take(&a)), Some(later));
    // Forgotten by the last attempt's time.
    assert_eq!(w(s, |d| d.login_counts_forget(1_000)), 0);
    assert_eq!(w(s, |d| d.login_counts_forget(1_001)), 1);
    let n2 = net.clone();
    assert_eq!(w(s, move |d| d.login_count_take(&n2)), None);
    let a = acct.clone();
    w(s, move |d| d.login_count_put(&a, None));
    assert_eq!(w(s, move |d| d.login_count_take(&acct)), None);
}

/// API tokens and `Idempotency-Key`s (issue 25).
fn api(s: &Store) {
    let read = Scopes::parse(["read"]).unwrap();
    let both = Scopes::parse(["read", "send"]).unwrap();
    assert_eq!(
        w(s, move |d| d.token_create("nobody@x.test", "n", read, 1)).unwrap_err(),
        CreateRefused::NoUser
    );
    assert!(w(s, |d| d.user_add("tok@x.test", "h", 1)));
    assert!(w(s, |d| d.user_add("other@x.test", "h", 1)));
    let t1 = w(s, move |d| d.token_create("TOK@x.test", "ci", both, 1_000)).unwrap();
    let t2 = w(s, move |d| d.token_create("tok@x.test", "ro", read, 2_000)).unwrap();
    let t3 = w(s, move |d| d.token_create("other@x.test", "o", read, 1_500)).unwrap();
    let found = r(s, |d| d.token_find(&token_hash(&t1.token))).unwrap();
    assert_eq!(
        (
            found.id.as_str(),
            found.address.as_str(),
            found.name.as_str(),
            found.scopes,
            found.created_at,
            found.last_used
        ),
        (t1.id.as_str(), "tok@x.test", "ci", both, 1_000, None)
    );
    assert_eq!(r(s, |d| d.token_find(&token_hash("pecd_nothing"))), None);
    // Last use only moves forward.
    let id1 = t1.id.clone();
    w(s, move |d| d.token_touch(&id1, 5_000));
    let id1 = t1.id.clone();
    w(s, move |d| d.token_touch(&id1, 4_000));
    let mine = r(s, |d| d.token_list(Some("Tok@X.test")));
    let ids: Vec<_> = mine.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [t1.id.as_str(), t2.id.as_str()], "oldest first");
    assert_eq!((mine[0].last_used, mine[1].last_used), (Some(5_000), None));
    let all: Vec<_> = r(s, |d| d.token_list(None))
        .into_iter()
        .map(|t| t.address)
        .collect();
    assert_eq!(all, ["other@x.test", "tok@x.test", "tok@x.test"]);
    // Revocation: only the owner's, once.
    let id2 = t2.id.clone();
    assert!(!w(s, move |d| d.token_revoke(&id2, Some("other@x.test"))));
    let id2 = t2.id.clone();
    assert!(w(s, move |d| d.token_revoke(&id2, Some("tok@x.test"))));
    let id2 = t2.id.clone();
    assert!(!w(s, move |d| d.token_revoke(&id2, None)));
    assert_eq!(r(s, |d| d.token_find(&token_hash(&t2.token))), None);
    // At most MAX_PER_USER per mailbox.
    w(s, move |d| {
        for i in 1..MAX_PER_USER {
            d.token_create("tok@x.test", &format!("t{i}"), read, 3_000 + i)?
                .map_err(|e| StoreError::Commit(format!("{e:?}")))?;
        }
        Ok(())
    });
    assert_eq!(
        w(s, move |d| d.token_create(
            "tok@x.test",
            "one more",
            read,
            9_000
        ))
        .unwrap_err(),
        CreateRefused::TooMany
    );
    // A password change keeps the tokens; the user's removal takes them.
    assert!(w(s, |d| d.user_set_password("tok@x.test", "h2")));
    assert!(r(s, |d| d.token_find(&token_hash(&t1.token))).is_some());
    assert!(w(s, |d| d.user_delete("tok@x.test")));
    assert_eq!(r(s, |d| d.token_find(&token_hash(&t1.token))), None);
    assert!(r(s, |d| d.token_list(Some("tok@x.test"))).is_empty());
    assert!(r(s, |d| d.token_find(&token_hash(&t3.token))).is_some());

    // Idempotency-Keys.
    let (h1, h2) = ([1u8; 32], [2u8; 32]);
    let day = 86_400_000;
    let claim = |a: &'static str, k: &'static str, h: [u8; 32], m: &'static str, now: i64| {
        w(s, move |d| d.idempotency_claim(a, k, &h, m, now, day))
    };
    assert_eq!(claim("a@x.test", "k", h1, "m1", 0), KeyClaim::Fresh);
    assert_eq!(
        claim("a@x.test", "k", h1, "m2", 10),
        KeyClaim::InProgress {
            msgid: "m1".into(),
            started_at: 0
        }
    );
    assert_eq!(claim("a@x.test", "k", h2, "m2", 10), KeyClaim::OtherBody);
    assert_eq!(
        claim("b@x.test", "k", h2, "m3", 10),
        KeyClaim::Fresh,
        "another user's key of the same name is another key"
    );
    // A take-over names the attempt it replaces: only one of two wins.
    assert!(w(s, |d| d
        .idempotency_take_over("a@x.test", "k", "m1", "m4", 20)));
    assert!(!w(s, |d| d
        .idempotency_take_over("a@x.test", "k", "m1", "m5", 20)));
    // Only the holder's answer is recorded.
    w(s, |d| {
        d.idempotency_answer("a@x.test", "k", "m1", 500, b"no")
    });
    assert!(matches!(
        claim("a@x.test", "k", h1, "m6", 25),
        KeyClaim::InProgress { .. }
    ));
    w(s, |d| {
        d.idempotency_answer("a@x.test", "k", "m4", 201, b"{}")
    });
    let replay = KeyClaim::Answered {
        status: 201,
        body: b"{}".to_vec(),
    };
    assert_eq!(claim("a@x.test", "k", h1, "m6", 30), replay);
    assert_eq!(claim("a@x.test", "k", h2, "m6", 30), KeyClaim::OtherBody);
    // An answered key is not released; an unanswered one is.
    w(s, |d| d.idempotency_release("a@x.test", "k", "m4"));
    assert_eq!(claim("a@x.test", "k", h1, "m6", 30), replay);
    w(s, |d| d.idempotency_release("b@x.test", "k", "m3"));
    assert_eq!(claim("b@x.test", "k", h1, "m7", 40), KeyClaim::Fresh);
    // A day after its last start a key is free for anything.
    assert_eq!(claim("a@x.test", "k", h2, "m8", 20 + day), KeyClaim::Fresh);
    assert_eq!(
        claim("b@x.test", "k", h1, "m9", 20 + day),
        KeyClaim::InProgress {
            msgid: "m7".into(),
            started_at: 40
        },
        "b's key started later: still held"
    );
}

/// Every area, in order, on one store.
fn every_operation(s: &Store) {
    users(s);
    account(s);
    messages(s);
    queue(s);
    log_and_seals(s);
    cluster(s);
    login_counts(s);
    api(s);
}

#[test]
fn sqlite_answers_every_operation_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    every_operation(&s);
    s.close();
}

fn pg_settings(url: String) -> Database {
    Database::Postgres(PgSettings {
        url,
        password: None,
        pool: 4,
    })
}

#[test]
fn postgresql_answers_every_operation_as_sqlite_does() {
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    every_operation(&s);
    s.close();
    // A second open finds the schema migrated and the rows kept.
    let s = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    assert!(r(&s, |d| d.user_exists("alice@x.test")));
    s.close();
    assert_eq!(
        pg.psql("pecd", "SELECT count(*) FROM pecd_migrations")
            .unwrap(),
        super::postgres::schema::latest_version().to_string()
    );
}

#[test]
fn postgresql_keeps_one_log_chain_under_concurrent_writers() {
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    // Two stores on one database: two nodes, each with its own pool.
    let a = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let b = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                for i in 0..25 {
                    let e = Event::new(EventKind::Deposito, t * 1_000 + i);
                    s.write_blocking(move |d| {
                        d.log_append(&e)?;
                        d.log_append(&e)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ids = chain_of(&a);
    assert_eq!(ids, (1..=400).collect::<Vec<i64>>());
    a.close();
    b.close();
}

/// Requests with one `Idempotency-Key` on two nodes at once: one claim
/// is `Fresh` (one send), every other sees it in progress. Without the
/// primary key and `ON CONFLICT DO NOTHING` two would insert, or one would
/// fail on the key with a database error.
#[test]
fn postgresql_gives_one_idempotency_key_to_one_of_many_concurrent_requests() {
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let b = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    for round in 0..20 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = if t % 2 == 0 { a.clone() } else { b.clone() };
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    s.write_blocking(move |d| {
                        d.idempotency_claim(
                            "a@x.test",
                            &format!("key-{round}"),
                            &[7; 32],
                            &format!("m{t}"),
                            1_000,
                            86_400_000,
                        )
                    })
                    .unwrap()
                })
            })
            .collect();
        let got: Vec<KeyClaim> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let fresh = got.iter().filter(|c| **c == KeyClaim::Fresh).count();
        assert_eq!(fresh, 1, "round {round}: {got:?}");
        assert!(
            got.iter()
                .all(|c| matches!(c, KeyClaim::Fresh | KeyClaim::InProgress { .. })),
            "round {round}: {got:?}"
        );
    }
    a.close();
    b.close();
}

#[test]
fn postgresql_refuses_a_schema_newer_than_this_pecd_and_an_empty_database() {
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let db = pg_settings(pg.url());
    let e = super::Inspector::open_with(dir.path(), &db)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no pecd schema"), "{e}");
    Store::open_with(dir.path(), &db).unwrap().close();
    assert!(super::Inspector::open_with(dir.path(), &db).is_ok());
    pg.psql(
        "pecd",
        "INSERT INTO pecd_migrations(version, applied_at) VALUES (999, 0)",
    )
    .unwrap();
    for e in [
        Store::open_with(dir.path(), &db).err().unwrap().to_string(),
        super::Inspector::open_with(dir.path(), &db)
            .err()
            .unwrap()
            .to_string(),
        db.probe().unwrap_err().to_string(),
    ] {
        assert!(e.contains("newer than this pecd"), "{e}");
    }
    let unreachable = pg_settings(pg.url_of("nosuchdb"));
    let e = unreachable.probe().unwrap_err().to_string();
    assert!(
        e.contains("nosuchdb") && e.contains("does not exist"),
        "{e}"
    );
    // The guards of the legal record hold in the database itself.
    let url = pg.create_database("guards").unwrap();
    let s = Store::open_with(dir.path(), &pg_settings(url)).unwrap();
    let now = crate::store::now_ms();
    w(&s, move |d| {
        d.log_append(&Event::new(EventKind::Deposito, now))
    });
    s.close();
    for sql in [
        "UPDATE log SET event = 'x'",
        "DELETE FROM log",
        "TRUNCATE log",
    ] {
        let e = pg.psql("guards", sql).unwrap_err().to_string();
        assert!(
            e.contains("append-only") || e.contains("kept 30 months"),
            "{sql}: {e}"
        );
    }
}

// Claims (`store::claims`): the same checks through the `Store` API, so
// `Store::commit`'s fence check is part of what each backend must answer.
mod claim_checks {
    use std::future::Future;

    use crate::flow::batch::{Batch, Event, EventKind, JobEnd, TimerOp};
    use crate::pec::clock::{Clock, ManualClock};
    use crate::store::claims::{Claimant, ClaimedTimer, Want};
    use crate::store::queue::{Job, JobId, JobState, Listing, MAX_CRASHES};
    use crate::store::{Store, StoreError};

    use super::r;

    pub(super) const LEASE: i64 = 30_000;

    /// Each check, by name, on a fresh store.
    /// A check on a fresh store.
    pub(super) type Check = fn(&Store);

    pub(super) const ALL: &[(&str, Check)] = &[
        (
            "a_batchs_new_due_jobs_are_written_claimed_by_its_taker",
            a_batchs_new_due_jobs_are_written_claimed_by_its_taker,
        ),
        (
            "each_due_job_is_handed_out_once",
            each_due_job_is_handed_out_once,
        ),
        (
            "a_lapsed_claim_goes_to_another_node_and_the_stale_holder_commits_nothing",
            a_lapsed_claim_goes_to_another_node_and_the_stale_holder_commits_nothing,
        ),
        (
            "renewal_extends_and_release_frees",
            renewal_extends_and_release_frees,
        ),
        (
            "a_job_that_keeps_killing_its_nodes_is_held",
            a_job_that_keeps_killing_its_nodes_is_held,
        ),
        (
            "a_restarted_node_takes_its_own_claims_back_at_once_and_counts_them",
            a_restarted_node_takes_its_own_claims_back_at_once_and_counts_them,
        ),
        (
            "deadlines_are_claimed_once_and_fired_only_under_their_claim",
            deadlines_are_claimed_once_and_fired_only_under_their_claim,
        ),
    ];

    /// Run one store call to its end (outside any runtime: the PostgreSQL
    /// driver blocks, so the checks' own reads stay out of it).
    pub(super) fn b<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    pub(super) use crate::store::queue::test_job as job;

    pub(super) fn jobs(n: usize) -> Want {
        Want {
            jobs: n,
            ..Want::default()
        }
    }

    fn setup(store: &Store, keys: &[&str]) -> ManualClock {
        let clock = ManualClock::at(1_765_000_000_000);
        let mut b = Batch::at(clock.unix_ms());
        for k in keys {
            b.job(job(k, clock.unix_ms()));
        }
        self::b(store.commit(b)).unwrap();
        clock
    }

    /// The batch that ends `job` as done, under its claim, with a log row
    /// to show whether anything of it was written.
    pub(super) fn done(job: &Job, now: i64) -> Batch {
        let mut b = Batch::at(now);
        b.end = Some((job.id, JobEnd::Done));
        b.fence = job.claim();
        let mut ev = Event::new(EventKind::Inoltro, now);
        ev.detail = Some(format!("outcome of {} by {:?}", job.id, job.claimed_by));
        b.log(ev);
        b
    }

    fn log_rows(store: &Store) -> usize {
        store
            .log_events_blocking(&crate::store::log::Query::default())
            .unwrap()
            .len()
    }

    fn store_ids(store: &Store) -> Vec<JobId> {
        r(store, |d| d.job_list(Listing::All))
            .into_iter()
            .map(|j| j.id)
            .collect()
    }

    pub(super) fn state(store: &Store, id: JobId) -> Job {
        store.job_blocking(id).unwrap().unwrap()
    }

    fn a_batchs_new_due_jobs_are_written_claimed_by_its_taker(store: &Store) {
        let now = setup(store, &[]).unix_ms();
        let taker = || {
            Some(crate::flow::batch::Taker {
                node: "node-1".into(),
                lease_ms: LEASE,
            })
        };
        let mut batch = Batch::at(now);
        batch.job(job("due", now));
        batch.job(job("later", now + 60_000));
        batch.taker = taker();
        let c = b(store.commit(batch)).unwrap();
        assert_eq!(c.new_jobs, [true, true]);
        assert_eq!(c.taken.len(), 1, "only the job due now is taken");
        let taken = &c.taken[0];
        assert_eq!(taken.key, "due");
        let stored = state(store, taken.id);
        assert_eq!(stored.claimed_by.as_deref(), Some("node-1"));
        assert_eq!(stored.claimed_until, Some(now + LEASE));
        assert_eq!((stored.fence, taken.fence), (1, 1));
        assert_eq!(taken.claim(), stored.claim());
        // The one not due yet is written unclaimed.
        let later = store_ids(store)
            .into_iter()
            .map(|id| state(store, id))
            .find(|j| j.key == "later")
            .unwrap();
        assert_eq!((later.claimed_by, later.fence), (None, 0));
        // Another node gets it only once the lease has lapsed.
        let two = Claimant::new("node-2", LEASE);
        assert!(b(store.claim(&two, now, jobs(10))).unwrap().jobs.is_empty());
        // The taker's commit under the claim it was handed ends the job.
        assert!(b(store.commit(done(taken, now))).unwrap().applied);
        assert_eq!(state(store, taken.id).state, JobState::Done);
        // Committed again (same key): nothing new is taken.
        let mut again = Batch::at(now);
        again.job(job("due", now));
        again.taker = taker();
        let c = b(store.commit(again)).unwrap();
        assert_eq!(c.new_jobs, [false]);
        assert!(c.taken.is_empty());
    }

    fn each_due_job_is_handed_out_once(store: &Store) {
        let clock = setup(store, &["a", "b", "c"]);
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let now = clock.unix_ms();
        let first = b(store.claim(&one, now, jobs(2))).unwrap();
        assert_eq!(first.jobs.len(), 2);
        let second = b(store.claim(&two, now, jobs(10))).unwrap();
        assert_eq!(second.jobs.len(), 1, "only the one nobody holds");
        assert!(b(store.claim(&one, now, jobs(10))).unwrap().jobs.is_empty());
        let mut ids: Vec<JobId> = first
            .jobs
            .iter()
            .chain(&second.jobs)
            .map(|j| j.id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "three jobs, three different ones");
        for j in &first.jobs {
            assert_eq!(j.claimed_by.as_deref(), Some("node-1"));
            assert_eq!(j.claimed_until, Some(now + LEASE));
            assert_eq!(j.fence, 1);
        }
        // A job that ends is not handed out again, even after the lease.
        let j = &first.jobs[0];
        assert!(b(store.commit(done(j, now))).unwrap().applied);
        assert_eq!(state(store, j.id).state, JobState::Done);
        assert_eq!(
            state(store, j.id).claimed_by,
            None,
            "the commit ended the claim"
        );
        clock.advance(LEASE);
        let later = b(store.claim(&two, clock.unix_ms(), jobs(10))).unwrap();
        assert!(later.jobs.iter().all(|x| x.id != j.id));
    }

    fn a_lapsed_claim_goes_to_another_node_and_the_stale_holder_commits_nothing(store: &Store) {
        let clock = setup(store, &["a"]);
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let stale = b(store.claim(&one, clock.unix_ms(), jobs(1)))
            .unwrap()
            .jobs
            .remove(0);
        clock.advance(LEASE - 1);
        assert!(
            b(store.claim(&two, clock.unix_ms(), jobs(1)))
                .unwrap()
                .jobs
                .is_empty(),
            "nothing while node-1's lease holds"
        );
        clock.advance(1);
        let got = b(store.claim(&two, clock.unix_ms(), jobs(1))).unwrap();
        assert_eq!(got.jobs.len(), 1);
        let fresh = &got.jobs[0];
        assert_eq!(fresh.id, stale.id);
        assert!(
            fresh.fence > stale.fence,
            "{} > {}",
            fresh.fence,
            stale.fence
        );
        assert_eq!(got.taken_over, vec![(stale.id, "node-1".to_string())]);
        // node-1 wakes up and commits: refused whole.
        let before = log_rows(store);
        let e = b(store.commit(done(&stale, clock.unix_ms()))).unwrap_err();
        assert!(matches!(e, StoreError::LostClaim), "{e}");
        assert_eq!(log_rows(store), before, "no row of the refused batch");
        let j = state(store, stale.id);
        assert_eq!(j.state, JobState::Pending);
        assert_eq!(j.claimed_by.as_deref(), Some("node-2"));
        // node-2's own outcome goes through.
        assert!(
            b(store.commit(done(fresh, clock.unix_ms())))
                .unwrap()
                .applied
        );
        assert_eq!(log_rows(store), before + 1);
        assert_eq!(state(store, stale.id).state, JobState::Done);
    }

    fn renewal_extends_and_release_frees(store: &Store) {
        let clock = setup(store, &["a", "b"]);
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let got = b(store.claim(&one, clock.unix_ms(), jobs(2))).unwrap().jobs;
        let (a, bj) = (&got[0], &got[1]);
        clock.advance(LEASE / 2);
        let lost = b(store.renew(&one, clock.unix_ms(), vec![a.claim().unwrap()])).unwrap();
        assert!(lost.is_empty());
        assert_eq!(
            state(store, a.id).claimed_until,
            Some(clock.unix_ms() + LEASE)
        );
        clock.advance(LEASE / 2);
        let taken = b(store.claim(&two, clock.unix_ms(), jobs(2))).unwrap().jobs;
        assert_eq!(
            taken.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![bj.id],
            "the renewed one stays with node-1, the other lapsed"
        );
        // Renewing a claim that was taken over says so.
        let lost = b(store.renew(&one, clock.unix_ms(), vec![bj.claim().unwrap()])).unwrap();
        assert_eq!(lost, vec![bj.claim().unwrap()]);
        // Released: node-2 gets it at once, long before the lease ends.
        assert!(b(store.release(a.claim().unwrap())).unwrap());
        assert!(!b(store.release(a.claim().unwrap())).unwrap(), "once");
        let now = b(store.claim(&two, clock.unix_ms(), jobs(2))).unwrap().jobs;
        assert_eq!(now.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a.id]);
        assert_eq!(now[0].fence, a.fence + 1);
        // A clean stop releases all of a node's claims.
        assert_eq!(b(store.release_node("node-2")).unwrap(), 2);
        assert_eq!(
            b(store.claim(&one, clock.unix_ms(), jobs(5)))
                .unwrap()
                .jobs
                .len(),
            2
        );
    }

    fn a_job_that_keeps_killing_its_nodes_is_held(store: &Store) {
        let clock = setup(store, &["poison"]);
        let nodes: Vec<Claimant> = (1..=MAX_CRASHES + 1)
            .map(|i| Claimant::new(&format!("node-{i}"), LEASE))
            .collect();
        for (i, n) in nodes.iter().enumerate() {
            let got = b(store.claim(n, clock.unix_ms(), jobs(1))).unwrap();
            if (i as i64) < MAX_CRASHES {
                assert_eq!(got.jobs.len(), 1, "node {i} runs it");
                assert!(got.held.is_empty());
            } else {
                assert!(got.jobs.is_empty(), "the {MAX_CRASHES}th death holds it");
                assert_eq!(got.held.len(), 1);
                assert_eq!(got.held[0].state, JobState::Held);
                assert_eq!(got.held[0].claimed_by, None);
            }
            // The node dies with the job: nobody renews.
            clock.advance(LEASE);
        }
        let held = state(store, store_ids(store)[0]);
        assert_eq!(held.state, JobState::Held);
        assert!(held.last_error.as_deref().unwrap().contains("died 3 times"));
    }

    fn a_restarted_node_takes_its_own_claims_back_at_once_and_counts_them(store: &Store) {
        let clock = setup(store, &["a", "b"]);
        let one = Claimant::new("node-1", LEASE);
        for death in 1..=MAX_CRASHES {
            let got = b(store.claim(&one, clock.unix_ms(), jobs(2))).unwrap();
            assert_eq!(got.jobs.len(), 2, "no wait for the lease (death {death})");
            assert!(got.taken_over.is_empty(), "its own claims are no takeover");
            // kill -9, restart within the lease: its own claims are known dead.
            let r = b(store.recover("node-1", clock.unix_ms())).unwrap();
            if death < MAX_CRASHES {
                assert_eq!((r.again.len(), r.held.len()), (2, 0));
            } else {
                assert_eq!((r.again.len(), r.held.len()), (0, 2));
            }
        }
        assert!(b(store.claim(&one, clock.unix_ms(), jobs(2)))
            .unwrap()
            .jobs
            .is_empty());
        for id in store_ids(store) {
            assert_eq!(state(store, id).state, JobState::Held);
        }
        // A clean stop counts nothing.
        let r = b(store.recover("node-1", clock.unix_ms())).unwrap();
        assert!(r.again.is_empty() && r.held.is_empty());
    }

    fn deadlines_are_claimed_once_and_fired_only_under_their_claim(store: &Store) {
        let clock = ManualClock::at(1_765_000_000_000);
        let t0 = clock.unix_ms();
        let mut batch = Batch::at(t0);
        batch.timers.push(TimerOp::Start {
            identificativo: "id@x".into(),
            recipient: "b@y".into(),
            sent_at: t0,
            preavviso_due: t0 + 100,
            expire_due: t0 + 100 * LEASE,
        });
        b(store.commit(batch)).unwrap();
        let one = Claimant::new("node-1", LEASE);
        let two = Claimant::new("node-2", LEASE);
        let timers = |n| Want {
            timers: n,
            ..Want::default()
        };
        assert!(b(store.claim(&one, t0, timers(10)))
            .unwrap()
            .timers
            .is_empty());
        clock.advance(100);
        let got = b(store.claim(&one, clock.unix_ms(), timers(10))).unwrap();
        assert_eq!(got.timers.len(), 1);
        assert!(b(store.claim(&two, clock.unix_ms(), timers(10)))
            .unwrap()
            .timers
            .is_empty());
        let stale = got.timers[0].clone();
        clock.advance(LEASE);
        let fresh = b(store.claim(&two, clock.unix_ms(), timers(10)))
            .unwrap()
            .timers;
        assert_eq!(fresh.len(), 1);
        assert!(fresh[0].fence.token > stale.fence.token);
        // The 12 h warning fired by node-1 after it lost the claim: refused.
        let fire = |c: &ClaimedTimer| {
            let mut b = Batch::at(clock.unix_ms());
            b.guard = Some(crate::flow::batch::Guard::TimerArmed(c.timer.clone()));
            b.fence = Some(c.fence.clone());
            b.log(Event::new(
                EventKind::PreavvisoErroreConsegna,
                clock.unix_ms(),
            ));
            b
        };
        let before = log_rows(store);
        assert!(matches!(
            b(store.commit(fire(&stale))).unwrap_err(),
            StoreError::LostClaim
        ));
        assert_eq!(log_rows(store), before);
        assert!(b(store.commit(fire(&fresh[0]))).unwrap().applied);
        assert_eq!(log_rows(store), before + 1);
    }
}

#[test]
fn sqlite_hands_out_claims_as_expected() {
    for (name, check) in claim_checks::ALL {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        eprintln!("claims on SQLite: {name}");
        check(&s);
        s.close();
    }
}

#[test]
fn postgresql_hands_out_claims_as_sqlite_does() {
    let pg = pg_cluster();
    for (i, (name, check)) in claim_checks::ALL.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let url = pg.create_database(&format!("claims{i}")).unwrap();
        let s = Store::open_with(dir.path(), &pg_settings(url)).unwrap();
        eprintln!("claims on PostgreSQL: {name}");
        check(&s);
        s.close();
    }
}

/// Two nodes (two stores, each with its own pool) on one database, each
/// claiming from several threads at once, with half the claims left to
/// lapse and taken over: no job is ever handed out twice under one fence,
/// and every outcome is committed once.
#[test]
fn postgresql_never_hands_one_job_to_two_claimants_at_once() {
    use claim_checks::{b, done, job, jobs, state, LEASE};
    use std::sync::{Arc, Mutex};

    const JOBS: usize = 240;
    const THREADS: usize = 8;
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let bs = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let t0: i64 = 1_765_000_000_000;
    let mut batch = crate::flow::batch::Batch::at(t0);
    for k in 0..JOBS {
        batch.job(job(&format!("k{k}"), t0));
    }
    b(a.commit(batch)).unwrap();
    // Round 1 at t0: claims left to lapse (the nodes "die"); round 2 after
    // the lease: taken over, and committed.
    let handed = Arc::new(Mutex::new(Vec::new()));
    for (round, now) in [(1, t0), (2, t0 + LEASE)] {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let s = if t % 2 == 0 { a.clone() } else { bs.clone() };
                let handed = handed.clone();
                std::thread::spawn(move || {
                    let me = crate::store::claims::Claimant::new(&format!("r{round}-t{t}"), LEASE);
                    let mut mine = 0;
                    loop {
                        let got = b(s.claim(&me, now, jobs(5))).unwrap();
                        if got.jobs.is_empty() {
                            break mine;
                        }
                        for j in got.jobs {
                            handed.lock().unwrap().push((j.id, j.fence));
                            if round == 2 {
                                assert!(b(s.commit(done(&j, now))).unwrap().applied);
                            }
                            mine += 1;
                        }
                    }
                })
            })
            .collect();
        let per_thread: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(per_thread.iter().sum::<usize>(), JOBS, "round {round}");
        assert!(
            per_thread.iter().filter(|n| **n > 0).count() > 1,
            "the claimants ran side by side: {per_thread:?}"
        );
    }
    let mut h = handed.lock().unwrap().clone();
    h.sort();
    let n = h.len();
    h.dedup();
    assert_eq!(n, h.len(), "a job handed out twice under one fence");
    assert_eq!(n, 2 * JOBS);
    for (id, fence) in &h {
        assert!(*fence == 1 || *fence == 2, "{id} fence {fence}");
    }
    for j in r(&a, |d| d.job_list(Listing::All)) {
        let j = state(&a, j.id);
        assert_eq!(j.state, JobState::Done, "{}", j.id);
        assert_eq!((j.fence, j.claimed_by), (2, None));
    }
    a.close();
    bs.close();
}

// The login throttle over the store's shared counts (`store::logins`):
// one scenario run on the in-memory throttle and on each backend must give
// the same waits, the ones the throttle's own tests expect.
mod login_checks {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use crate::store::Store;
    use crate::throttle::{network_of, LoginThrottle, ThrottleConfig};

    use super::claim_checks::b;

    pub(super) fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            forget_after: Duration::from_secs(60),
            max_entries: 100,
        }
    }

    /// Where the counts are: reserve and record at a time in ms.
    pub(super) trait Counts {
        fn reserve(&self, addr: &str, ip: &str, now: i64) -> Option<u128>;
        fn record(&self, addr: &str, ip: &str, ok: bool, now: i64);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The in-memory throttle, its time zero at `t0`.
    pub(super) struct Memory(pub LoginThrottle, pub Instant);

    impl Counts for Memory {
        fn reserve(&self, addr: &str, i: &str, now: i64) -> Option<u128> {
            let at = self.1 + Duration::from_millis(now as u64);
            self.0.reserve_at(addr, ip(i), at).map(|d| d.as_millis())
        }
        fn record(&self, addr: &str, i: &str, ok: bool, now: i64) {
            let at = self.1 + Duration::from_millis(now as u64);
            self.0.record_at(addr, ip(i), ok, at);
        }
    }

    /// A time in the Unix epoch's range, as the store's counts are kept.
    const UNIX: i64 = 1_765_000_000_000;

    impl Counts for Store {
        fn reserve(&self, addr: &str, i: &str, now: i64) -> Option<u128> {
            let a = crate::store::users::normalize(addr);
            b(self.login_reserve(&a, network_of(ip(i)), &cfg(), UNIX + now))
                .unwrap()
                .map(|d| d.as_millis())
        }
        fn record(&self, addr: &str, i: &str, ok: bool, now: i64) {
            let a = crate::store::users::normalize(addr);
            b(self.login_record(&a, network_of(ip(i)), ok, &cfg(), UNIX + now)).unwrap();
        }
    }

    /// The throttle's unit tests in one run: doubling to the cap, queued
    /// parallel attempts refused past `max_delay`, a success clearing only
    /// its own account, failures charged to the network, old ones
    /// forgotten. Gives every wait.
    pub(super) fn scenario(c: &dyn Counts) -> Vec<Option<u128>> {
        let mut out = vec![];
        let mut now = 0;
        // Sequential failures double the wait up to the cap.
        out.push(c.reserve("a@x", "127.0.0.1", now));
        for _ in 0..6 {
            c.record("a@x", "127.0.0.1", false, now);
            let w = c.reserve("A@X ", "127.0.0.1", now);
            out.push(w);
            now += w.unwrap_or(0) as i64;
        }
        out.push(c.reserve(" <a@X>", "10.9.9.9", now).map(|w| w.min(1)));
        // Parallel attempts queue behind one another, then are refused.
        now = 100_000;
        c.record("p@x", "10.0.0.1", false, now);
        for _ in 0..11 {
            out.push(c.reserve("p@x", "10.0.0.1", now));
        }
        out.push(c.reserve("p@x", "10.0.0.1", now + 2_000));
        // A success clears only its own account.
        now = 200_000;
        for u in ["u1@x", "u2@x", "u3@x"] {
            c.record(u, "192.0.2.7", false, now);
        }
        out.push(c.reserve("mine@x", "192.0.2.7", now));
        c.record("mine@x", "192.0.2.7", true, now);
        out.push(c.reserve("fresh@x", "192.0.2.7", now));
        c.record("fresh@x", "192.0.2.7", true, now);
        out.push(c.reserve("u1@x", "192.0.2.7", now + 400));
        c.record("u1@x", "192.0.2.7", true, now + 400);
        // A clean account from a clean network goes at once, again and again.
        for _ in 0..3 {
            out.push(c.reserve("ok@x", "198.51.100.1", now));
            c.record("ok@x", "198.51.100.1", true, now);
        }
        // Failures are charged to the network (IPv4 /24, IPv6 /64).
        now = 300_000;
        c.record("a@y", "203.0.113.1", false, now);
        c.record("b@y", "203.0.113.200", false, now);
        out.push(c.reserve("c@y", "203.0.113.99", now));
        out.push(c.reserve("d@y", "203.0.114.1", now));
        c.record("a@y", "2001:db8:1:2::1", false, now);
        out.push(c.reserve("z@y", "2001:db8:1:2:ffff::9", now));
        out.push(c.reserve("y@y", "2001:db8:1:3::1", now));
        // Old failures are forgotten.
        now = 400_000;
        for _ in 0..5 {
            c.record("old@x", "127.0.0.9", false, now);
        }
        now += 61_000;
        out.push(c.reserve("old@x", "127.0.0.9", now));
        c.record("old@x", "127.0.0.9", false, now);
        out.push(c.reserve("old@x", "127.0.0.9", now));
        out
    }

    /// What [`scenario`] gives with the throttle's arithmetic.
    pub(super) fn expected() -> Vec<Option<u128>> {
        let mut e = vec![Some(0)];
        e.extend([100, 200, 400, 800, 1000, 1000].map(Some));
        e.push(Some(1));
        e.extend([100, 200, 300, 400, 500, 600, 700, 800, 900, 1000].map(Some));
        e.push(None);
        e.push(Some(0));
        e.extend([400, 800, 800, 0, 0, 0, 200, 0, 100, 0, 0, 100].map(Some));
        e
    }
}

#[test]
fn the_shared_login_counts_throttle_as_memory_does_on_both_backends() {
    use login_checks::{cfg, expected, scenario, Memory};
    let memory = Memory(
        crate::throttle::LoginThrottle::new(cfg()),
        std::time::Instant::now(),
    );
    assert_eq!(scenario(&memory), expected(), "in memory");
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(scenario(&s), expected(), "in SQLite");
    s.close();
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    assert!(s.is_shared());
    assert_eq!(scenario(&s), expected(), "in PostgreSQL");
    s.close();
}

/// Two nodes (two stores, each with its own pool) reserving attempts on
/// one clean account at the same instant, from several threads: each gets
/// a slot of its own, one delay after the other, as one node's attempts
/// do; none reads a count another is changing.
#[test]
fn postgresql_queues_two_nodes_attempts_on_one_account_one_behind_another() {
    use login_checks::cfg;
    const THREADS: u128 = 8;
    let pg = pg_cluster();
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let bs = Store::open_with(dir.path(), &pg_settings(pg.url())).unwrap();
    let now = 1_765_000_000_000;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { bs.clone() };
            std::thread::spawn(move || {
                // A different host of one /24 each: one network count.
                let ip: std::net::IpAddr = format!("10.1.1.{t}").parse().unwrap();
                let ip = crate::throttle::network_of(ip);
                claim_checks::b(s.login_reserve("victim@x", ip, &cfg(), now))
                    .unwrap()
                    .unwrap()
                    .as_millis()
            })
        })
        .collect();
    let mut waits: Vec<u128> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    waits.sort_unstable();
    assert_eq!(waits, (0..THREADS).map(|i| i * 100).collect::<Vec<_>>());
    a.close();
    bs.close();
}
