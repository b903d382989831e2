//! The maildrop a POP3 session works on: the user's INBOX as the shared
//! mailbox model ([`crate::store::mailbox`]) saw it at login.
//!
//! RFC 1939 gives a session exclusive access to a fixed list of messages:
//! numbers never shift, and what arrives meanwhile waits for the next
//! session. The list here is that snapshot; the files stay where IMAP keeps
//! them (messages in `new/` are not moved, so IMAP still sees them as
//! \Recent). IMAP may expunge a message meanwhile: the snapshot keeps its
//! number and size, and reading or deleting it is refused cleanly.
//!
//! UIDL is `<UIDVALIDITY>.<UID>` of the IMAP UID list (`pecd-uidlist`): stable
//! across sessions and restarts, and the very number IMAP shows for the same
//! message. A rebuilt UID list (new UIDVALIDITY) changes every UIDL, exactly
//! as it makes IMAP clients resynchronise.
//!
//! Nothing here is async: callers run it on a blocking thread.

use std::io;

use crate::store::mailbox::{Folder, MsgEntry, UserStore};

/// One message of the snapshot.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The mailbox model's entry (UID, file name).
    pub msg: MsgEntry,
    /// Size in octets at login (the stored file, byte for byte).
    pub size: u64,
    /// Marked by `DELE` (until `RSET` or the end of the session).
    pub deleted: bool,
    /// Sent in full by `RETR` (gets \Seen at `QUIT`).
    pub retrieved: bool,
}

/// Why a message number is refused; the text goes after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No such message number in this session.
    NoSuchMessage,
    /// Already marked deleted.
    Deleted,
    /// Removed by another session (IMAP EXPUNGE) after the login.
    Gone,
}

impl Refused {
    /// The human text of the `-ERR` line.
    pub fn text(self) -> &'static str {
        match self {
            Refused::NoSuchMessage => "no such message",
            Refused::Deleted => "message already deleted",
            Refused::Gone => "message was removed by another session",
        }
    }
}

/// What `QUIT` did in the UPDATE state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated {
    /// Messages removed (or already gone).
    pub removed: usize,
    /// Messages left in the maildrop.
    pub left: usize,
}

/// The locked snapshot of one user's INBOX.
#[derive(Debug)]
pub struct Maildrop {
    folder: Folder,
    uidvalidity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// Take the snapshot: sync the UID list (without taking `new/`) and
    /// size every file. A file that vanishes while being sized is left out.
    pub fn open(store: &UserStore) -> io::Result<Maildrop> {
        let folder = store
            .folder("INBOX")
            .map_err(|e| io::Error::other(e.to_string()))?;
        let snap = folder.sync(false)?;
        let mut entries = Vec::with_capacity(snap.msgs.len());
        for msg in snap.msgs {
            match folder.size(&msg) {
                Ok(size) => entries.push(Entry {
                    msg,
                    size,
                    deleted: false,
                    retrieved: false,
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Maildrop {
            folder,
            uidvalidity: snap.uidvalidity,
            entries,
        })
    }

    /// Messages not marked deleted, and their total size (`STAT`).
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, s), (_, e)| (n + 1, s + e.size))
    }

    /// Every message not marked deleted, with its number (from 1).
    pub fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .map(|(i, e)| (i + 1, e))
    }

    /// Message `n` (from 1), unless unknown or marked deleted.
    pub fn get(&self, n: usize) -> Result<&Entry, Refused> {
        let e = n
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .ok_or(Refused::NoSuchMessage)?;
        if e.deleted {
            return Err(Refused::Deleted);
        }
        Ok(e)
    }

    /// The unique-id listing of a message.
    pub fn uidl(&self, e: &Entry) -> String {
        format!("{}.{}", self.uidvalidity, e.msg.uid)
    }

    /// Open message `n` for reading; `Gone` if another session removed it.
    pub fn open_message(
        &self,
        n: usize,
    ) -> Result<crate::store::mailbox::MessageReader, OpenError> {
        let e = self.get(n).map_err(OpenError::Refused)?;
        let gone = |err: io::Error| {
            if err.kind() == io::ErrorKind::NotFound {
                OpenError::Refused(Refused::Gone)
            } else {
                OpenError::Io(err)
            }
        };
        self.folder.open(&e.msg).map_err(gone)
    }

    /// Note that message `n` was retrieved in full.
    pub fn mark_retrieved(&mut self, n: usize) {
        if let Some(e) = n.checked_sub(1).and_then(|i| self.entries.get_mut(i)) {
            e.retrieved = true;
        }
    }

    /// `DELE n`: mark it; a message another session already removed is refused.
    pub fn dele(&mut self, n: usize) -> Result<(), OpenError> {
        let e = self.get(n).map_err(OpenError::Refused)?;
        match self.folder.contains(&e.msg) {
            Ok(true) => {}
            Ok(false) => return Err(OpenError::Refused(Refused::Gone)),
            Err(err) => return Err(OpenError::Io(err)),
        }
        self.entries[n - 1].deleted = true;
        Ok(())
    }

    /// `RSET`: unmark every deletion.
    pub fn rset(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// The UPDATE state (`QUIT` after login): remove the marked messages and
    /// flag the retrieved ones \Seen, so IMAP shows them read. Stops at the
    /// first failure, which the caller reports with `-ERR`.
    pub fn update(&self) -> io::Result<Updated> {
        let mut removed = 0;
        let mut left = 0;
        for e in &self.entries {
            if e.deleted {
                self.folder.remove(&e.msg)?;
                removed += 1;
                continue;
            }
            left += 1;
            if e.retrieved && !e.msg.flags.seen {
                let mut flags = e.msg.flags.clone();
                flags.seen = true;
                match self.folder.set_flags(&e.msg, &flags) {
                    Ok(_) => {}
                    // Expunged meanwhile: nothing to flag.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(Updated { removed, left })
    }
}

/// Why a message could not be opened or deleted.
#[derive(Debug)]
pub enum OpenError {
    /// Refused for the client (`-ERR`).
    Refused(Refused),
    /// File-system failure.
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn setup(n: usize) -> (tempfile::TempDir, UserStore) {
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::mailbox::Mailboxes::at(d.path(), "mx.pec.test")
            .open("mario@pec.test")
            .unwrap();
        for i in 0..n {
            let name = format!("{}.M1P1Q{i}.h", 1000 + i);
            fs::write(
                s.dir_for_tests().join("new").join(name),
                format!("Subject: {i}\r\n\r\nbody {i}\r\n"),
            )
            .unwrap();
        }
        (d, s)
    }

    #[test]
    fn snapshot_numbers_sizes_and_uidl_match_the_imap_model() {
        let (_d, s) = setup(3);
        let m = Maildrop::open(&s).unwrap();
        assert_eq!(m.stat(), (3, 3 * 22));
        // The files stay in new/: IMAP still sees them as \Recent.
        assert_eq!(
            fs::read_dir(s.dir_for_tests().join("new")).unwrap().count(),
            3
        );
        let imap = s.folder("INBOX").unwrap().sync(true).unwrap();
        let uidls: Vec<String> = m.live().map(|(_, e)| m.uidl(e)).collect();
        let want: Vec<String> = imap
            .msgs
            .iter()
            .map(|x| format!("{}.{}", imap.uidvalidity, x.uid))
            .collect();
        assert_eq!(uidls, want);
        // Stable in the next session, after IMAP moved the files to cur/.
        let again = Maildrop::open(&s).unwrap();
        let uidls2: Vec<String> = again.live().map(|(_, e)| again.uidl(e)).collect();
        assert_eq!(uidls, uidls2);
    }

    #[test]
    fn dele_rset_and_update_remove_only_what_was_marked() {
        let (_d, s) = setup(3);
        let mut m = Maildrop::open(&s).unwrap();
        m.dele(2).unwrap();
        assert_eq!(m.get(2).unwrap_err(), Refused::Deleted);
        assert!(matches!(
            m.dele(2),
            Err(OpenError::Refused(Refused::Deleted))
        ));
        assert_eq!(m.get(4).unwrap_err(), Refused::NoSuchMessage);
        assert_eq!(m.get(0).unwrap_err(), Refused::NoSuchMessage);
        m.rset();
        assert_eq!(m.stat().0, 3);
        m.dele(1).unwrap();
        m.mark_retrieved(3);
        assert_eq!(
            m.update().unwrap(),
            Updated {
                removed: 1,
                left: 2
            }
        );
        let after = s.folder("INBOX").unwrap().sync(false).unwrap();
        assert_eq!(after.msgs.len(), 2);
        assert!(after.msgs.iter().find(|x| x.uid == 3).unwrap().flags.seen);
        assert!(!after.msgs.iter().find(|x| x.uid == 2).unwrap().flags.seen);
    }

    #[test]
    fn concurrent_imap_expunge_and_delivery_keep_the_snapshot() {
        let (_d, s) = setup(2);
        let mut m = Maildrop::open(&s).unwrap();
        let inbox = s.folder("INBOX").unwrap();
        let snap = inbox.sync(true).unwrap();
        inbox.remove(&snap.msgs[0]).unwrap();
        fs::write(s.dir_for_tests().join("new/2000.M1P1Q9.h"), b"late\r\n").unwrap();
        // Numbers and sizes as at login; the removed one is refused cleanly.
        assert_eq!(m.stat(), (2, 44));
        assert!(matches!(
            m.open_message(1),
            Err(OpenError::Refused(Refused::Gone))
        ));
        assert!(matches!(m.dele(1), Err(OpenError::Refused(Refused::Gone))));
        assert!(m.open_message(2).is_ok());
        m.dele(2).unwrap();
        m.update().unwrap();
        // The late arrival is there for the next session, nothing else.
        let next = Maildrop::open(&s).unwrap();
        assert_eq!(next.stat(), (1, 6));
    }
}
