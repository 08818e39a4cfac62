//! The write-ahead log beside the artifact (`I.silica.wal`).
//!
//! Layout: a 20-byte header — magic `SILWAL01`, the xxh3-64 of the artifact bytes the log
//! applies to (u64 LE), crc32 of those 16 bytes (u32 LE) — then records
//! `[len u32 LE][crc32(payload) u32 LE][payload]`, one per update batch (payload: JSON).
//!
//! * Append: records are written, then `fdatasync`ed once per group before any of them is
//!   acknowledged ([`Wal::append`] + [`Wal::sync`]).
//! * Replay: records are read up to the first short or corrupt record (a torn tail from a
//!   crash mid-write); the file is truncated there, with a warning, never an error.
//! * Compaction ([`begin_rotation`], [`finish_rotation`]): the new log `I.silica.wal.next`
//!   (header = hash of the new artifact, then the records logged after the state that was
//!   compacted, which may still be running) is written before the artifact is renamed into
//!   place and renamed over the old log after it, so any crash leaves a log that matches
//!   the artifact on disk ([`open`] completes or discards an interrupted rotation).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SILWAL01";
/// Header bytes.
pub const HEADER: usize = 20;
/// Largest record accepted on replay (a larger length field means a torn or corrupt tail).
const MAX_RECORD: u32 = 1 << 30;

/// Path of the log of artifact `index`.
pub fn wal_path(index: &Path) -> PathBuf {
    with_suffix(index, ".wal")
}

fn with_suffix(index: &Path, suffix: &str) -> PathBuf {
    let mut s = index.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Hash identifying an artifact's bytes (recorded in the log header).
pub fn artifact_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn header(hash: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&hash.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The artifact hash in a log's header.
fn read_header(path: &Path) -> Result<u64> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h).map_err(|_| bad(path, "shorter than its header"))?;
    if &h[..8] != MAGIC || crc32fast::hash(&h[..16]).to_le_bytes() != h[16..] {
        return Err(bad(path, "not a silica write-ahead log (bad magic or header checksum)"));
    }
    Ok(u64::from_le_bytes(h[8..16].try_into().expect("8 bytes")))
}

fn bad(path: &Path, reason: &str) -> Error {
    Error::Format { path: path.to_path_buf(), reason: reason.to_string() }
}

/// fsync a directory so that renames in it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Write a log holding only a header, atomically (temp file + fsync + rename).
fn create(path: &Path, hash: u64) -> Result<()> {
    crate::model::format::write_atomic(path, &header(hash))?;
    sync_dir(path)
}

/// An open log, positioned at its end, for appending.
pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
}

/// What [`open`] found.
pub struct Opened {
    pub wal: Wal,
    /// Record payloads in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of torn tail discarded (0 when the log ended cleanly).
    pub truncated: u64,
}

/// Open (or create) the log of the artifact at `index`, whose bytes hash to `hash`; finish
/// or discard an interrupted rotation; read its records, truncating a torn tail.
///
/// Errors: a log that belongs to another artifact (named with both hashes: moving the log
/// away starts the server without its updates), I/O errors.
pub fn open(index: &Path, hash: u64) -> Result<Opened> {
    let path = wal_path(index);
    let next = with_suffix(index, ".wal.next");
    let next_matches = next.exists() && read_header(&next).map(|h| h == hash).unwrap_or(false);
    if !path.exists() {
        if next_matches {
            std::fs::rename(&next, &path).map_err(|e| Error::io(&path, e))?;
            sync_dir(&path)?;
        } else {
            create(&path, hash)?;
        }
    } else {
        let have = read_header(&path)?;
        if have != hash {
            if next_matches {
                // A compaction renamed its artifact into place but not its log: finish it.
                log::warn!("{}: finishing an interrupted compaction", path.display());
                std::fs::rename(&next, &path).map_err(|e| Error::io(&path, e))?;
                sync_dir(&path)?;
            } else {
                return Err(bad(
                    &path,
                    &format!(
                        "belongs to another artifact (log header hash {have:016x}, {} hashes to {hash:016x}); \
                         restore the matching artifact, or move the log away to start without its updates",
                        index.display()
                    ),
                ));
            }
        } else if next.exists() {
            // A compaction that failed before its artifact was renamed: the old pair stands.
            std::fs::remove_file(&next).map_err(|e| Error::io(&next, e))?;
        }
    }
    let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
    let (records, end) = parse_records(&bytes[HEADER.min(bytes.len())..]);
    let end = (HEADER + end) as u64;
    let truncated = bytes.len() as u64 - end;
    if truncated > 0 {
        log::warn!("{}: discarding a torn tail of {truncated} bytes after {} records", path.display(), records.len());
        file.set_len(end).map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(end)).map_err(|e| Error::io(&path, e))?;
    Ok(Opened { wal: Wal { path, file, len: end }, records, truncated })
}

/// Records of a log body and the byte length of the valid prefix.
pub fn parse_records(body: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while body.len() - at >= 8 {
        let len = u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(body[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_RECORD || body.len() - at - 8 < len as usize {
            break;
        }
        let payload = &body[at + 8..at + 8 + len as usize];
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload.to_vec());
        at += 8 + len as usize;
    }
    (out, at)
}

/// Frame one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(payload.len() + 8);
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

impl Wal {
    /// Write one record (not yet durable: call [`Wal::sync`] before acknowledging it).
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_RECORD as usize {
            return Err(Error::param("body", format!("update batch of {} bytes exceeds the log's record limit", payload.len())));
        }
        let r = frame(payload);
        self.file.write_all(&r).map_err(|e| Error::io(&self.path, e))?;
        self.len += r.len() as u64;
        Ok(())
    }

    /// Make every appended record durable (fdatasync).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// The bytes from `offset` (a record boundary) to the end of the log.
    pub fn read_from(&self, offset: u64) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; self.len.saturating_sub(offset) as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Log size in bytes (header included).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the log holds no records.
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER as u64
    }
}

/// Compaction step 1: write `I.silica.wal.next` for the new artifact's hash, followed by
/// `tail` (the framed records logged after the compacted state), durably.
pub fn begin_rotation(index: &Path, new_hash: u64, tail: &[u8]) -> Result<()> {
    let next = with_suffix(index, ".wal.next");
    let mut f = File::create(&next).map_err(|e| Error::io(&next, e))?;
    f.write_all(&header(new_hash)).map_err(|e| Error::io(&next, e))?;
    f.write_all(tail).map_err(|e| Error::io(&next, e))?;
    f.sync_all().map_err(|e| Error::io(&next, e))?;
    sync_dir(&next)
}

/// Compaction step 3 (after the artifact was renamed into place): the new log replaces
/// the old one; returns it open for appending, with its records (the tail).
pub fn finish_rotation(index: &Path, new_hash: u64) -> Result<Opened> {
    let (next, path) = (with_suffix(index, ".wal.next"), wal_path(index));
    std::fs::rename(&next, &path).map_err(|e| Error::io(&path, e))?;
    sync_dir(&path)?;
    open(index, new_hash)
}

/// Abandon a rotation whose artifact was not renamed into place.
pub fn abort_rotation(index: &Path) {
    let _ = std::fs::remove_file(with_suffix(index, ".wal.next"));
}

/// An exclusive lock on `I.silica.lock`, held while a server or `silica compact` owns the
/// artifact and its log. Released when dropped (or when the process dies).
pub struct Lock {
    _file: File,
}

/// Take the lock of artifact `index`, failing at once when another process holds it.
pub fn lock(index: &Path) -> Result<Lock> {
    let path = with_suffix(index, ".lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(bad(&path, "held by another silica process (serve or compact) on this artifact")),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let ix = dir.path().join("i.silica");
        let mut o = open(&ix, 7).unwrap();
        assert!(o.records.is_empty() && o.wal.is_empty());
        let payloads: Vec<Vec<u8>> = vec![b"{}".to_vec(), vec![], vec![0xAB; 1000]];
        for p in &payloads {
            o.wal.append(p).unwrap();
        }
        o.wal.sync().unwrap();
        let full = std::fs::read(wal_path(&ix)).unwrap();
        drop(o);
        let o = open(&ix, 7).unwrap();
        assert_eq!(o.records, payloads);
        assert_eq!(o.truncated, 0);
        drop(o);
        // Every possible torn tail: the valid prefix survives, the rest is cut, no error.
        let cuts = [HEADER + 3, HEADER + 10, HEADER + 10 + 8, full.len() - 1];
        for cut in cuts {
            std::fs::write(wal_path(&ix), &full[..cut]).unwrap();
            let o = open(&ix, 7).unwrap();
            let want = payloads.iter().scan(HEADER, |end, p| {
                *end += 8 + p.len();
                Some((*end, p.clone()))
            });
            let want: Vec<Vec<u8>> = want.filter(|(e, _)| *e <= cut).map(|(_, p)| p).collect();
            assert_eq!(o.records, want, "cut at {cut}");
            assert_eq!(std::fs::metadata(wal_path(&ix)).unwrap().len(), o.wal.len());
        }
        // A flipped byte inside the last record is a corrupt tail: dropped.
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 5] ^= 1;
        std::fs::write(wal_path(&ix), &bad).unwrap();
        assert_eq!(open(&ix, 7).unwrap().records, payloads[..2].to_vec());
    }

    #[test]
    fn foreign_logs_are_refused_and_rotations_complete() {
        let dir = tempfile::tempdir().unwrap();
        let ix = dir.path().join("i.silica");
        let mut o = open(&ix, 1).unwrap();
        o.wal.append(b"x").unwrap();
        o.wal.sync().unwrap();
        drop(o);
        let e = open(&ix, 2).err().unwrap().to_string();
        assert!(e.contains("belongs to another artifact"), "{e}");
        // Crash after the new artifact (hash 2) was renamed, before the log was: finished,
        // with the records logged after the compacted state.
        begin_rotation(&ix, 2, &frame(b"tail")).unwrap();
        let o = open(&ix, 2).unwrap();
        assert_eq!(o.records, vec![b"tail".to_vec()]);
        assert!(!with_suffix(&ix, ".wal.next").exists());
        drop(o);
        // Crash before the artifact was renamed: the stale .next is removed, the log stands.
        let mut o = open(&ix, 2).unwrap();
        o.wal.append(b"y").unwrap();
        o.wal.sync().unwrap();
        drop(o);
        begin_rotation(&ix, 3, &[]).unwrap();
        let o = open(&ix, 2).unwrap();
        assert_eq!(o.records, vec![b"tail".to_vec(), b"y".to_vec()]);
        assert_eq!(o.wal.read_from(HEADER as u64 + 12).unwrap(), frame(b"y"));
        assert!(!with_suffix(&ix, ".wal.next").exists());
        // Garbage instead of a log is an error naming the file, never a silent reset.
        std::fs::write(wal_path(&ix), b"hello").unwrap();
        assert!(open(&ix, 2).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let ix = dir.path().join("i.silica");
        let l = lock(&ix).unwrap();
        let e = lock(&ix).err().unwrap().to_string();
        assert!(e.contains("held by another silica process"), "{e}");
        drop(l);
        lock(&ix).unwrap();
    }
}
