//! The JSON Lines file sink: hash-chained records, size rotation, recovery at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::chain::{Chain, ChainKey, GENESIS, hex, parse_line};
use crate::event::{ECS_VERSION, SCHEMA_VERSION};
use crate::{AuditEvent, AuditSink};

/// The default size at which the active file is rotated: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// Audit records as JSON Lines in a file, each chained to the one before by its SHA-256 (see the
/// [`chain`](crate::chain) module docs), with size rotation.
///
/// - The active file is the configured path (`audit.jsonl`). When it reaches the maximum size it
///   is renamed to `audit.jsonl.<first sequence number, 20 digits>` and a new one is started;
///   rotated names sort in chain order.
/// - Every file starts with a `audit-file-start` record that continues the chain from the last
///   record of the previous file, so the files together form one chain and each file on its own
///   says what it follows.
/// - At start, an existing active file is rotated away and the chain continues from its last
///   complete record (a crash can leave half a line; `verify` reports it as an interrupted write).
/// - Writes are all-or-nothing per batch: a failed write is truncated back, so the writer's retry
///   never duplicates a record.
/// - Rotated files are kept forever unless [`keep_rotated`](JsonFileSinkBuilder::keep_rotated)
///   says otherwise.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use zerotrust_audit::JsonFileSink;
///
/// let dir = std::env::temp_dir().join(format!("zt-audit-doc-{}", std::process::id()));
/// let sink = JsonFileSink::builder(dir.join("audit.jsonl"))
///     .max_file_size(16 * 1024 * 1024)
///     .open()?;
/// assert_eq!(sink.path(), dir.join("audit.jsonl"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct JsonFileSink {
    path: PathBuf,
    max_size: u64,
    keep_rotated: Option<usize>,
    file: Option<File>,
    size: u64,
    first_seq: u64,
    chain: Chain,
    buf: Vec<u8>,
    record: Vec<u8>,
    /// Where the file's pages are still in the page cache: everything before was synced and
    /// handed back.
    cached_from: u64,
}

/// Builds a [`JsonFileSink`].
#[derive(Debug)]
#[must_use]
pub struct JsonFileSinkBuilder {
    path: PathBuf,
    max_size: u64,
    keep_rotated: Option<usize>,
    key: Option<ChainKey>,
}

impl JsonFileSinkBuilder {
    /// Rotates the active file once it reaches `bytes` (default 64 MiB; at least 4 KiB).
    ///
    /// ```
    /// let b = zerotrust_audit::JsonFileSink::builder("audit.jsonl").max_file_size(1 << 20);
    /// # let _ = b;
    /// ```
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes.max(4096);
        self
    }

    /// Deletes the oldest rotated files beyond `count`.
    ///
    /// # Warning
    /// Deleted records are gone: keep enough for your retention rules, and verify (or ship) files
    /// before they age out. The chain of the files kept still verifies; it then starts after the
    /// deleted ones.
    ///
    /// ```
    /// let b = zerotrust_audit::JsonFileSink::builder("audit.jsonl").keep_rotated(30);
    /// # let _ = b;
    /// ```
    pub fn keep_rotated(mut self, count: usize) -> Self {
        self.keep_rotated = Some(count);
        self
    }

    /// Links records with HMAC-SHA256 under `key` instead of plain SHA-256, so a chain can only
    /// be recomputed by a holder of the key.
    ///
    /// ```
    /// use zerotrust_audit::{ChainKey, JsonFileSink};
    ///
    /// let key = ChainKey::hmac_sha256(&[42u8; 32]).unwrap();
    /// let b = JsonFileSink::builder("audit.jsonl").chain_key(key);
    /// # let _ = b;
    /// ```
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Creates the directory if needed, continues the chain of earlier files, and starts a new
    /// active file.
    pub fn open(self) -> io::Result<JsonFileSink> {
        let dir = parent(&self.path);
        fs::create_dir_all(&dir)?;
        let name = file_name(&self.path)?;
        let mut previous: Option<PathBuf> = None;
        let mut last = None;
        if let Ok(meta) = fs::metadata(&self.path) {
            let (first, tail) = if meta.len() == 0 {
                (None, None)
            } else {
                scan(&self.path)?
            };
            match first {
                Some(first) => {
                    let rotated = dir.join(format!("{name}.{first:020}"));
                    rename_no_clobber(&self.path, &rotated)?;
                    last = tail;
                    previous = Some(rotated);
                }
                None => {
                    // Empty, or half of a start record from a crash: it holds no record, and the
                    // chain continues from the newest rotated file.
                    tracing::warn!(target: "zerotrust::audit", file = %self.path.display(), "audit file without a complete record removed at start");
                    fs::remove_file(&self.path)?;
                }
            }
        }
        if previous.is_none()
            && let Some(newest) = rotated_files(&dir, &name)?.pop()
        {
            last = scan(&newest)?.1;
            previous = Some(newest);
        }
        let chain = match last {
            Some((seq, hash)) => Chain::new(seq.saturating_add(1), hash, self.key),
            None => Chain::new(0, GENESIS, self.key),
        };
        let mut sink = JsonFileSink {
            path: self.path,
            max_size: self.max_size,
            keep_rotated: self.keep_rotated,
            file: None,
            size: 0,
            first_seq: chain.next_seq,
            chain,
            buf: Vec::new(),
            record: Vec::new(),
            cached_from: 0,
        };
        sink.start_file(previous.as_deref(), "startup")?;
        Ok(sink)
    }
}

impl JsonFileSink {
    /// A sink writing to `path` with the defaults (64 MiB files, all kept, SHA-256 chain).
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        Self::builder(path).open()
    }

    /// A builder for a sink writing to `path`.
    pub fn builder(path: impl Into<PathBuf>) -> JsonFileSinkBuilder {
        JsonFileSinkBuilder {
            path: path.into(),
            max_size: DEFAULT_MAX_FILE_SIZE,
            keep_rotated: None,
            key: None,
        }
    }

    /// The active file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new active file whose first record continues the chain.
    fn start_file(&mut self, previous: Option<&Path>, reason: &str) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&self.path)?;
        let header = serde_json::json!({
            "@timestamp": DateTime::<Utc>::from(SystemTime::now())
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            "message": "audit file started",
            "ecs": { "version": ECS_VERSION },
            "event": {
                "kind": "state",
                "category": ["process"],
                "type": ["start"],
                "action": "audit-file-start",
                "reason": reason,
            },
            "zerotrust": {
                "schema_version": SCHEMA_VERSION,
                "previous_file": previous
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned()),
            },
        });
        let mut chain = self.chain.clone();
        self.record.clear();
        serde_json::to_writer(&mut self.record, &header).map_err(io::Error::other)?;
        self.buf.clear();
        chain.seal(&self.record, &mut self.buf)?;
        if let Err(error) = file.write_all(&self.buf).and_then(|()| file.sync_data()) {
            drop(file);
            let _ = fs::remove_file(&self.path);
            return Err(error);
        }
        sync_dir(&parent(&self.path));
        self.first_seq = self.chain.next_seq;
        self.chain = chain;
        self.size = self.buf.len() as u64;
        self.cached_from = 0;
        self.file = Some(file);
        tracing::info!(
            target: "zerotrust::audit",
            file = %self.path.display(),
            seq = self.first_seq,
            "audit file started"
        );
        Ok(())
    }

    /// Closes the active file under its rotated name and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        let dir = parent(&self.path);
        let name = file_name(&self.path)?;
        let rotated = dir.join(format!("{name}.{:020}", self.first_seq));
        if let Some(file) = self.file.take() {
            file.sync_data()?;
            uncache_rest(&file, self.cached_from);
            if let Err(error) = rename_no_clobber(&self.path, &rotated) {
                self.file = Some(file);
                return Err(error);
            }
            tracing::info!(
                target: "zerotrust::audit",
                file = %rotated.display(),
                anchor = %hex(&self.chain.prev),
                seq = self.chain.next_seq.saturating_sub(1),
                "audit file rotated; chain anchor"
            );
        }
        self.start_file(Some(&rotated), "rotation")?;
        if let Some(keep) = self.keep_rotated {
            let mut files = rotated_files(&dir, &name)?;
            let excess = files.len().saturating_sub(keep);
            for old in files.drain(..excess) {
                fs::remove_file(&old)?;
            }
        }
        Ok(())
    }
}

impl AuditSink for JsonFileSink {
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
        if self.file.is_none() {
            // A rotation failed half-way: the old file is renamed, the new one not started.
            let previous = rotated_files(&parent(&self.path), &file_name(&self.path)?)?.pop();
            self.start_file(previous.as_deref(), "rotation")?;
        } else if self.size >= self.max_size {
            self.rotate()?;
        }
        let mut chain = self.chain.clone();
        self.buf.clear();
        for event in batch {
            let start = self.buf.len();
            event.write_json(&mut self.buf)?;
            chain.seal_at(&mut self.buf, start)?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("audit file not open"));
        };
        if let Err(error) = file.write_all(&self.buf) {
            // All or nothing: cut a partial write back, so the retried batch is not doubled.
            let _ = file.set_len(self.size);
            return Err(error);
        }
        self.size += self.buf.len() as u64;
        self.chain = chain;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        file.sync_data()?;
        self.cached_from = uncache(file, self.cached_from, self.size);
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        self.sync()?;
        tracing::info!(
            target: "zerotrust::audit",
            file = %self.path.display(),
            anchor = %hex(&self.chain.prev),
            seq = self.chain.next_seq.saturating_sub(1),
            "audit writer stopped; chain anchor"
        );
        Ok(())
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "audit path has no file name"))
}

/// Rotated files of `name` in `dir`, oldest first.
fn rotated_files(dir: &Path, name: &str) -> io::Result<Vec<PathBuf>> {
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if let Some(rest) = file.strip_prefix(&prefix)
            && rest.len() == 20
            && rest.bytes().all(|b| b.is_ascii_digit())
        {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A file's first sequence number and its last complete record's `(seq, hash)`.
#[allow(clippy::type_complexity)]
fn scan(path: &Path) -> io::Result<(Option<u64>, Option<(u64, [u8; 32])>)> {
    let reader = BufReader::new(File::open(path)?);
    let mut first = None;
    let mut last = None;
    for line in reader.split(b'\n') {
        let line = line?;
        if let Ok(link) = parse_line(&line, None) {
            first.get_or_insert(link.seq);
            last = Some((link.seq, link.hash));
        }
    }
    Ok((first, last))
}

/// Renames `from` to `to` unless `to` exists: an audit file is never overwritten.
fn rename_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    // A hard link fails if `to` exists, atomically; then the old name is removed.
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(error),
        Err(_) if !to.exists() => fs::rename(from, to),
        Err(error) => Err(error),
    }
}

fn sync_dir(dir: &Path) {
    // Makes a rename or a new file durable; not possible on every platform, hence best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Hands the synced pages of `file` in `from..to` back to the kernel, and answers where the
/// cached part now starts (the last, partial page stays: the next records go there).
///
/// The audit file is written once and read only when it is verified; without this, a busy
/// service's audit log fills the page cache at tens of MB/s and pushes out what the service
/// reads. (On the 2-core VM of BENCHMARKS.md, where fresh page-cache pages are expensive to come
/// by, it also cut the writer's CPU per record.) Only advice: a failure changes nothing.
#[cfg(target_os = "linux")]
fn uncache(file: &File, from: u64, to: u64) -> u64 {
    // The kernel drops whole pages only: whatever their size here (4 KiB, 16 KiB, 64 KiB).
    let page = u64::try_from(rustix::param::page_size())
        .unwrap_or(4096)
        .max(1);
    let end = to - to % page;
    if let Some(len) = std::num::NonZeroU64::new(end.saturating_sub(from)) {
        let _ = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed);
        end
    } else {
        from
    }
}

/// Hands back every page of a complete (rotated) file from `from` on, the last one included.
#[cfg(target_os = "linux")]
fn uncache_rest(file: &File, from: u64) {
    let _ = rustix::fs::fadvise(file, from, None, rustix::fs::Advice::DontNeed);
}

#[cfg(not(target_os = "linux"))]
fn uncache(_file: &File, from: u64, _to: u64) -> u64 {
    from
}

#[cfg(not(target_os = "linux"))]
fn uncache_rest(_file: &File, _from: u64) {}
