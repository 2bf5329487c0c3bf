//! One process per run folder: an exclusive advisory lock on `RUN/run.lock`, held for the life
//! of the process. Advisory locks die with their process, so a lock left by a killed run is no
//! obstacle; the file keeps the holder's pid for the message a second process gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub const LOCK_FILE: &str = "run.lock";

/// The lock of a run folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `dir` (created if missing), or fails naming the folder and the pid of
    /// the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: until the lock is ours, the pid in it is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                bail!(
                    "{} is in use by another vit-train process (pid {}; it holds {}): one run \
                     per folder — wait for it to end or stop it, or choose another output.dir",
                    dir.display(),
                    if pid.is_empty() { "unknown" } else { pid },
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { _file: file, path })
    }
}
