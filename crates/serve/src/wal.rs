//! The write-ahead log beside the artifact (`I.silica.wal`).
//!
//! Layout: a 28-byte header — magic `SILWAL02`, the xxh3-64 of the artifact bytes the log
//! applies to (u64 LE), the *base version* (u64 LE: update batches acknowledged before the
//! artifact was written, so a snapshot's `version` keeps growing across compactions and
//! restarts), crc32 of those 24 bytes (u32 LE) — then records
//! `[len u32 LE][crc32(payload) u32 LE][payload]`, one per update batch (payload: JSON).
//! Logs with the 20-byte `SILWAL01` header (no base version: 0) are still read; rotation
//! writes the new header.
//!
//! * Append: records are written, then `fdatasync`ed once per group before any of them is
//!   acknowledged ([`Wal::append`] + [`Wal::sync`]).
//! * Replay: records are read up to the first short or corrupt record. When nothing after
//!   it parses as a record (a torn tail from a crash mid-write: only the final record is
//!   damaged) the file is truncated there, with a warning. When a valid record follows the
//!   damage, acknowledged batches would be lost: [`open`] refuses with
//!   [`Error::WalCorrupt`] (byte offset, records after it) unless asked to recover, which
//!   moves the log aside to `I.silica.wal.damaged-<offset>` (never deleted) and keeps the
//!   records before the damage.
//! * Compaction ([`begin_rotation`], [`finish_rotation`]): the new log `I.silica.wal.next`
//!   (header = hash of the new artifact, then the records logged after the state that was
//!   compacted, which may still be running) is written before the artifact is renamed into
//!   place and renamed over the old log after it, so any crash leaves a log that matches
//!   the artifact on disk ([`open`] completes or discards an interrupted rotation).

use silica_core::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SILWAL02";
const MAGIC_V1: &[u8; 8] = b"SILWAL01";
/// Header bytes of a log this version writes.
pub const HEADER: usize = 28;
const HEADER_V1: usize = 20;
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

fn header(hash: u64, base_version: u64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&hash.to_le_bytes());
    h[16..24].copy_from_slice(&base_version.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a log's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    hash: u64,
    base_version: u64,
    len: usize,
}

fn read_header(path: &Path) -> Result<Header> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = [0u8; HEADER];
    let n = f.read(&mut h).map_err(|e| Error::io(path, e))?;
    let n = n + f.read(&mut h[n..]).map_err(|e| Error::io(path, e))?;
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let crc_ok = |end: usize| crc32fast::hash(&h[..end]).to_le_bytes() == h[end..end + 4];
    if n >= HEADER && &h[..8] == MAGIC && crc_ok(24) {
        Ok(Header { hash: u64_at(8), base_version: u64_at(16), len: HEADER })
    } else if n >= HEADER_V1 && &h[..8] == MAGIC_V1 && crc_ok(16) {
        Ok(Header { hash: u64_at(8), base_version: 0, len: HEADER_V1 })
    } else if n < HEADER_V1 {
        Err(bad(path, "shorter than its header"))
    } else {
        Err(bad(path, "not a silica write-ahead log (bad magic or header checksum)"))
    }
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
fn create(path: &Path, hash: u64, base_version: u64) -> Result<()> {
    silica_core::model::format::write_atomic(path, &header(hash, base_version))?;
    sync_dir(path)
}

/// An open log, positioned at its end, for appending.
pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
    /// This log's header bytes (28, or 20 for a `SILWAL01` log).
    header_len: u64,
}

/// What [`open`] found.
pub struct Opened {
    pub wal: Wal,
    /// Record payloads in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of torn tail discarded (0 when the log ended cleanly).
    pub truncated: u64,
    /// Where a damaged log was moved by `recover` (None when it was intact or only torn).
    pub moved_aside: Option<PathBuf>,
    /// Update batches acknowledged before the artifact was written (see the module docs):
    /// the version of the state the log's first record applies to.
    pub base_version: u64,
}

/// Open (or create) the log of the artifact at `index`, whose bytes hash to `hash`; finish
/// or discard an interrupted rotation; read its records, truncating a torn tail.
///
/// Errors: a log that belongs to another artifact (named with both hashes: moving the log
/// away starts the server without its updates), a damaged record followed by intact ones
/// ([`Error::WalCorrupt`]; see [`open_with`]), I/O errors.
pub fn open(index: &Path, hash: u64) -> Result<Opened> {
    open_with(index, hash, false)
}

/// Path a damaged log is moved to by recovery: `I.silica.wal.damaged-<offset>` (a suffix
/// `.1`, `.2`, ... when that name is taken, so no earlier copy is overwritten).
fn aside_path(path: &Path, offset: u64) -> PathBuf {
    let base = with_suffix(path, &format!(".damaged-{offset}"));
    (0..).map(|i| if i == 0 { base.clone() } else { with_suffix(&base, &format!(".{i}")) }).find(|p| !p.exists()).expect("a free name")
}

/// [`open`]; with `recover`, a log damaged before its final record is moved aside (see the
/// module docs) and a new log holding the records before the damage takes its place.
pub fn open_with(index: &Path, hash: u64, recover: bool) -> Result<Opened> {
    let path = wal_path(index);
    let next = with_suffix(index, ".wal.next");
    let next_matches = next.exists() && read_header(&next).map(|h| h.hash == hash).unwrap_or(false);
    if !path.exists() {
        if next_matches {
            std::fs::rename(&next, &path).map_err(|e| Error::io(&path, e))?;
            sync_dir(&path)?;
        } else {
            create(&path, hash, 0)?;
        }
    } else {
        let have = read_header(&path)?.hash;
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
    let head = read_header(&path)?;
    let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
    let body = &bytes[head.len.min(bytes.len())..];
    let (records, end) = parse_records(body);
    if let Some(next) = next_record(body, end + 1) {
        let offset = (head.len + end) as u64;
        let after = parse_records(&body[next..]).0.len();
        if !recover {
            return Err(Error::WalCorrupt { path, offset, before: records.len(), after });
        }
        let aside = aside_path(&path, offset);
        std::fs::rename(&path, &aside).map_err(|e| Error::io(&aside, e))?;
        let mut fresh = header(head.hash, head.base_version).to_vec();
        records.iter().for_each(|r| fresh.extend_from_slice(&frame(r)));
        silica_core::model::format::write_atomic(&path, &fresh)?;
        sync_dir(&path)?;
        log::warn!(
            "{}: damaged record at byte {offset}; moved the log to {} ({after} records after the damage are not replayed) and kept the {} records before it",
            path.display(),
            aside.display(),
            records.len()
        );
        let mut o = open_with(index, hash, false)?;
        o.moved_aside = Some(aside);
        return Ok(o);
    }
    let end = (head.len + end) as u64;
    let truncated = bytes.len() as u64 - end;
    if truncated > 0 {
        log::warn!("{}: discarding a torn tail of {truncated} bytes after {} records", path.display(), records.len());
        file.set_len(end).map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(end)).map_err(|e| Error::io(&path, e))?;
    Ok(Opened {
        wal: Wal { path, file, len: end, header_len: head.len as u64 },
        records,
        truncated,
        moved_aside: None,
        base_version: head.base_version,
    })
}

/// The record at `at`, when one with a valid crc and a non-empty payload starts there: its
/// total length. (A batch is never empty, and 8 zero bytes, as a crash can leave after the
/// last write, would frame a "valid" empty record.)
fn record_at(body: &[u8], at: usize) -> Option<usize> {
    let head = body.get(at..at + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    let payload = body.get(at + 8..(at + 8).checked_add(len as usize)?)?;
    (len > 0 && len <= MAX_RECORD && crc32fast::hash(payload) == crc).then_some(8 + len as usize)
}

/// First offset >= `from` where a record starts: evidence that the damage before it is
/// not a torn tail.
fn next_record(body: &[u8], from: usize) -> Option<usize> {
    (from..body.len().saturating_sub(8)).find(|&at| record_at(body, at).is_some())
}

/// Records of a log body and the byte length of the valid prefix.
pub fn parse_records(body: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(n) = record_at(body, at) {
        out.push(body[at + 8..at + n].to_vec());
        at += n;
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
        if payload.is_empty() {
            return Err(Error::param("body", "an empty update batch cannot be logged"));
        }
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
        self.len <= self.header_len
    }
}

/// Compaction step 1: write `I.silica.wal.next` for the new artifact's hash and
/// `base_version` (batches folded into it), followed by `tail` (the framed records logged
/// after the compacted state), durably.
pub fn begin_rotation(index: &Path, new_hash: u64, base_version: u64, tail: &[u8]) -> Result<()> {
    let next = with_suffix(index, ".wal.next");
    let mut f = File::create(&next).map_err(|e| Error::io(&next, e))?;
    f.write_all(&header(new_hash, base_version)).map_err(|e| Error::io(&next, e))?;
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
        let payloads: Vec<Vec<u8>> = vec![b"{}".to_vec(), vec![0x20], vec![0xAB; 1000]];
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
        let cuts = [HEADER + 3, HEADER + 10, HEADER + 10 + 9, full.len() - 1];
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
        begin_rotation(&ix, 2, 40, &frame(b"tail")).unwrap();
        let o = open(&ix, 2).unwrap();
        assert_eq!(o.records, vec![b"tail".to_vec()]);
        assert_eq!(o.base_version, 40, "the base version travels with the rotated log");
        assert!(!with_suffix(&ix, ".wal.next").exists());
        drop(o);
        // Crash before the artifact was renamed: the stale .next is removed, the log stands.
        let mut o = open(&ix, 2).unwrap();
        o.wal.append(b"y").unwrap();
        o.wal.sync().unwrap();
        drop(o);
        begin_rotation(&ix, 3, 99, &[]).unwrap();
        let o = open(&ix, 2).unwrap();
        assert_eq!(o.records, vec![b"tail".to_vec(), b"y".to_vec()]);
        assert_eq!(o.base_version, 40, "an abandoned rotation changes nothing");
        assert_eq!(o.wal.read_from(HEADER as u64 + 12).unwrap(), frame(b"y"));
        assert!(!with_suffix(&ix, ".wal.next").exists());
        // Garbage instead of a log is an error naming the file, never a silent reset.
        std::fs::write(wal_path(&ix), b"hello").unwrap();
        assert!(open(&ix, 2).is_err());
    }

    #[test]
    fn version_1_logs_are_read_with_base_version_0() {
        let dir = tempfile::tempdir().unwrap();
        let ix = dir.path().join("i.silica");
        let mut v1 = b"SILWAL01".to_vec();
        v1.extend_from_slice(&5u64.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(wal_path(&ix), &v1).unwrap();
        let mut o = open(&ix, 5).unwrap();
        assert!(o.wal.is_empty() && o.records.is_empty() && o.base_version == 0);
        o.wal.append(b"a").unwrap();
        o.wal.sync().unwrap();
        assert!(!o.wal.is_empty());
        drop(o);
        let o = open(&ix, 5).unwrap();
        assert_eq!((o.records, o.base_version, o.wal.len()), (vec![b"a".to_vec()], 0, (HEADER_V1 + 9) as u64));
        assert!(open(&ix, 6).is_err(), "the v1 header's hash is checked too");
        // A v1 magic with a v2-sized body, or a bad checksum, is not a log.
        let mut broken = v1.clone();
        broken[17] ^= 1;
        std::fs::write(wal_path(&ix), &broken).unwrap();
        assert!(open(&ix, 5).is_err());
    }

    /// A log of `n` random JSON-ish records; returns the payloads and each record's offset.
    fn random_log(ix: &Path, seed: u64, n: usize) -> (Vec<Vec<u8>>, Vec<usize>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut o = open(ix, 9).unwrap();
        let payloads: Vec<Vec<u8>> =
            (0..n).map(|_| (0..rng.random_range(1..300)).map(|_| rng.random_range(b' '..=b'~')).collect()).collect();
        let mut offsets = Vec::new();
        let mut at = HEADER;
        for p in &payloads {
            offsets.push(at);
            at += 8 + p.len();
            o.wal.append(p).unwrap();
        }
        o.wal.sync().unwrap();
        (payloads, offsets)
    }

    #[test]
    fn damage_before_the_last_record_is_refused_not_truncated() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for trial in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let ix = dir.path().join("i.silica");
            let n = rng.random_range(2..12);
            let (payloads, offsets) = random_log(&ix, trial, n);
            let good = std::fs::read(wal_path(&ix)).unwrap();
            // Flip one bit anywhere in record j (< n - 1): its length, crc or payload.
            let j = rng.random_range(0..n - 1);
            let end = offsets[j] + 8 + payloads[j].len();
            let mut bad = good.clone();
            let at = rng.random_range(offsets[j]..end);
            bad[at] ^= 1 << rng.random_range(0..8);
            std::fs::write(wal_path(&ix), &bad).unwrap();
            match open(&ix, 9) {
                Err(e @ Error::WalCorrupt { offset, before, after, .. }) => {
                    assert_eq!((offset, before, after), (offsets[j] as u64, j, n - 1 - j), "trial {trial}");
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("byte offset {}", offsets[j])) && msg.contains("--wal-recover"), "{msg}");
                }
                Err(e) => panic!("trial {trial}: wrong error {e}"),
                Ok(_) => panic!("trial {trial}: a damaged middle record was accepted"),
            }
            assert_eq!(std::fs::read(wal_path(&ix)).unwrap(), bad, "a refused log is left untouched");
            // Recovery: the damaged log is moved aside byte for byte, the prefix is kept.
            let o = open_with(&ix, 9, true).unwrap();
            assert_eq!(o.records, payloads[..j].to_vec());
            let aside = o.moved_aside.clone().unwrap();
            assert_eq!(aside, with_suffix(&wal_path(&ix), &format!(".damaged-{}", offsets[j])));
            assert_eq!(std::fs::read(&aside).unwrap(), bad);
            drop(o);
            let o = open(&ix, 9).unwrap();
            assert_eq!((o.records.len(), o.truncated, o.moved_aside.is_none()), (j, 0, true), "the recovered log is clean");
        }
    }

    #[test]
    fn damage_in_the_final_record_is_cut() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        for trial in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let ix = dir.path().join("i.silica");
            let n = rng.random_range(1..8);
            let (payloads, offsets) = random_log(&ix, 100 + trial, n);
            let mut bytes = std::fs::read(wal_path(&ix)).unwrap();
            let last = offsets[n - 1];
            if trial % 2 == 0 {
                let at = rng.random_range(last..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            } else {
                bytes.truncate(rng.random_range(last + 1..bytes.len()));
            }
            std::fs::write(wal_path(&ix), &bytes).unwrap();
            let o = open(&ix, 9).unwrap();
            assert_eq!(o.records, payloads[..n - 1].to_vec(), "trial {trial}");
            assert_eq!((o.wal.len(), o.moved_aside.is_none()), (last as u64, true));
            // Zeros after the last record (a crash can leave them) are a torn tail too.
            drop(o);
            let mut z = std::fs::read(wal_path(&ix)).unwrap();
            z.extend_from_slice(&[0u8; 64]);
            std::fs::write(wal_path(&ix), &z).unwrap();
            assert_eq!(open(&ix, 9).unwrap().records.len(), n - 1);
        }
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
