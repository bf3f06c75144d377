//! Whether the invite index still matches the store (SPEC §7.2). With Prosody's internal
//! storage the host's invites are one file, `<data>/<host>/invite_token.dat`, which every
//! write replaces by a rename (a new inode; datamanager removes it when the map becomes
//! empty). Its identity (device, inode, size, modification and change times) is checked
//! before the index is trusted: a `stat` costs about a microsecond, a re-read of 10,000
//! invites 70 ms. Writes made in this process are accounted for: the identity after one
//! of our own writes, or after mod_invites stored invites announced by `invite-created`,
//! is taken as known — but only if the file was unchanged just before.
//! With SQL storage there is no file; per-token reads keep decisions exact there.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The identity of the store file at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileId {
    /// No file (no invites stored).
    Absent,
    /// The file as `stat` saw it.
    Present {
        /// `st_dev`.
        dev: u64,
        /// `st_ino`.
        ino: u64,
        /// `st_size`.
        size: u64,
        /// `st_mtime` in nanoseconds.
        mtime_ns: i128,
        /// `st_ctime` in nanoseconds.
        ctime_ns: i128,
    },
    /// `stat` failed for another reason: never equal to anything.
    Unknown,
}

impl FileId {
    /// The identity of `path` now.
    pub fn of(path: &Path) -> FileId {
        match fs::metadata(path) {
            Ok(m) => FileId::Present {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => FileId::Absent,
            Err(_) => FileId::Unknown,
        }
    }

    fn same(self, other: Option<FileId>) -> bool {
        self != FileId::Unknown && Some(self) == other
    }
}

/// The index's view of the store file.
#[derive(Debug)]
pub struct Freshness {
    path: Option<PathBuf>,
    /// The identity whose content the index holds (`None`: never loaded).
    known: Option<FileId>,
    /// Taken before a reload's read.
    loading: Option<FileId>,
    /// While invites announced by `invite-created` await their write: whether the file
    /// was unchanged when the first was announced.
    creation_base: Option<bool>,
}

impl Freshness {
    /// For the store file at `path`, or `None` when the store is not a file (SQL).
    pub fn new(path: Option<PathBuf>) -> Self {
        Freshness {
            path,
            known: None,
            loading: None,
            creation_base: None,
        }
    }

    /// True when the store is a file whose identity is tracked.
    pub fn tracks_file(&self) -> bool {
        self.path.is_some()
    }

    fn now(&self) -> Option<FileId> {
        self.path.as_deref().map(FileId::of)
    }

    /// True when the index must be reloaded before use: never loaded, or the file changed
    /// behind our back. Without a file: only before the first load.
    pub fn stale(&self) -> bool {
        match self.now() {
            Some(id) => !id.same(self.known),
            None => self.known.is_none(),
        }
    }

    /// A reload starts: the identity is taken before the store is read, so a write racing
    /// with the read is seen at the next check.
    pub fn load_begin(&mut self) {
        self.loading = Some(self.now().unwrap_or(FileId::Absent));
        self.creation_base = None;
    }

    /// The reload's read succeeded: the index holds the file as it was at `load_begin`.
    pub fn load_end(&mut self) {
        self.known = self.loading.take();
    }

    /// The reload failed: stay stale.
    pub fn load_abort(&mut self) {
        self.loading = None;
        self.known = None;
    }

    /// mod_invites announced an invite (`invite-created` fires before its write).
    pub fn creation_begin(&mut self) {
        if self.creation_base.is_none() {
            let fresh = self.now().is_none_or(|id| id.same(self.known));
            self.creation_base = Some(fresh);
        }
    }

    /// After the announced writes: true when the announced invites must be added to the
    /// index (the file changed, and only by them as far as can be known). False when
    /// nothing was written (the writes failed) or the file had changed before them (then
    /// [`Freshness::stale`] stays true and a reload reads them).
    pub fn creation_end(&mut self) -> bool {
        let Some(fresh_before) = self.creation_base.take() else {
            return false;
        };
        let Some(id) = self.now() else {
            return true;
        };
        if !fresh_before || id.same(self.known) {
            return false;
        }
        self.known = Some(id);
        true
    }

    /// Before one of our own writes: whether the index matches the file now.
    pub fn write_begin(&self) -> bool {
        self.creation_base.is_none() && !self.stale()
    }

    /// After our own write: the new identity is known if the file was fresh before.
    pub fn write_end(&mut self, fresh_before: bool) {
        if fresh_before && self.path.is_some() {
            self.known = self.now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "invites-register-freshness-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes like datamanager: a scratch file renamed over the target.
    fn store(path: &Path, content: &str) {
        let scratch = path.with_extension("dat~");
        fs::write(&scratch, content).unwrap();
        fs::rename(&scratch, path).unwrap();
    }

    fn loaded(path: &Path) -> Freshness {
        let mut f = Freshness::new(Some(path.to_owned()));
        assert!(f.stale(), "never loaded");
        f.load_begin();
        f.load_end();
        assert!(!f.stale());
        f
    }

    #[test]
    fn test_simple() {
        let dir = tmpdir("simple");
        let path = dir.join("invite_token.dat");
        let f = loaded(&path);
        store(&path, "return {};");
        assert!(f.stale(), "created behind our back");
        let mut f = loaded(&path);
        store(&path, "return {a=1};");
        assert!(f.stale(), "rewritten behind our back");
        f.load_begin();
        f.load_end();
        fs::remove_file(&path).unwrap();
        assert!(f.stale(), "removed behind our back");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn test_own_writes_are_known() {
        let dir = tmpdir("own");
        let path = dir.join("invite_token.dat");
        store(&path, "return {};");
        let mut f = loaded(&path);
        let fresh = f.write_begin();
        assert!(fresh);
        store(&path, "return {b=2};");
        f.write_end(fresh);
        assert!(!f.stale());
        // A change before our write must still cause a reload.
        store(&path, "return {c=3};");
        let fresh = f.write_begin();
        assert!(!fresh);
        store(&path, "return {d=4};");
        f.write_end(fresh);
        assert!(f.stale());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn test_announced_creations() {
        let dir = tmpdir("created");
        let path = dir.join("invite_token.dat");
        let mut f = loaded(&path);
        f.creation_begin();
        f.creation_begin();
        store(&path, "return {e=5};");
        assert!(f.creation_end(), "both announced invites were written");
        assert!(!f.stale());
        f.creation_begin();
        assert!(!f.creation_end(), "nothing written");
        assert!(!f.stale());
        store(&path, "return {f=6};");
        f.creation_begin();
        store(&path, "return {g=7};");
        assert!(!f.creation_end(), "the file had changed before");
        assert!(f.stale());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn test_no_file_is_sql() {
        let mut f = Freshness::new(None);
        assert!(!f.tracks_file());
        assert!(f.stale());
        f.load_begin();
        f.load_end();
        assert!(!f.stale());
        f.creation_begin();
        assert!(f.creation_end(), "SQL: announced invites are added at once");
        f.load_abort();
        assert!(f.stale());
    }
}
