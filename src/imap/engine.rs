//! Authenticated-state commands over one user's store. Synchronous on
//! purpose: every command is file-system work, so the session runs the
//! engine on a blocking thread and gets back the encoded response bytes.
//!
//! The selected mailbox is a per-session view (`msgs`: sequence number =
//! index + 1) reconciled with the Maildir after each command. RFC 3501 §7.4.1
//! forbids EXPUNGE responses during FETCH, STORE and SEARCH (non-UID), so
//! those leave vanished messages in the view until a later command.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, UNIX_EPOCH};

use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{Charset, IString, Literal, NString, QuotedChar, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::flag::{
    Flag, FlagFetch, FlagNameAttribute, FlagPerm, StoreResponse, StoreType,
};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Code, Data, Response, Status};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_codec::ResponseCodec;

use super::mime;
use crate::store::mailbox::{Flags, Folder, MsgEntry, StoreError, UserStore, DELIM};

/// Append one response to `out`.
pub fn push(out: &mut Vec<u8>, r: Response<'_>) {
    out.extend(ResponseCodec::default().encode(&r).dump());
}

/// Append a status response (tagged when `tag` is given).
pub fn status(
    out: &mut Vec<u8>,
    tag: Option<&Tag<'_>>,
    kind: Kind,
    code: Option<Code<'_>>,
    text: &str,
) {
    let tag = tag.cloned();
    let text = if text.is_empty() { "done" } else { text };
    let s = match kind {
        Kind::Ok => Status::ok(tag, code, text),
        Kind::No => Status::no(tag, code, text),
        Kind::Bad => Status::bad(tag, code, text),
    };
    match s {
        Ok(s) => push(out, Response::Status(s)),
        Err(_) => out.extend_from_slice(b"* BAD internal error\r\n"),
    }
}

/// Kind of a status response.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// OK.
    Ok,
    /// NO.
    No,
    /// BAD.
    Bad,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// The selected mailbox of a session.
#[derive(Debug)]
pub struct Selected {
    /// IMAP name.
    pub name: String,
    /// The folder.
    pub folder: Folder,
    /// EXAMINE (or SELECT of something read-only).
    pub read_only: bool,
    /// The session's view, in UID order.
    pub msgs: Vec<MsgEntry>,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT as last announced.
    pub uidnext: u32,
    /// UIDs the Maildir no longer has but the client has not been told about.
    pub vanished: HashSet<u32>,
}

/// One authenticated user's command executor.
#[derive(Debug)]
pub struct Engine {
    /// The user's store.
    pub store: UserStore,
    /// The selected mailbox, if any.
    pub selected: Option<Selected>,
    /// The user's quota in bytes, as looked up at login (`None`: no limit).
    pub quota: Option<u64>,
}

fn mbox_name(m: &Mailbox<'_>) -> Result<String, StoreError> {
    match m {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => String::from_utf8(o.as_ref().to_vec())
            .map_err(|_| StoreError::BadName("non-ASCII name (use modified UTF-7)".into())),
    }
}

fn list_pattern(m: &ListMailbox<'_>) -> String {
    match m {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).to_string(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).to_string(),
    }
}

/// IMAP LIST wildcard match: `*` anything, `%` anything but the delimiter.
pub fn wildcard(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'%', rest)) => {
            let stop = name
                .iter()
                .position(|&c| c == DELIM as u8)
                .unwrap_or(name.len());
            (0..=stop).any(|i| wildcard(rest, &name[i..]))
        }
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

fn match_name(pat: &str, name: &str) -> bool {
    // INBOX is case-insensitive, so match it (and its prefix in the pattern) as such.
    if name == "INBOX" {
        return wildcard(pat.to_ascii_uppercase().as_bytes(), b"INBOX");
    }
    wildcard(pat.as_bytes(), name.as_bytes())
}

fn err_status(out: &mut Vec<u8>, tag: &Tag<'_>, e: &StoreError) {
    match e {
        StoreError::BadName(_) => status(
            out,
            Some(tag),
            Kind::No,
            Some(Code::Other(code_other("CANNOT"))),
            &e.to_string(),
        ),
        StoreError::NoSuchFolder => status(
            out,
            Some(tag),
            Kind::No,
            Some(Code::Other(code_other("NONEXISTENT"))),
            "no such mailbox",
        ),
        StoreError::Exists => status(
            out,
            Some(tag),
            Kind::No,
            Some(Code::Other(code_other("ALREADYEXISTS"))),
            "mailbox already exists",
        ),
        StoreError::Refused(w) => status(
            out,
            Some(tag),
            Kind::No,
            Some(Code::Other(code_other("CANNOT"))),
            w,
        ),
        StoreError::Io(err) => {
            tracing::warn!(error = %err, "imap store i/o error");
            status(
                out,
                Some(tag),
                Kind::No,
                Some(Code::Other(code_other("SERVERBUG"))),
                "internal error",
            )
        }
    }
}

fn code_other(s: &'static str) -> imap_codec::imap_types::response::CodeOther<'static> {
    // Response codes of RFC 5530; decoding the code through the codec keeps it well-formed.
    imap_codec::imap_types::response::CodeOther::unvalidated(s.as_bytes())
}

fn flags_of(list: &[Flag<'_>]) -> Flags {
    let mut f = Flags::default();
    for x in list {
        match x {
            Flag::Seen => f.seen = true,
            Flag::Answered => f.answered = true,
            Flag::Flagged => f.flagged = true,
            Flag::Deleted => f.deleted = true,
            Flag::Draft => f.draft = true,
            // Keywords are not stored (PERMANENTFLAGS says so).
            _ => {}
        }
    }
    f
}

fn fetch_flags(m: &MsgEntry) -> Vec<FlagFetch<'static>> {
    let mut v = vec![];
    let f = &m.flags;
    for (on, flag) in [
        (f.seen, Flag::Seen),
        (f.answered, Flag::Answered),
        (f.flagged, Flag::Flagged),
        (f.deleted, Flag::Deleted),
        (f.draft, Flag::Draft),
    ] {
        if on {
            v.push(FlagFetch::Flag(flag));
        }
    }
    if m.recent {
        v.push(FlagFetch::Recent);
    }
    v
}

fn system_flags() -> Vec<Flag<'static>> {
    vec![
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Seen,
        Flag::Draft,
    ]
}

fn literal(data: Vec<u8>) -> NString<'static> {
    match Literal::try_from(data) {
        Ok(l) => NString(Some(IString::Literal(l))),
        // Only NUL bytes fail validation; IMAP4rev1 cannot carry them in a literal.
        Err(_) => NString(None),
    }
}

fn to_datetime(secs: i64) -> Option<DateTime> {
    let utc = chrono::DateTime::from_timestamp(secs, 0)?;
    let fixed = utc.with_timezone(&chrono::FixedOffset::east_opt(0)?);
    DateTime::try_from(fixed).ok()
}

/// Resolve a sequence set to view indices (sorted, unique).
pub fn resolve(set: &SequenceSet, msgs: &[MsgEntry], uid: bool) -> Vec<usize> {
    if msgs.is_empty() {
        return vec![];
    }
    let max = if uid {
        msgs.last().map(|m| m.uid).unwrap_or(0)
    } else {
        msgs.len() as u32
    };
    let val = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => max,
    };
    let mut ranges = vec![];
    for s in set.0.as_ref() {
        match s {
            Sequence::Single(a) => ranges.push((val(a), val(a))),
            Sequence::Range(a, b) => {
                let (a, b) = (val(a), val(b));
                ranges.push((a.min(b), a.max(b)));
            }
        }
    }
    let hit = |n: u32| ranges.iter().any(|(a, b)| *a <= n && n <= *b);
    (0..msgs.len())
        .filter(|&i| hit(if uid { msgs[i].uid } else { i as u32 + 1 }))
        .collect()
}

fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let v: Vec<UidElement> = uids.iter().map(|&u| UidElement::Single(nz(u))).collect();
    Vec1::try_from(v).ok().map(UidSet)
}

struct Ctx<'a> {
    folder: &'a Folder,
    m: &'a MsgEntry,
    seq: u32,
    raw: OnceCell<Vec<u8>>,
    text: OnceCell<mime::SearchText>,
}

impl Ctx<'_> {
    fn raw(&self) -> &[u8] {
        self.raw
            .get_or_init(|| self.folder.read(self.m).unwrap_or_default())
    }
    fn text(&self) -> &mime::SearchText {
        self.text.get_or_init(|| mime::search_text(self.raw()))
    }
    fn field(&self, name: &str, needle: &str) -> bool {
        self.text()
            .fields
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && mime::contains_ci(v, needle))
    }
    fn internal_day(&self) -> Option<chrono::NaiveDate> {
        let s = self.folder.internal_date(self.m).ok()?;
        Some(chrono::DateTime::from_timestamp(s, 0)?.date_naive())
    }
    fn sent_day(&self) -> Option<chrono::NaiveDate> {
        Some(chrono::DateTime::from_timestamp(self.text().date?, 0)?.date_naive())
    }
}

fn astr(a: &imap_codec::imap_types::core::AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).to_string()
}

fn matches(k: &SearchKey<'_>, c: &Ctx<'_>, all: &[MsgEntry]) -> bool {
    let f = &c.m.flags;
    match k {
        SearchKey::And(v) => v.as_ref().iter().all(|k| matches(k, c, all)),
        SearchKey::SequenceSet(s) => resolve(s, all, false).contains(&(c.seq as usize - 1)),
        SearchKey::Uid(s) => resolve(s, all, true).contains(&(c.seq as usize - 1)),
        SearchKey::All => true,
        SearchKey::Answered => f.answered,
        SearchKey::Unanswered => !f.answered,
        SearchKey::Deleted => f.deleted,
        SearchKey::Undeleted => !f.deleted,
        SearchKey::Draft => f.draft,
        SearchKey::Undraft => !f.draft,
        SearchKey::Flagged => f.flagged,
        SearchKey::Unflagged => !f.flagged,
        SearchKey::Seen => f.seen,
        SearchKey::Unseen => !f.seen,
        SearchKey::Recent => c.m.recent,
        SearchKey::New => c.m.recent && !f.seen,
        SearchKey::Old => !c.m.recent,
        SearchKey::Keyword(_) => false,
        SearchKey::Unkeyword(_) => true,
        SearchKey::Not(k) => !matches(k, c, all),
        SearchKey::Or(a, b) => matches(a, c, all) || matches(b, c, all),
        SearchKey::From(s) => c.field("from", &astr(s)),
        SearchKey::To(s) => c.field("to", &astr(s)),
        SearchKey::Cc(s) => c.field("cc", &astr(s)),
        SearchKey::Bcc(s) => c.field("bcc", &astr(s)),
        SearchKey::Subject(s) => c.field("subject", &astr(s)),
        SearchKey::Header(name, v) => c.field(&astr(name), &astr(v)),
        SearchKey::Body(s) => mime::contains_ci(&c.text().body, &astr(s)),
        SearchKey::Text(s) => {
            let s = astr(s);
            mime::contains_ci(&c.text().body, &s)
                || c.text()
                    .fields
                    .iter()
                    .any(|(_, v)| mime::contains_ci(v, &s))
        }
        SearchKey::Larger(n) => c.folder.size(c.m).map(|s| s > *n as u64).unwrap_or(false),
        SearchKey::Smaller(n) => c.folder.size(c.m).map(|s| s < *n as u64).unwrap_or(false),
        SearchKey::Since(d) => c.internal_day().is_some_and(|x| x >= *d.as_ref()),
        SearchKey::Before(d) => c.internal_day().is_some_and(|x| x < *d.as_ref()),
        SearchKey::On(d) => c.internal_day().is_some_and(|x| x == *d.as_ref()),
        SearchKey::SentSince(d) => c.sent_day().is_some_and(|x| x >= *d.as_ref()),
        SearchKey::SentBefore(d) => c.sent_day().is_some_and(|x| x < *d.as_ref()),
        SearchKey::SentOn(d) => c.sent_day().is_some_and(|x| x == *d.as_ref()),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

impl Engine {
    /// Engine for one user.
    pub fn new(store: UserStore) -> Self {
        Self {
            store,
            selected: None,
            quota: None,
        }
    }

    /// RFC 9208: the one quota root `""` covers every folder of the user;
    /// STORAGE in units of 1024 octets, rounded up.
    fn quota_data(&self, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        use imap_codec::imap_types::core::AString;
        use imap_codec::imap_types::extensions::quota::{QuotaGet, Resource};
        let Some(limit) = self.quota else {
            return Ok(false);
        };
        let used = self.store.usage()?.bytes;
        let root = AString::try_from("").map_err(|_| StoreError::Refused("quota root"))?;
        let q = QuotaGet::new(Resource::Storage, used.div_ceil(1024), limit.div_ceil(1024));
        push(
            out,
            Response::Data(Data::Quota {
                root,
                quotas: Vec1::from(q),
            }),
        );
        Ok(true)
    }

    /// Reconcile the selected view with the Maildir and describe the changes.
    pub fn updates(&mut self, out: &mut Vec<u8>, allow_expunge: bool) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let snap = match sel.folder.sync(!sel.read_only) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "imap sync failed");
                return;
            }
        };
        let on_disk: std::collections::HashMap<u32, &MsgEntry> =
            snap.msgs.iter().map(|m| (m.uid, m)).collect();
        for m in &sel.msgs {
            if !on_disk.contains_key(&m.uid) {
                sel.vanished.insert(m.uid);
            }
        }
        if allow_expunge && !sel.vanished.is_empty() {
            for i in (0..sel.msgs.len()).rev() {
                if sel.vanished.contains(&sel.msgs[i].uid) {
                    sel.msgs.remove(i);
                    push(out, Response::Data(Data::Expunge(nz(i as u32 + 1))));
                }
            }
            sel.vanished.clear();
        }
        for (i, m) in sel.msgs.iter_mut().enumerate() {
            if let Some(d) = on_disk.get(&m.uid) {
                m.file = d.file.clone();
                if d.flags != m.flags {
                    m.flags = d.flags.clone();
                    let items = vec![
                        MessageDataItem::Flags(fetch_flags(m)),
                        MessageDataItem::Uid(nz(m.uid)),
                    ];
                    if let Ok(d) = Data::fetch(i as u32 + 1, items) {
                        push(out, Response::Data(d));
                    }
                }
            }
        }
        let max_uid = sel.msgs.last().map(|m| m.uid).unwrap_or(0);
        let fresh: Vec<MsgEntry> = snap
            .msgs
            .iter()
            .filter(|m| m.uid > max_uid)
            .cloned()
            .collect();
        if !fresh.is_empty() {
            sel.msgs.extend(fresh);
            push(out, Response::Data(Data::Exists(sel.msgs.len() as u32)));
            let recent = sel.msgs.iter().filter(|m| m.recent).count() as u32;
            push(out, Response::Data(Data::Recent(recent)));
        }
        sel.uidnext = snap.uidnext;
    }

    /// Execute one command; returns the encoded responses (tagged one last).
    pub fn execute(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> Vec<u8> {
        let mut streamed = vec![];
        let rest = self.execute_to(tag, body, &mut |chunk| {
            streamed.extend_from_slice(&chunk);
            true
        });
        streamed.extend_from_slice(&rest);
        streamed
    }

    /// Execute one command, handing the bulk of big responses (FETCH) to
    /// `sink` as it is produced; returns the rest, tagged response last.
    /// `sink` answering false (the client is gone) stops the command.
    pub fn execute_to(
        &mut self,
        tag: &Tag<'static>,
        body: CommandBody<'static>,
        sink: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Vec<u8> {
        let mut out = vec![];
        // Expunges may be announced except after the sequence-number commands.
        let mut allow_expunge = true;
        let r = match body {
            CommandBody::Select { mailbox, .. } => self.select(&mut out, tag, &mailbox, false),
            CommandBody::Examine { mailbox, .. } => self.select(&mut out, tag, &mailbox, true),
            CommandBody::Create { mailbox } => mbox_name(&mailbox).and_then(|n| {
                self.store.create(&n)?;
                status(&mut out, Some(tag), Kind::Ok, None, "CREATE completed");
                Ok(())
            }),
            CommandBody::Delete { mailbox } => mbox_name(&mailbox).and_then(|n| {
                if self.selected.as_ref().is_some_and(|s| s.name == n) {
                    self.selected = None;
                }
                self.store.delete(&n)?;
                status(&mut out, Some(tag), Kind::Ok, None, "DELETE completed");
                Ok(())
            }),
            CommandBody::Rename { from, to } => mbox_name(&from).and_then(|f| {
                let t = mbox_name(&to)?;
                self.store.rename(&f, &t)?;
                status(&mut out, Some(tag), Kind::Ok, None, "RENAME completed");
                Ok(())
            }),
            CommandBody::Subscribe { mailbox } => mbox_name(&mailbox).and_then(|n| {
                self.store.set_subscribed(&n, true)?;
                status(&mut out, Some(tag), Kind::Ok, None, "SUBSCRIBE completed");
                Ok(())
            }),
            CommandBody::Unsubscribe { mailbox } => mbox_name(&mailbox).and_then(|n| {
                self.store.set_subscribed(&n, false)?;
                status(&mut out, Some(tag), Kind::Ok, None, "UNSUBSCRIBE completed");
                Ok(())
            }),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&mut out, tag, &reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&mut out, tag, &reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status_cmd(&mut out, tag, &mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.data().to_vec()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.to_vec()
                    }
                };
                self.append(&mut out, tag, &mailbox, &flags, date.as_ref(), &data)
            }
            CommandBody::Namespace => {
                let personal = vec![Namespace {
                    prefix: IString::try_from("")
                        .unwrap_or_else(|_| IString::try_from("x").expect("atom")),
                    delimiter: QuotedChar::try_from(DELIM).ok(),
                    extensions: vec![],
                }];
                push(
                    &mut out,
                    Response::Data(Data::Namespace {
                        personal,
                        other: vec![],
                        shared: vec![],
                    }),
                );
                status(&mut out, Some(tag), Kind::Ok, None, "NAMESPACE completed");
                Ok(())
            }
            CommandBody::GetQuotaRoot { mailbox } => (|| {
                use imap_codec::imap_types::core::AString;
                // Only existing folders have a quota root.
                self.store.existing(&mbox_name(&mailbox)?)?;
                let roots = match self.quota {
                    Some(_) => {
                        vec![AString::try_from("").map_err(|_| StoreError::Refused("quota root"))?]
                    }
                    None => vec![],
                };
                push(&mut out, Response::Data(Data::QuotaRoot { mailbox, roots }));
                self.quota_data(&mut out)?;
                status(
                    &mut out,
                    Some(tag),
                    Kind::Ok,
                    None,
                    "GETQUOTAROOT completed",
                );
                Ok(())
            })(),
            CommandBody::GetQuota { root } => {
                let known = root.as_ref().is_empty();
                match known.then(|| self.quota_data(&mut out)) {
                    Some(Ok(true)) => {
                        status(&mut out, Some(tag), Kind::Ok, None, "GETQUOTA completed");
                        Ok(())
                    }
                    Some(Err(e)) => Err(e),
                    _ => {
                        status(&mut out, Some(tag), Kind::No, None, "no such quota root");
                        Ok(())
                    }
                }
            }
            CommandBody::SetQuota { .. } => {
                status(
                    &mut out,
                    Some(tag),
                    Kind::No,
                    None,
                    "quotas are set by the provider",
                );
                Ok(())
            }
            CommandBody::Noop | CommandBody::Check => {
                self.updates(&mut out, true);
                status(&mut out, Some(tag), Kind::Ok, None, "NOOP completed");
                return out;
            }
            other => {
                if self.selected.is_none() {
                    status(&mut out, Some(tag), Kind::Bad, None, "no mailbox selected");
                    return out;
                }
                match other {
                    CommandBody::Close => {
                        self.expunge(&mut out, None, true);
                        self.selected = None;
                        status(&mut out, Some(tag), Kind::Ok, None, "CLOSE completed");
                        return out;
                    }
                    CommandBody::Unselect => {
                        self.selected = None;
                        status(&mut out, Some(tag), Kind::Ok, None, "UNSELECT completed");
                        return out;
                    }
                    CommandBody::Expunge => {
                        self.updates(&mut out, true);
                        self.expunge(&mut out, None, false);
                        status(&mut out, Some(tag), Kind::Ok, None, "EXPUNGE completed");
                        Ok(())
                    }
                    CommandBody::ExpungeUid { sequence_set } => {
                        self.updates(&mut out, true);
                        self.expunge(&mut out, Some(&sequence_set), false);
                        status(&mut out, Some(tag), Kind::Ok, None, "UID EXPUNGE completed");
                        Ok(())
                    }
                    CommandBody::Search {
                        charset,
                        criteria,
                        uid,
                    } => {
                        allow_expunge = uid;
                        self.search(&mut out, tag, charset.as_ref(), &criteria, uid)
                    }
                    CommandBody::Fetch {
                        sequence_set,
                        macro_or_item_names,
                        uid,
                        ..
                    } => {
                        allow_expunge = uid;
                        let mut w = Writer {
                            out: &mut out,
                            sink,
                            gone: false,
                        };
                        self.fetch(&mut w, tag, &sequence_set, &macro_or_item_names, uid)
                    }
                    CommandBody::Store {
                        sequence_set,
                        kind,
                        response,
                        flags,
                        uid,
                        ..
                    } => {
                        allow_expunge = uid;
                        self.store_cmd(&mut out, tag, &sequence_set, &kind, &response, &flags, uid)
                    }
                    CommandBody::Copy {
                        sequence_set,
                        mailbox,
                        uid,
                    } => {
                        allow_expunge = uid;
                        self.copy(&mut out, tag, &sequence_set, &mailbox, uid, false)
                    }
                    CommandBody::Move {
                        sequence_set,
                        mailbox,
                        uid,
                    } => self.copy(&mut out, tag, &sequence_set, &mailbox, uid, true),
                    other => {
                        status(
                            &mut out,
                            Some(tag),
                            Kind::Bad,
                            None,
                            &format!("{} not supported", other.name()),
                        );
                        return out;
                    }
                }
            }
        };
        match r {
            Ok(()) => {
                // Untagged updates must precede the tagged reply: splice them in.
                let mut upd = vec![];
                self.updates(&mut upd, allow_expunge);
                if !upd.is_empty() {
                    let pos = last_line_start(&out);
                    out.splice(pos..pos, upd);
                }
            }
            Err(e) => err_status(&mut out, tag, &e),
        }
        out
    }

    fn select(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        m: &Mailbox<'_>,
        read_only: bool,
    ) -> Result<(), StoreError> {
        self.selected = None;
        let name = mbox_name(m)?;
        let folder = self.store.existing(&name)?;
        let snap = folder.sync(!read_only)?;
        push(out, Response::Data(Data::Flags(system_flags())));
        let perm: Vec<FlagPerm<'static>> = if read_only {
            vec![]
        } else {
            system_flags().into_iter().map(FlagPerm::Flag).collect()
        };
        status(
            out,
            None,
            Kind::Ok,
            Some(Code::PermanentFlags(perm)),
            "flags permitted",
        );
        push(out, Response::Data(Data::Exists(snap.msgs.len() as u32)));
        push(
            out,
            Response::Data(Data::Recent(
                snap.msgs.iter().filter(|m| m.recent).count() as u32
            )),
        );
        if let Some(i) = snap.msgs.iter().position(|m| !m.flags.seen) {
            status(
                out,
                None,
                Kind::Ok,
                Some(Code::Unseen(nz(i as u32 + 1))),
                "first unseen",
            );
        }
        status(
            out,
            None,
            Kind::Ok,
            Some(Code::UidValidity(nz(snap.uidvalidity))),
            "UIDs valid",
        );
        status(
            out,
            None,
            Kind::Ok,
            Some(Code::UidNext(nz(snap.uidnext))),
            "predicted next UID",
        );
        let code = if read_only {
            Code::ReadOnly
        } else {
            Code::ReadWrite
        };
        status(
            out,
            Some(tag),
            Kind::Ok,
            Some(code),
            if read_only {
                "EXAMINE completed"
            } else {
                "SELECT completed"
            },
        );
        self.selected = Some(Selected {
            name,
            folder,
            read_only,
            msgs: snap.msgs,
            uidvalidity: snap.uidvalidity,
            uidnext: snap.uidnext,
            vanished: HashSet::new(),
        });
        Ok(())
    }

    fn list(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Result<(), StoreError> {
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).to_string(),
        };
        let pat = list_pattern(pattern);
        let delim = QuotedChar::try_from(DELIM).ok();
        if pat.is_empty() && !lsub {
            // `LIST "" ""` asks for the delimiter and the root.
            let d = Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter: delim,
                mailbox: Mailbox::try_from("").unwrap_or(Mailbox::Inbox),
            };
            push(out, Response::Data(d));
            status(out, Some(tag), Kind::Ok, None, "LIST completed");
            return Ok(());
        }
        let full = format!("{reference}{pat}");
        let folders = self.store.list()?;
        let subs = self.store.subscriptions()?;
        let attr = |s: &str| {
            FlagNameAttribute::from(
                imap_codec::imap_types::core::Atom::try_from(s.to_string()).unwrap_or_else(|_| {
                    imap_codec::imap_types::core::Atom::try_from("X").expect("atom")
                }),
            )
        };
        let names: Vec<(String, Vec<FlagNameAttribute<'static>>)> = if lsub {
            subs.iter()
                .filter(|s| match_name(&full, s))
                .map(|s| {
                    let exists = folders.iter().any(|f| &f.name == s);
                    (
                        s.clone(),
                        if exists {
                            vec![]
                        } else {
                            vec![FlagNameAttribute::Noselect]
                        },
                    )
                })
                .collect()
        } else {
            folders
                .iter()
                .filter(|f| match_name(&full, &f.name))
                .map(|f| {
                    let mut a = vec![attr(if f.has_children {
                        "HasChildren"
                    } else {
                        "HasNoChildren"
                    })];
                    if let Some(sp) = f.special {
                        a.push(attr(sp.trim_start_matches('\\')));
                    }
                    if subs.contains(&f.name) {
                        a.push(attr("Subscribed"));
                    }
                    (f.name.clone(), a)
                })
                .collect()
        };
        for (name, items) in names {
            let Ok(mailbox) = Mailbox::try_from(name) else {
                continue;
            };
            let d = if lsub {
                Data::Lsub {
                    items,
                    delimiter: delim,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter: delim,
                    mailbox,
                }
            };
            push(out, Response::Data(d));
        }
        status(
            out,
            Some(tag),
            Kind::Ok,
            None,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        );
        Ok(())
    }

    fn status_cmd(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        m: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) -> Result<(), StoreError> {
        let name = mbox_name(m)?;
        let folder = self.store.existing(&name)?;
        let recent = folder.count_new()? as u32;
        let snap = folder.sync(false)?;
        let mut v = vec![];
        for i in items {
            v.push(match i {
                StatusDataItemName::Messages => StatusDataItem::Messages(snap.msgs.len() as u32),
                StatusDataItemName::Recent => StatusDataItem::Recent(recent),
                StatusDataItemName::UidNext => StatusDataItem::UidNext(nz(snap.uidnext)),
                StatusDataItemName::UidValidity => StatusDataItem::UidValidity(nz(snap.uidvalidity)),
                StatusDataItemName::Unseen => {
                    StatusDataItem::Unseen(snap.msgs.iter().filter(|m| !m.flags.seen).count() as u32)
                }
                StatusDataItemName::Deleted => {
                    StatusDataItem::Deleted(snap.msgs.iter().filter(|m| m.flags.deleted).count() as u32)
                }
                #[allow(unreachable_patterns)]
                _ => continue,
            });
        }
        push(
            out,
            Response::Data(Data::Status {
                mailbox: m.clone(),
                items: v.into(),
            }),
        );
        status(out, Some(tag), Kind::Ok, None, "STATUS completed");
        Ok(())
    }

    /// The existing folder an APPEND/COPY/MOVE targets; for a missing one the
    /// tagged `NO [TRYCREATE]` is written and `None` returned (RFC 3501 6.3.11).
    fn target_folder(
        &self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        m: &Mailbox<'_>,
    ) -> Result<Option<Folder>, StoreError> {
        match self.store.existing(&mbox_name(m)?) {
            Ok(f) => Ok(Some(f)),
            Err(StoreError::NoSuchFolder) => {
                status(
                    out,
                    Some(tag),
                    Kind::No,
                    Some(Code::TryCreate),
                    "no such mailbox",
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn append(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        m: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let Some(folder) = self.target_folder(out, tag, m)? else {
            return Ok(());
        };
        if let Some(limit) = self.quota {
            let used = self.store.usage()?.bytes;
            if used.saturating_add(data.len() as u64) > limit {
                status(
                    out,
                    Some(tag),
                    Kind::No,
                    Some(Code::OverQuota),
                    "mailbox full: the message does not fit in the quota",
                );
                return Ok(());
            }
        }
        let mtime = date.and_then(|d| {
            let secs = d.as_ref().timestamp();
            u64::try_from(secs)
                .ok()
                .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        });
        let (validity, uid) = folder.append(data, &flags_of(flags), mtime)?;
        status(
            out,
            Some(tag),
            Kind::Ok,
            Some(Code::AppendUid {
                uid_validity: nz(validity),
                uid: nz(uid),
            }),
            "APPEND completed",
        );
        Ok(())
    }

    fn expunge(&mut self, out: &mut Vec<u8>, only: Option<&SequenceSet>, silent: bool) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if sel.read_only {
            return;
        }
        let allowed: Option<Vec<usize>> = only.map(|s| resolve(s, &sel.msgs, true));
        for i in (0..sel.msgs.len()).rev() {
            let m = &sel.msgs[i];
            if !m.flags.deleted || allowed.as_ref().is_some_and(|a| !a.contains(&i)) {
                continue;
            }
            if let Err(e) = sel.folder.remove(m) {
                tracing::warn!(error = %e, "imap expunge failed");
                continue;
            }
            sel.msgs.remove(i);
            if !silent {
                push(out, Response::Data(Data::Expunge(nz(i as u32 + 1))));
            }
        }
        // Keep the UID list in step with the removals.
        let _ = sel.folder.sync(false);
    }

    fn search(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        charset: Option<&Charset<'_>>,
        criteria: &Vec1<SearchKey<'_>>,
        uid: bool,
    ) -> Result<(), StoreError> {
        if let Some(cs) = charset {
            let cs = cs.as_ref().to_ascii_uppercase();
            if cs != "UTF-8" && cs != "US-ASCII" {
                status(
                    out,
                    Some(tag),
                    Kind::No,
                    Some(Code::BadCharset { allowed: vec![] }),
                    "use UTF-8",
                );
                return Ok(());
            }
        }
        let Some(sel) = self.selected.as_ref() else {
            return Err(StoreError::Refused("no mailbox selected"));
        };
        let mut hits = vec![];
        for (i, m) in sel.msgs.iter().enumerate() {
            if sel.vanished.contains(&m.uid) {
                continue;
            }
            let c = Ctx {
                folder: &sel.folder,
                m,
                seq: i as u32 + 1,
                raw: OnceCell::new(),
                text: OnceCell::new(),
            };
            if criteria.as_ref().iter().all(|k| matches(k, &c, &sel.msgs)) {
                hits.push(nz(if uid { m.uid } else { i as u32 + 1 }));
            }
        }
        push(out, Response::Data(Data::Search(hits)));
        status(out, Some(tag), Kind::Ok, None, "SEARCH completed");
        Ok(())
    }

    fn fetch(
        &mut self,
        w: &mut Writer<'_>,
        tag: &Tag<'_>,
        set: &SequenceSet,
        what: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> Result<(), StoreError> {
        let mut names: Vec<MessageDataItemName<'_>> = match what {
            MacroOrMessageDataItemNames::Macro(m) => m.expand(),
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
        };
        if uid && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        let Some(sel) = self.selected.as_mut() else {
            return Err(StoreError::Refused("no mailbox selected"));
        };
        let needs_raw = names.iter().any(|n| {
            !matches!(
                n,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
            )
        });
        let marks_seen = names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        for i in resolve(set, &sel.msgs, uid) {
            if sel.vanished.contains(&sel.msgs[i].uid) {
                continue;
            }
            let raw = if needs_raw {
                match sel.folder.read(&sel.msgs[i]) {
                    Ok(r) => Some(r),
                    Err(_) => continue,
                }
            } else {
                None
            };
            let tree = raw.as_ref().map(|r| mime::parse_tree(r));
            let mut flags_changed = false;
            if marks_seen && !sel.read_only && !sel.msgs[i].flags.seen {
                let mut f = sel.msgs[i].flags.clone();
                f.seen = true;
                if let Ok(file) = sel.folder.set_flags(&sel.msgs[i], &f) {
                    sel.msgs[i].file = file;
                    sel.msgs[i].flags = f;
                    flags_changed = true;
                }
            }
            let m = &sel.msgs[i];
            let seq = i as u32 + 1;
            // One response, written item by item: a command naming the same
            // big section forty times must not cost forty copies of it.
            let mut resp = w.fetch_response(seq);
            for n in &names {
                let item = match n {
                    MessageDataItemName::Uid => MessageDataItem::Uid(nz(m.uid)),
                    MessageDataItemName::Flags => MessageDataItem::Flags(fetch_flags(m)),
                    MessageDataItemName::InternalDate => {
                        match sel.folder.internal_date(m).ok().and_then(to_datetime) {
                            Some(d) => MessageDataItem::InternalDate(d),
                            None => continue,
                        }
                    }
                    MessageDataItemName::Rfc822Size => {
                        MessageDataItem::Rfc822Size(sel.folder.size(m).unwrap_or(0) as u32)
                    }
                    _ => {
                        let (Some(raw), Some(tree)) = (raw.as_ref(), tree.as_ref()) else {
                            continue;
                        };
                        match n {
                            MessageDataItemName::Envelope => {
                                MessageDataItem::Envelope(mime::envelope(&raw[tree.header.clone()]))
                            }
                            MessageDataItemName::BodyStructure => MessageDataItem::BodyStructure(
                                mime::body_structure(raw, tree, true),
                            ),
                            MessageDataItemName::Body => {
                                MessageDataItem::Body(mime::body_structure(raw, tree, false))
                            }
                            MessageDataItemName::Rfc822 => {
                                resp.literal_item(MessageDataItem::Rfc822, raw);
                                continue;
                            }
                            MessageDataItemName::Rfc822Header => {
                                resp.literal_item(
                                    MessageDataItem::Rfc822Header,
                                    &raw[tree.header.clone()],
                                );
                                continue;
                            }
                            MessageDataItemName::Rfc822Text => {
                                resp.literal_item(
                                    MessageDataItem::Rfc822Text,
                                    &raw[tree.body.clone()],
                                );
                                continue;
                            }
                            MessageDataItemName::BodyExt {
                                section, partial, ..
                            } => {
                                let bytes = mime::section_bytes(raw, tree, section.as_ref())
                                    .unwrap_or_default();
                                let (data, origin) = match partial {
                                    Some((o, len)) => {
                                        let start = (*o as usize).min(bytes.len());
                                        let end = start
                                            .saturating_add(len.get() as usize)
                                            .min(bytes.len());
                                        (&bytes[start..end], Some(*o))
                                    }
                                    None => (&bytes[..], None),
                                };
                                let section = section
                                    .clone()
                                    .map(imap_codec::imap_types::IntoStatic::into_static);
                                resp.literal_item(
                                    |data| MessageDataItem::BodyExt {
                                        section,
                                        origin,
                                        data,
                                    },
                                    data,
                                );
                                continue;
                            }
                            _ => continue,
                        }
                    }
                };
                resp.item(item);
            }
            if flags_changed && !names.contains(&MessageDataItemName::Flags) {
                resp.item(MessageDataItem::Flags(fetch_flags(m)));
            }
            resp.end();
            if w.gone {
                break;
            }
        }
        status(
            w.out,
            Some(tag),
            Kind::Ok,
            None,
            if uid {
                "UID FETCH completed"
            } else {
                "FETCH completed"
            },
        );
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn store_cmd(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> Result<(), StoreError> {
        let Some(sel) = self.selected.as_mut() else {
            return Err(StoreError::Refused("no mailbox selected"));
        };
        if sel.read_only {
            status(out, Some(tag), Kind::No, None, "mailbox is read-only");
            return Ok(());
        }
        let want = flags_of(flags);
        for i in resolve(set, &sel.msgs, uid) {
            if sel.vanished.contains(&sel.msgs[i].uid) {
                continue;
            }
            let mut f = sel.msgs[i].flags.clone();
            match kind {
                StoreType::Add => f.add(&want),
                StoreType::Remove => f.remove(&want),
                StoreType::Replace => f.replace(&want),
            }
            if f != sel.msgs[i].flags {
                match sel.folder.set_flags(&sel.msgs[i], &f) {
                    Ok(file) => {
                        sel.msgs[i].file = file;
                        sel.msgs[i].flags = f;
                    }
                    Err(_) => continue,
                }
            }
            if matches!(response, StoreResponse::Answer) {
                let m = &sel.msgs[i];
                let mut items = vec![MessageDataItem::Flags(fetch_flags(m))];
                if uid {
                    items.push(MessageDataItem::Uid(nz(m.uid)));
                }
                if let Ok(d) = Data::fetch(i as u32 + 1, items) {
                    push(out, Response::Data(d));
                }
            }
        }
        status(out, Some(tag), Kind::Ok, None, "STORE completed");
        Ok(())
    }

    fn copy(
        &mut self,
        out: &mut Vec<u8>,
        tag: &Tag<'_>,
        set: &SequenceSet,
        m: &Mailbox<'_>,
        uid: bool,
        is_move: bool,
    ) -> Result<(), StoreError> {
        let Some(dest) = self.target_folder(out, tag, m)? else {
            return Ok(());
        };
        let Some(sel) = self.selected.as_mut() else {
            return Err(StoreError::Refused("no mailbox selected"));
        };
        if is_move && sel.read_only {
            status(out, Some(tag), Kind::No, None, "mailbox is read-only");
            return Ok(());
        }
        let idx: Vec<usize> = resolve(set, &sel.msgs, uid)
            .into_iter()
            .filter(|&i| !sel.vanished.contains(&sel.msgs[i].uid))
            .collect();
        // A copy adds its bytes to the box (a move does not: it takes them
        // out of the source), so it must fit, whole or not at all (RFC 9208).
        if let (Some(limit), false) = (self.quota, is_move) {
            let mut adds = 0u64;
            for &i in &idx {
                adds = adds.saturating_add(sel.folder.size(&sel.msgs[i])?);
            }
            let used = self.store.usage()?.bytes;
            if used.saturating_add(adds) > limit {
                status(
                    out,
                    Some(tag),
                    Kind::No,
                    Some(Code::OverQuota),
                    "mailbox full: the copy does not fit in the quota",
                );
                return Ok(());
            }
        }
        let (mut src_uids, mut dst_uids, mut validity) = (vec![], vec![], 0);
        for &i in &idx {
            let m = &sel.msgs[i];
            let (v, u) = sel.folder.copy_to(m, &dest, &m.flags)?;
            validity = v;
            src_uids.push(m.uid);
            dst_uids.push(u);
        }
        let code = match (uid_set(&src_uids), uid_set(&dst_uids)) {
            (Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity: nz(validity),
                source,
                destination,
            }),
            _ => None,
        };
        if is_move {
            status(out, None, Kind::Ok, code, "moved");
            for &i in idx.iter().rev() {
                sel.folder.remove(&sel.msgs[i])?;
                sel.msgs.remove(i);
                push(out, Response::Data(Data::Expunge(nz(i as u32 + 1))));
            }
            let _ = sel.folder.sync(false);
            status(out, Some(tag), Kind::Ok, None, "MOVE completed");
        } else {
            status(out, Some(tag), Kind::Ok, code, "COPY completed");
        }
        Ok(())
    }
}

/// Buffered responses with a way out for the big ones.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    sink: &'a mut dyn FnMut(Vec<u8>) -> bool,
    /// The sink refused a chunk: the client is gone, the rest is dropped.
    gone: bool,
}

/// Bytes gathered before they are handed to the sink.
const STREAM_CHUNK: usize = 256 * 1024;

impl<'a> Writer<'a> {
    /// Hand over what is buffered; false once the client is gone.
    fn flush(&mut self) -> bool {
        if !self.gone && !self.out.is_empty() {
            self.gone = !(self.sink)(std::mem::take(self.out));
        }
        !self.gone
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.gone {
            return;
        }
        if self.out.len() + bytes.len() <= STREAM_CHUNK {
            self.out.extend_from_slice(bytes);
            return;
        }
        if !self.flush() {
            return;
        }
        for piece in bytes.chunks(STREAM_CHUNK) {
            if piece.len() < STREAM_CHUNK {
                self.out.extend_from_slice(piece);
            } else if !(self.sink)(piece.to_vec()) {
                self.gone = true;
                return;
            }
        }
    }

    fn fetch_response<'w>(&'w mut self, seq: u32) -> FetchResponse<'w, 'a> {
        FetchResponse {
            w: self,
            seq,
            items: 0,
        }
    }
}

/// One `* n FETCH (...)` response being written.
struct FetchResponse<'w, 'a> {
    w: &'w mut Writer<'a>,
    seq: u32,
    items: usize,
}

impl FetchResponse<'_, '_> {
    fn open_item(&mut self) {
        let lead = if self.items == 0 {
            format!("* {} FETCH (", self.seq)
        } else {
            " ".to_string()
        };
        self.w.write(lead.as_bytes());
        self.items += 1;
    }

    /// An item encoded by imap-codec, as it would be in a one-item response.
    fn item(&mut self, item: MessageDataItem<'_>) {
        if let Some(bytes) = item_bytes(self.seq, item) {
            self.open_item();
            self.w.write(&bytes);
        }
    }

    /// An item carrying a literal: its head comes from imap-codec (with a
    /// one-byte stand-in literal), the literal itself straight from `data`.
    fn literal_item<'d>(
        &mut self,
        make: impl FnOnce(NString<'d>) -> MessageDataItem<'d>,
        data: &[u8],
    ) {
        if data.contains(&0) {
            // IMAP4rev1 cannot carry NUL in a literal.
            self.item(make(NString(None)));
            return;
        }
        let Some(bytes) = item_bytes(self.seq, make(literal(b"x".to_vec()))) else {
            return;
        };
        let Some(head) = bytes.strip_suffix(b"{1}\r\nx") else {
            return;
        };
        self.open_item();
        self.w.write(head);
        self.w.write(format!("{{{}}}\r\n", data.len()).as_bytes());
        self.w.write(data);
    }

    fn end(self) {
        if self.items > 0 {
            self.w.write(b")\r\n");
        }
        if self.w.out.len() >= STREAM_CHUNK {
            self.w.flush();
        }
    }
}

/// The encoding of one item between `* n FETCH (` and `)`.
fn item_bytes(seq: u32, item: MessageDataItem<'_>) -> Option<Vec<u8>> {
    let d = Data::fetch(seq, vec![item]).ok()?;
    let wire = ResponseCodec::default().encode(&Response::Data(d)).dump();
    let lead = format!("* {seq} FETCH (");
    wire.strip_prefix(lead.as_bytes())?
        .strip_suffix(b")\r\n")
        .map(<[u8]>::to_vec)
}

/// Offset where the last CRLF-terminated line of `out` starts.
fn last_line_start(out: &[u8]) -> usize {
    if out.len() < 2 {
        return 0;
    }
    out[..out.len() - 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard(b"*", b"Sent"));
        assert!(wildcard(b"%", b"Sent"));
        assert!(!wildcard(b"%", b"A.B"));
        assert!(wildcard(b"A.%", b"A.B"));
        assert!(wildcard(b"*", b"A.B"));
        assert!(wildcard(b"S*t", b"Sent"));
        assert!(match_name("inbox", "INBOX"));
        assert!(!wildcard(b"Sent", b"Sent2"));
    }
}
