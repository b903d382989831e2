//! The mailbox model: a user's Maildir++ store, as IMAP (and the web) see it.
//!
//! Layout (Dovecot-compatible, so Dovecot could take the store over):
//! - INBOX is the user's Maildir itself (`new/ cur/ tmp/`); folder `A.B` is
//!   the subdirectory `.A.B/` (Maildir++: IMAP hierarchy delimiter `.`).
//! - Flags live in the file name after `:2,` (`D F R S T`, sorted), so a
//!   rename is the only write a flag change needs and the message bytes are
//!   never touched (they are exactly what was signed).
//! - UIDs are ours: `pecd-uidlist` in each folder maps UID -> base name (file
//!   name without the `:2,` info) plus UIDVALIDITY and UIDNEXT. It is rewritten
//!   atomically (tmp + rename) under an exclusive `flock` on
//!   `pecd-uidlist.lock`, which serialises concurrent sessions (and processes).
//! - Subscriptions are in `subscriptions`, one name per line (as Dovecot).
//!
//! Nothing here is async: callers run it on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::atomic::write_atomic;

/// IMAP hierarchy delimiter (Maildir++).
pub const DELIM: char = '.';
/// Name of the per-folder UID list.
pub const UIDLIST: &str = "pecd-uidlist";
const UIDLIST_LOCK: &str = "pecd-uidlist.lock";
const SUBSCRIPTIONS: &str = "subscriptions";

/// Default folders created for every user, with their SPECIAL-USE attribute.
pub const SPECIAL_FOLDERS: [(&str, &str); 3] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
];

/// Why a mailbox operation failed, already shaped for a tagged reply.
#[derive(Debug)]
pub enum StoreError {
    /// The name is not acceptable (escapes the root, bad characters).
    BadName(String),
    /// The folder does not exist.
    NoSuchFolder,
    /// The folder already exists.
    Exists,
    /// The operation is not possible on this folder.
    Refused(&'static str),
    /// File-system failure.
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::BadName(n) => write!(f, "invalid mailbox name: {n}"),
            StoreError::NoSuchFolder => write!(f, "no such mailbox"),
            StoreError::Exists => write!(f, "mailbox already exists"),
            StoreError::Refused(why) => write!(f, "{why}"),
            StoreError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

/// System flags as stored in Maildir file names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    /// \Seen (`S`).
    pub seen: bool,
    /// \Answered (`R`).
    pub answered: bool,
    /// \Flagged (`F`).
    pub flagged: bool,
    /// \Deleted (`T`).
    pub deleted: bool,
    /// \Draft (`D`).
    pub draft: bool,
    /// Other info letters (e.g. `P`, Dovecot keyword letters), kept verbatim.
    pub other: String,
}

impl Flags {
    /// Parse the part after `:2,`.
    pub fn from_info(info: &str) -> Self {
        let mut f = Flags::default();
        for c in info.chars() {
            match c {
                'S' => f.seen = true,
                'R' => f.answered = true,
                'F' => f.flagged = true,
                'T' => f.deleted = true,
                'D' => f.draft = true,
                c if c.is_ascii_alphanumeric() && !f.other.contains(c) => f.other.push(c),
                _ => {}
            }
        }
        f
    }

    /// The info letters, sorted as Maildir requires.
    pub fn to_info(&self) -> String {
        let mut v: Vec<char> = self.other.chars().collect();
        for (on, c) in [
            (self.draft, 'D'),
            (self.flagged, 'F'),
            (self.answered, 'R'),
            (self.seen, 'S'),
            (self.deleted, 'T'),
        ] {
            if on {
                v.push(c);
            }
        }
        v.sort_unstable();
        v.dedup();
        v.into_iter().collect()
    }

    /// Union with `o` (system flags only).
    pub fn add(&mut self, o: &Flags) {
        self.seen |= o.seen;
        self.answered |= o.answered;
        self.flagged |= o.flagged;
        self.deleted |= o.deleted;
        self.draft |= o.draft;
    }

    /// Remove the system flags set in `o`.
    pub fn remove(&mut self, o: &Flags) {
        self.seen &= !o.seen;
        self.answered &= !o.answered;
        self.flagged &= !o.flagged;
        self.deleted &= !o.deleted;
        self.draft &= !o.draft;
    }

    /// Replace the system flags with those of `o`, keeping other letters.
    pub fn replace(&mut self, o: &Flags) {
        let other = std::mem::take(&mut self.other);
        *self = o.clone();
        self.other = other;
    }
}

/// Split a Maildir file name into base name and flags.
pub fn split_name(file: &str) -> (&str, Flags) {
    match file.split_once(':') {
        Some((base, info)) => {
            let flags = info.strip_prefix("2,").map(Flags::from_info);
            (base, flags.unwrap_or_default())
        }
        None => (file, Flags::default()),
    }
}

/// File name in `cur/` for a base name and flags.
pub fn cur_name(base: &str, flags: &Flags) -> String {
    format!("{base}:2,{}", flags.to_info())
}

/// Split an address at the last '@' into (domain, localpart), lower-cased and
/// checked so that neither part can climb out of the mail root.
pub fn address_dir(mail_root: &Path, address: &str) -> Result<PathBuf, StoreError> {
    crate::store::maildir::mailbox_path(mail_root, address)
        .map_err(|_| StoreError::BadName(address.to_string()))
}

/// Check an IMAP folder name (already resolved against INBOX) and give its
/// directory name inside the user's Maildir; `None` means INBOX itself.
pub fn folder_dir(name: &str) -> Result<Option<String>, StoreError> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let bad = || StoreError::BadName(name.to_string());
    if name.is_empty() || name.len() > 200 {
        return Err(bad());
    }
    for comp in name.split(DELIM) {
        // Empty components would produce `..` or a trailing dot on disk.
        if comp.is_empty() {
            return Err(bad());
        }
    }
    if name.contains(['/', '\\', '\0', '*', '%'])
        || name.chars().any(|c| c.is_control())
        || name.starts_with('~')
    {
        return Err(bad());
    }
    Ok(Some(format!(".{name}")))
}

static UNIQ: AtomicU64 = AtomicU64::new(0);

/// A fresh unique Maildir base name (`secs.MusecPpidQn.host`).
pub fn unique_name(hostname: &str) -> String {
    let now = crate::pec::clock::since_epoch();
    let q = UNIQ.fetch_add(1, Ordering::Relaxed);
    let host: String = hostname
        .chars()
        .map(|c| if c == '/' || c == ':' { '_' } else { c })
        .collect();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        host
    )
}

fn create_maildir(dir: &Path) -> io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Create a user's Maildir with the default special-use folders (idempotent).
pub fn create_user(mail_root: &Path, address: &str) -> Result<PathBuf, StoreError> {
    let dir = address_dir(mail_root, address)?;
    create_maildir(&dir)?;
    for (name, _) in SPECIAL_FOLDERS {
        let f = dir.join(format!(".{name}"));
        create_maildir(&f)?;
        // Maildir++ marks subfolders with this file; Dovecot and Courier look for it.
        let marker = f.join("maildirfolder");
        if !marker.exists() {
            fs::write(marker, b"")?;
        }
    }
    let subs = dir.join(SUBSCRIPTIONS);
    if !subs.exists() {
        let names: Vec<&str> = SPECIAL_FOLDERS.iter().map(|(n, _)| *n).collect();
        write_atomic(&subs, format!("{}\n", names.join("\n")).as_bytes())?;
    }
    Ok(dir)
}

/// Every user's mailbox: where IMAP, POP3, the webmail and the CLI open
/// one. Messages are read and written through it — their bytes stream out
/// of [`Folder::open`], never from a path — so that the mailboxes can move
/// from local Maildirs to a shared store without touching the protocols.
#[derive(Debug, Clone)]
pub struct Mailboxes {
    root: PathBuf,
    hostname: String,
}

impl Mailboxes {
    /// The Maildirs under `mail_root`; `hostname` goes into new file names.
    pub fn at(mail_root: &Path, hostname: &str) -> Mailboxes {
        Mailboxes {
            root: mail_root.to_path_buf(),
            hostname: hostname.to_string(),
        }
    }

    /// The host name new messages are named with (and protocols greet with).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Open (creating if needed) the mailbox of `address`.
    pub fn open(&self, address: &str) -> Result<UserStore, StoreError> {
        UserStore::open(&self.root, address, &self.hostname)
    }

    /// Create an empty mailbox (INBOX and the default folders) for a new user.
    pub fn create(&self, address: &str) -> Result<(), StoreError> {
        create_user(&self.root, address).map(|_| ())
    }
}

/// A user's whole store.
#[derive(Debug, Clone)]
pub struct UserStore {
    root: PathBuf,
    hostname: String,
}

/// One listed folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// IMAP name.
    pub name: String,
    /// SPECIAL-USE attribute, if any.
    pub special: Option<&'static str>,
    /// Whether some other folder lives below it.
    pub has_children: bool,
}

impl UserStore {
    /// Open (creating if needed) the store of `address` under `mail_root`.
    fn open(mail_root: &Path, address: &str, hostname: &str) -> Result<Self, StoreError> {
        let root = create_user(mail_root, address)?;
        Ok(Self {
            root,
            hostname: hostname.to_string(),
        })
    }

    /// The Maildir's directory, for tests that lay files down by hand.
    #[cfg(test)]
    pub(crate) fn dir_for_tests(&self) -> &Path {
        &self.root
    }

    /// How much of the quota the mailbox uses.
    pub fn usage(&self) -> io::Result<crate::store::quota::Usage> {
        crate::store::quota::usage(&self.root)
    }

    /// Resolve an IMAP name to a folder handle (does not check existence).
    pub fn folder(&self, name: &str) -> Result<Folder, StoreError> {
        let path = match folder_dir(name)? {
            None => self.root.clone(),
            Some(d) => self.root.join(d),
        };
        Ok(Folder {
            path,
            hostname: self.hostname.clone(),
        })
    }

    /// Resolve and require an existing folder.
    pub fn existing(&self, name: &str) -> Result<Folder, StoreError> {
        let f = self.folder(name)?;
        if f.path.join("cur").is_dir() {
            Ok(f)
        } else {
            Err(StoreError::NoSuchFolder)
        }
    }

    /// All folders, INBOX first, then by name.
    pub fn list(&self) -> io::Result<Vec<FolderInfo>> {
        let mut names = vec![];
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            let Some(n) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some(name) = n.strip_prefix('.') {
                if folder_dir(name).is_ok() && e.path().join("cur").is_dir() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        let mut out = vec![FolderInfo {
            name: "INBOX".into(),
            special: None,
            has_children: false,
        }];
        for n in &names {
            let prefix = format!("{n}{DELIM}");
            out.push(FolderInfo {
                name: n.clone(),
                special: SPECIAL_FOLDERS
                    .iter()
                    .find(|(s, _)| s == n)
                    .map(|(_, a)| *a),
                has_children: names.iter().any(|m| m.starts_with(&prefix)),
            });
        }
        Ok(out)
    }

    /// CREATE: make the folder (and missing parents, as RFC 3501 suggests).
    pub fn create(&self, name: &str) -> Result<(), StoreError> {
        let name = name.trim_end_matches(DELIM);
        let f = self.folder(name)?;
        if f.path == self.root {
            return Err(StoreError::Exists);
        }
        if f.path.join("cur").is_dir() {
            return Err(StoreError::Exists);
        }
        let comps: Vec<&str> = name.split(DELIM).collect();
        for i in 1..=comps.len() {
            let partial = comps[..i].join(&DELIM.to_string());
            let p = self.folder(&partial)?;
            create_maildir(&p.path)?;
            let marker = p.path.join("maildirfolder");
            if !marker.exists() {
                fs::write(marker, b"")?;
            }
        }
        Ok(())
    }

    /// DELETE: remove a folder without children (INBOX cannot be deleted).
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let f = self.existing(name)?;
        if f.path == self.root {
            return Err(StoreError::Refused("INBOX cannot be deleted"));
        }
        let prefix = format!("{}{DELIM}", name);
        if self.list()?.iter().any(|i| i.name.starts_with(&prefix)) {
            return Err(StoreError::Refused("mailbox has children"));
        }
        fs::remove_dir_all(&f.path)?;
        crate::store::quota::invalidate(&self.root)?;
        self.set_subscribed(name, false)?;
        Ok(())
    }

    /// RENAME: move a folder and its children.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let src = self.existing(from)?;
        if src.path == self.root {
            return Err(StoreError::Refused("renaming INBOX is not supported"));
        }
        let dst = self.folder(to)?;
        if dst.path == self.root || dst.path.exists() {
            return Err(StoreError::Exists);
        }
        if to.starts_with(&format!("{from}{DELIM}")) {
            return Err(StoreError::Refused("cannot move a mailbox into itself"));
        }
        let prefix = format!("{from}{DELIM}");
        let children: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|i| i.name.starts_with(&prefix))
            .map(|i| i.name)
            .collect();
        // Parents of the target must exist as folders too.
        if let Some((parent, _)) = to.rsplit_once(DELIM) {
            if self.existing(parent).is_err() {
                self.create(parent)?;
            }
        }
        fs::rename(&src.path, &dst.path)?;
        for c in children {
            let new_name = format!("{to}{}", &c[from.len()..]);
            let a = self.folder(&c)?;
            let b = self.folder(&new_name)?;
            fs::rename(&a.path, &b.path)?;
        }
        Ok(())
    }

    /// Subscribed names.
    pub fn subscriptions(&self) -> io::Result<Vec<String>> {
        match fs::read_to_string(self.root.join(SUBSCRIPTIONS)) {
            Ok(s) => Ok(s
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    /// SUBSCRIBE / UNSUBSCRIBE.
    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<(), StoreError> {
        folder_dir(name)?;
        let _lock = Lock::take(&self.root.join(UIDLIST_LOCK))?;
        let mut subs = self.subscriptions()?;
        subs.retain(|s| s != name);
        if on {
            subs.push(name.to_string());
        }
        let mut text = subs.join("\n");
        text.push('\n');
        write_atomic(&self.root.join(SUBSCRIPTIONS), text.as_bytes())?;
        Ok(())
    }
}

/// An exclusive `flock` held while the guard lives (closing the file releases it).
struct Lock(#[allow(dead_code)] fs::File);

impl Lock {
    fn take(path: &Path) -> io::Result<Lock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        f.lock()?;
        Ok(Lock(f))
    }
}

/// One message as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgEntry {
    /// Its UID.
    pub uid: u32,
    /// Base name (file name without info).
    pub base: String,
    /// Current file name in `cur/`.
    pub file: String,
    /// Flags from the file name.
    pub flags: Flags,
    /// Whether this sync moved it out of `new/` (IMAP \Recent).
    pub recent: bool,
}

/// The state of a folder after a sync.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT.
    pub uidnext: u32,
    /// Messages in UID order.
    pub msgs: Vec<MsgEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UidList {
    validity: u32,
    next: u32,
    uids: Vec<(u32, String)>,
}

impl UidList {
    fn fresh() -> Self {
        let now = crate::pec::clock::since_epoch().as_secs() as u32;
        UidList {
            validity: now.max(1),
            next: 1,
            uids: vec![],
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next()?.split_whitespace().collect();
        if head.len() != 3 || head[0] != "1" {
            return None;
        }
        let validity: u32 = head[1].parse().ok()?;
        let next: u32 = head[2].parse().ok()?;
        let mut uids = vec![];
        for l in lines {
            if l.is_empty() {
                continue;
            }
            let (u, b) = l.split_once(' ')?;
            let u: u32 = u.parse().ok()?;
            if u == 0 || u >= next {
                return None;
            }
            uids.push((u, b.to_string()));
        }
        uids.sort_by_key(|(u, _)| *u);
        (validity > 0).then_some(UidList {
            validity,
            next,
            uids,
        })
    }

    fn render(&self) -> String {
        let mut s = format!("1 {} {}\n", self.validity, self.next);
        for (u, b) in &self.uids {
            s.push_str(&format!("{u} {b}\n"));
        }
        s
    }
}

/// How far a restore moves every folder's UIDNEXT (see [`after_restore`]).
pub const RESTORE_UID_GAP: u32 = 1 << 20;

/// After a restore: the UID list in `folder_dir` came from the backup, so
/// UIDs given after it (to messages lost with the disaster) would be given
/// again, and a client that saw them would take the new message for the old
/// one (RFC 3501 §2.3.1.1 forbids reusing a UID under one UIDVALIDITY).
/// Moving UIDNEXT past anything the lost days can have used keeps every
/// restored UID (no client resync, POP3 UIDLs unchanged); a list too close
/// to the end of the UID space gets a new UIDVALIDITY instead. Returns
/// whether a list was there.
pub fn after_restore(folder_dir: &Path) -> io::Result<bool> {
    let _lock = Lock::take(&folder_dir.join(UIDLIST_LOCK))?;
    let path = folder_dir.join(UIDLIST);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let list = match UidList::parse(&text) {
        Some(mut l) => match l.next.checked_add(RESTORE_UID_GAP) {
            Some(next) => {
                l.next = next;
                l
            }
            None => UidList::fresh(),
        },
        // Damaged: the next sync would start afresh anyway.
        None => UidList::fresh(),
    };
    write_atomic(&path, list.render().as_bytes())?;
    Ok(true)
}

/// A message's bytes, streamed.
#[derive(Debug)]
pub struct MessageReader(fs::File);

impl io::Read for MessageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// One Maildir folder (INBOX or a `.Name` subfolder).
#[derive(Debug, Clone)]
pub struct Folder {
    path: PathBuf,
    hostname: String,
}

impl Folder {
    /// Whether `other` is this very folder.
    pub fn same(&self, other: &Folder) -> bool {
        self.path == other.path
    }

    /// A stable key for message `m` of this folder (caches of what its
    /// bytes give: the key changes with nothing but the message).
    pub fn key(&self, m: &MsgEntry) -> String {
        format!("{}\u{0}{}", self.path.display(), m.base)
    }

    fn load_uidlist(&self) -> io::Result<UidList> {
        match fs::read_to_string(self.path.join(UIDLIST)) {
            // A damaged list is replaced by a fresh one with a new UIDVALIDITY:
            // clients then resync, which is what UIDVALIDITY exists for.
            Ok(t) => Ok(UidList::parse(&t).unwrap_or_else(UidList::fresh)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(UidList::fresh()),
            Err(e) => Err(e),
        }
    }

    fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
        let mut v = vec![];
        match fs::read_dir(dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e?;
                    if let Some(n) = e.file_name().to_str() {
                        if !n.starts_with('.') {
                            v.push(n.to_string());
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(v)
    }

    /// Bring the UID list up to date with the directory: move `new/` into
    /// `cur/` (when `take_new`), give UIDs to unknown files, forget vanished ones.
    pub fn sync(&self, take_new: bool) -> io::Result<Snapshot> {
        let _lock = Lock::take(&self.path.join(UIDLIST_LOCK))?;
        self.sync_locked(take_new)
    }

    fn sync_locked(&self, take_new: bool) -> io::Result<Snapshot> {
        let mut recent: HashSet<String> = HashSet::new();
        let mut files: HashMap<String, String> = HashMap::new();
        for n in Self::list_dir(&self.path.join("new"))? {
            let (base, flags) = split_name(&n);
            let base = base.to_string();
            if take_new {
                let target = cur_name(&base, &flags);
                match fs::rename(
                    self.path.join("new").join(&n),
                    self.path.join("cur").join(&target),
                ) {
                    Ok(()) => {
                        recent.insert(base.clone());
                        files.insert(base, target);
                    }
                    // Another session took it first; the cur/ listing below finds it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else {
                files.insert(base, format!("../new/{n}"));
            }
        }
        for n in Self::list_dir(&self.path.join("cur"))? {
            let base = split_name(&n).0.to_string();
            files.insert(base, n);
        }
        let old = self.load_uidlist()?;
        let mut list = old.clone();
        list.uids.retain(|(_, b)| files.contains_key(b));
        let known: HashSet<&str> = list.uids.iter().map(|(_, b)| b.as_str()).collect();
        let mut fresh: Vec<&String> = files
            .keys()
            .filter(|b| !known.contains(b.as_str()))
            .collect();
        fresh.sort();
        let mut added = vec![];
        for b in fresh {
            added.push((list.next, b.clone()));
            list.next += 1;
        }
        list.uids.extend(added);
        if list != old || !self.path.join(UIDLIST).exists() {
            write_atomic(&self.path.join(UIDLIST), list.render().as_bytes())?;
        }
        let msgs = list
            .uids
            .iter()
            .filter_map(|(uid, base)| {
                let file = files.get(base)?.clone();
                let flags = split_name(&file).1;
                Some(MsgEntry {
                    uid: *uid,
                    base: base.clone(),
                    recent: recent.contains(base),
                    file,
                    flags,
                })
            })
            .collect();
        Ok(Snapshot {
            uidvalidity: list.validity,
            uidnext: list.next,
            msgs,
        })
    }

    /// Full path of a message file, finding it again if another session renamed it.
    fn locate(&self, m: &MsgEntry) -> io::Result<PathBuf> {
        let p = self.path.join("cur").join(&m.file);
        if p.exists() {
            return Ok(p);
        }
        for dir in ["cur", "new"] {
            for n in Self::list_dir(&self.path.join(dir))? {
                if split_name(&n).0 == m.base {
                    return Ok(self.path.join(dir).join(n));
                }
            }
        }
        Err(io::Error::new(io::ErrorKind::NotFound, "message expunged"))
    }

    /// Read a message's exact bytes.
    pub fn read(&self, m: &MsgEntry) -> io::Result<Vec<u8>> {
        fs::read(self.locate(m)?)
    }

    /// Stream a message's exact bytes (POP3 RETR, large messages):
    /// `NotFound` when another session removed it.
    pub fn open(&self, m: &MsgEntry) -> io::Result<MessageReader> {
        Ok(MessageReader(fs::File::open(self.locate(m)?)?))
    }

    /// Whether the message is still there.
    pub fn contains(&self, m: &MsgEntry) -> io::Result<bool> {
        match self.locate(m) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copy message `m` into folder `dest` with `flags`, keeping its bytes
    /// and date; gives its (UIDVALIDITY, UID) there.
    pub fn copy_to(&self, m: &MsgEntry, dest: &Folder, flags: &Flags) -> io::Result<(u32, u32)> {
        let src = self.locate(m)?;
        dest.copy_from(&src, flags)
    }

    /// Internal date (file mtime) as seconds since the epoch.
    pub fn internal_date(&self, m: &MsgEntry) -> io::Result<i64> {
        let md = fs::metadata(self.locate(m)?)?;
        let t = md.modified()?;
        Ok(match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
    }

    /// File size (RFC822.SIZE).
    pub fn size(&self, m: &MsgEntry) -> io::Result<u64> {
        Ok(fs::metadata(self.locate(m)?)?.len())
    }

    /// Set the flags of a message by renaming its file; returns the new file name.
    pub fn set_flags(&self, m: &MsgEntry, flags: &Flags) -> io::Result<String> {
        let target = cur_name(&m.base, flags);
        for _ in 0..3 {
            let src = self.locate(m)?;
            match fs::rename(&src, self.path.join("cur").join(&target)) {
                Ok(()) => return Ok(target),
                // Lost a race with another session's rename: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::NotFound, "message expunged"))
    }

    /// The user's Maildir root (where `maildirsize` lives).
    fn user_root(&self) -> &Path {
        let sub = self
            .path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        match self.path.parent() {
            Some(p) if sub => p,
            _ => &self.path,
        }
    }

    /// Remove a message file (EXPUNGE); a message already gone is fine.
    pub fn remove(&self, m: &MsgEntry) -> io::Result<()> {
        let root = self.user_root();
        let g = crate::store::quota::lock(root)?;
        let p = match self.locate(m) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = match fs::metadata(&p) {
            Ok(md) => md.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match fs::remove_file(p) {
            Ok(()) => {
                crate::store::quota::record(root, &g, -(len as i64), -1);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deliver bytes into this folder (tmp -> fsync -> cur) and give it a UID.
    /// Returns (UIDVALIDITY, UID).
    pub fn append(
        &self,
        bytes: &[u8],
        flags: &Flags,
        mtime: Option<SystemTime>,
    ) -> io::Result<(u32, u32)> {
        let base = unique_name(&self.hostname);
        let tmp = self.path.join("tmp").join(&base);
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            if let Some(t) = mtime {
                f.set_modified(t)?;
            }
            f.sync_all()?;
        }
        self.commit_tmp(&tmp, &base, flags)
    }

    /// Copy a message file from another folder, keeping its bytes and date.
    fn copy_from(&self, src: &Path, flags: &Flags) -> io::Result<(u32, u32)> {
        let base = unique_name(&self.hostname);
        let tmp = self.path.join("tmp").join(&base);
        // A hard link shares the (immutable) bytes; fall back to a copy across devices.
        if fs::hard_link(src, &tmp).is_err() {
            fs::copy(src, &tmp)?;
            let t = fs::metadata(src)?.modified()?;
            fs::File::options()
                .write(true)
                .open(&tmp)?
                .set_modified(t)?;
        }
        self.commit_tmp(&tmp, &base, flags)
    }

    fn commit_tmp(&self, tmp: &Path, base: &str, flags: &Flags) -> io::Result<(u32, u32)> {
        let _lock = Lock::take(&self.path.join(UIDLIST_LOCK))?;
        // Sync first so that earlier arrivals keep lower UIDs than this one.
        self.sync_locked(false)?;
        let len = fs::metadata(tmp)?.len();
        {
            let root = self.user_root();
            let g = crate::store::quota::lock(root)?;
            fs::rename(tmp, self.path.join("cur").join(cur_name(base, flags)))?;
            crate::store::quota::record(root, &g, len as i64, 1);
        }
        let snap = self.sync_locked(false)?;
        let uid = snap
            .msgs
            .iter()
            .find(|m| m.base == base)
            .map(|m| m.uid)
            .ok_or_else(|| io::Error::other("appended message vanished"))?;
        Ok((snap.uidvalidity, uid))
    }

    /// Number of messages in `new/` (STATUS RECENT without taking them).
    pub fn count_new(&self) -> io::Result<usize> {
        Ok(Self::list_dir(&self.path.join("new"))?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, UserStore) {
        let d = tempfile::tempdir().unwrap();
        let s = UserStore::open(d.path(), "Mario.Rossi@Alpha.Test", "mx.alpha.test").unwrap();
        (d, s)
    }

    fn drop_new(f: &Folder, name: &str, body: &[u8]) {
        fs::write(f.path.join("new").join(name), body).unwrap();
    }

    #[test]
    fn flags_roundtrip_through_file_names() {
        let (base, f) = split_name("1732380000.M1P2Q3.mx:2,FST");
        assert_eq!(base, "1732380000.M1P2Q3.mx");
        assert!(f.seen && f.flagged && f.deleted && !f.answered && !f.draft);
        assert_eq!(cur_name(base, &f), "1732380000.M1P2Q3.mx:2,FST");
        let (b2, f2) = split_name("1732380000.M1P2Q3.mx");
        assert_eq!(b2, "1732380000.M1P2Q3.mx");
        assert_eq!(f2, Flags::default());
        let mut g = Flags::from_info("Sa");
        g.add(&Flags::from_info("R"));
        assert_eq!(g.to_info(), "RSa");
        g.remove(&Flags::from_info("S"));
        assert_eq!(g.to_info(), "Ra");
        g.replace(&Flags::from_info("DF"));
        assert_eq!(g.to_info(), "DFa");
    }

    #[test]
    fn user_dir_is_lowercased_and_split_at_last_at() {
        let root = Path::new("/srv/mail");
        assert_eq!(
            address_dir(root, "A@b@Example.IT").unwrap(),
            Path::new("/srv/mail/example.it/a@b")
        );
        for bad in ["../x@y", "x@..", "x@a/b", "noat", "x@", "@y", ".hidden@y"] {
            assert!(address_dir(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folder_names_cannot_escape_the_maildir() {
        assert_eq!(folder_dir("INBOX").unwrap(), None);
        assert_eq!(folder_dir("inbox").unwrap(), None);
        assert_eq!(folder_dir("Sent").unwrap().as_deref(), Some(".Sent"));
        assert_eq!(folder_dir("A.B").unwrap().as_deref(), Some(".A.B"));
        for bad in [
            "",
            "..",
            ".x",
            "x.",
            "a..b",
            "../../etc",
            "/etc",
            "a/b",
            "a\\b",
            "x\0",
            "~root",
        ] {
            assert!(folder_dir(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn new_user_gets_default_folders_and_subscriptions() {
        let (_d, s) = store();
        assert!(s.root.ends_with("alpha.test/mario.rossi"));
        let names: Vec<String> = s.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["INBOX", "Drafts", "Sent", "Trash"]);
        let sent = s
            .list()
            .unwrap()
            .into_iter()
            .find(|i| i.name == "Sent")
            .unwrap();
        assert_eq!(sent.special, Some("\\Sent"));
        assert_eq!(s.subscriptions().unwrap(), ["Sent", "Drafts", "Trash"]);
    }

    #[test]
    fn a_restored_uid_list_keeps_its_uids_and_never_gives_them_again() {
        let (_d, s) = store();
        let inbox = s.folder("INBOX").unwrap();
        drop_new(&inbox, "1000.M1P1Q1.h", b"a");
        drop_new(&inbox, "1001.M1P1Q1.h", b"b");
        let before = inbox.sync(true).unwrap();
        assert_eq!(before.uidnext, 3);
        // The list as a backup holds it; afterwards UID 3 went to a message
        // the disaster then lost.
        assert!(after_restore(&inbox.path).unwrap());
        drop_new(&inbox, "1002.M1P1Q1.h", b"c");
        let after = inbox.sync(true).unwrap();
        assert_eq!(after.uidvalidity, before.uidvalidity, "no client resync");
        assert_eq!(
            after.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [1, 2, 3 + RESTORE_UID_GAP]
        );
        // Near the end of the UID space: a new UIDVALIDITY instead.
        let text = fs::read_to_string(inbox.path.join(UIDLIST)).unwrap();
        let near_end = text.replacen(
            &format!(" {}\n", 4 + RESTORE_UID_GAP),
            &format!(" {}\n", u32::MAX - 5),
            1,
        );
        assert_ne!(near_end, text);
        fs::write(inbox.path.join(UIDLIST), near_end).unwrap();
        assert!(after_restore(&inbox.path).unwrap());
        let fresh = fs::read_to_string(inbox.path.join(UIDLIST)).unwrap();
        assert!(fresh.ends_with(" 1\n"), "{fresh}");
        // A folder nobody opened has no list: nothing to do.
        let sent = s.folder("Sent").unwrap();
        assert!(!after_restore(&sent.path).unwrap());
    }

    #[test]
    fn uids_are_assigned_in_order_and_persist() {
        let (_d, s) = store();
        let inbox = s.folder("INBOX").unwrap();
        drop_new(&inbox, "1000.M1P1Q1.h", b"a");
        drop_new(&inbox, "1001.M1P1Q1.h", b"b");
        let s1 = inbox.sync(true).unwrap();
        assert_eq!(s1.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
        assert!(s1.msgs.iter().all(|m| m.recent));
        assert_eq!(s1.msgs[0].file, "1000.M1P1Q1.h:2,");
        assert!(inbox.path.join("cur/1000.M1P1Q1.h:2,").exists());
        assert_eq!(s1.uidnext, 3);
        // A second sync (another session, or after restart) keeps everything.
        let s2 = inbox.sync(true).unwrap();
        assert_eq!(s2.uidvalidity, s1.uidvalidity);
        assert_eq!(s2.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
        assert!(s2.msgs.iter().all(|m| !m.recent));
        // Removing and adding: UIDs are never reused.
        inbox.remove(&s2.msgs[0]).unwrap();
        drop_new(&inbox, "0999.M1P1Q1.h", b"c");
        let s3 = inbox.sync(true).unwrap();
        assert_eq!(s3.msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s3.uidnext, 4);
        let text = fs::read_to_string(inbox.path.join(UIDLIST)).unwrap();
        assert!(
            text.starts_with(&format!("1 {} 4\n", s1.uidvalidity)),
            "{text}"
        );
    }

    #[test]
    fn flag_changes_rename_and_keep_uid_and_bytes() {
        let (_d, s) = store();
        let inbox = s.folder("INBOX").unwrap();
        drop_new(&inbox, "1000.M1P1Q1.h", b"exact\r\nbytes");
        let m = inbox.sync(true).unwrap().msgs.remove(0);
        let mut f = m.flags.clone();
        f.seen = true;
        f.deleted = true;
        let file = inbox.set_flags(&m, &f).unwrap();
        assert_eq!(file, "1000.M1P1Q1.h:2,ST");
        let again = inbox.sync(true).unwrap().msgs.remove(0);
        assert_eq!(again.uid, m.uid);
        assert!(again.flags.seen && again.flags.deleted);
        // The stale entry still finds its file.
        assert_eq!(inbox.read(&m).unwrap(), b"exact\r\nbytes");
        inbox.remove(&again).unwrap();
        assert!(inbox.sync(true).unwrap().msgs.is_empty());
    }

    #[test]
    fn append_and_copy_get_uids_and_keep_bytes() {
        let (_d, s) = store();
        let sent = s.existing("Sent").unwrap();
        let (v, uid) = sent
            .append(b"Subject: x\r\n\r\nhi\r\n", &Flags::from_info("S"), None)
            .unwrap();
        assert_eq!(uid, 1);
        let snap = sent.sync(true).unwrap();
        assert_eq!(snap.uidvalidity, v);
        assert!(snap.msgs[0].flags.seen);
        let trash = s.existing("Trash").unwrap();
        let src = sent.locate(&snap.msgs[0]).unwrap();
        let (_, u2) = trash.copy_from(&src, &Flags::default()).unwrap();
        assert_eq!(u2, 1);
        let t = trash.sync(true).unwrap();
        assert_eq!(trash.read(&t.msgs[0]).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
    }

    #[test]
    fn create_rename_delete_folders() {
        let (_d, s) = store();
        s.create("Archivio.2024").unwrap();
        assert!(matches!(s.create("Archivio"), Err(StoreError::Exists)));
        let names: Vec<String> = s.list().unwrap().into_iter().map(|i| i.name).collect();
        assert!(names.contains(&"Archivio".into()) && names.contains(&"Archivio.2024".into()));
        assert!(s
            .list()
            .unwrap()
            .iter()
            .any(|i| i.name == "Archivio" && i.has_children));
        s.rename("Archivio", "Old").unwrap();
        assert!(s.existing("Old.2024").is_ok());
        assert!(s.existing("Archivio").is_err());
        assert!(matches!(s.delete("Old"), Err(StoreError::Refused(_))));
        s.delete("Old.2024").unwrap();
        s.delete("Old").unwrap();
        assert!(matches!(s.delete("INBOX"), Err(StoreError::Refused(_))));
        assert!(s.create("../../x").is_err());
        s.set_subscribed("Archivio", true).unwrap();
        assert!(s.subscriptions().unwrap().contains(&"Archivio".to_string()));
        s.set_subscribed("Archivio", false).unwrap();
        assert!(!s.subscriptions().unwrap().contains(&"Archivio".to_string()));
    }
}
