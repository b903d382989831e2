//! A value the configuration reload may replace while the daemon runs.
//!
//! Readers take a snapshot (`Arc<T>`) and keep it as long as they need a
//! consistent view: a session keeps the settings and the TLS context it
//! started with, while the next connection, signature or job reads whatever
//! is current. Taking a snapshot is a read lock and an `Arc` clone, cheap
//! enough for every accepted connection and every signature.

use std::sync::{Arc, RwLock};

/// A shared, replaceable `Arc<T>`; clones share the same cell.
#[derive(Debug)]
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Live<T> {
        Live::from(Arc::new(value))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        // A panic while holding the write lock cannot leave a torn value:
        // the write is one pointer store, so a poisoned lock is still good.
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replace the value; snapshots already taken keep the old one.
    pub fn set(&self, value: Arc<T>) {
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

impl<T> From<Arc<T>> for Live<T> {
    fn from(value: Arc<T>) -> Live<T> {
        Live(Arc::new(RwLock::new(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_keep_their_value_and_clones_see_the_new_one() {
        let a = Live::new(1);
        let b = a.clone();
        let before = a.get();
        b.set(Arc::new(2));
        assert_eq!(*before, 1);
        assert_eq!(*a.get(), 2);
    }
}
