//! Verifying a chain of audit files: every record's own hash, every link, no gaps.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::chain::{ChainKey, Link, hex, parse_hex32, parse_line};

/// What a verification found wrong first. Each names the file and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A record's content does not match its hash: it was edited.
    #[error("{file}:{line}: record altered (its content does not match its hash)")]
    Altered {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
    },
    /// A record's hash is intact but the next record was chained to another version of it: it
    /// was edited and re-hashed.
    #[error(
        "{file}:{line}: record altered (the next record was chained to a different version of it)"
    )]
    Rehashed {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
    },
    /// Records are missing before this line.
    #[error(
        "{file}:{line}: {count} record(s) removed before this line (sequence {first}..={last} missing)"
    )]
    Removed {
        /// The file.
        file: PathBuf,
        /// The line after the gap.
        line: u64,
        /// How many records are missing.
        count: u64,
        /// The first missing sequence number.
        first: u64,
        /// The last missing sequence number.
        last: u64,
    },
    /// This record does not belong in the chain: the records around it link to each other.
    #[error("{file}:{line}: record inserted (not part of the chain)")]
    Inserted {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
    },
    /// A line that is not a chained record at all.
    #[error("{file}:{line}: not an audit record: {what}")]
    Malformed {
        /// The file.
        file: PathBuf,
        /// The line.
        line: u64,
        /// Why.
        what: &'static str,
    },
    /// The expected head (an anchor logged earlier) is not in the chain: records at the end were
    /// removed or rewritten.
    #[error(
        "the anchored head {head} is not in the chain (records at the end removed or rewritten)"
    )]
    HeadNotFound {
        /// The expected hash, hex.
        head: String,
    },
    /// A file could not be read.
    #[error("{file}: {message}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        message: String,
    },
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Files checked (in chain order).
    pub files: Vec<PathBuf>,
    /// The first record's sequence number and `prev` (hex; zeros when the chain starts there).
    pub first: Option<(u64, String)>,
    /// The last record's sequence number and hash (hex): the head to anchor.
    pub head: Option<(u64, String)>,
    /// Things worth knowing that are not tampering (an interrupted last write).
    pub warnings: Vec<String>,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok: {} records in {} file(s)",
            self.records,
            self.files.len()
        )?;
        if let (Some((first, prev)), Some((last, head))) = (&self.first, &self.head) {
            let start = if prev.bytes().all(|b| b == b'0') {
                "chain start".to_owned()
            } else {
                format!("after {prev}")
            };
            write!(f, ", sequence {first}..={last} ({start}), head {head}")?;
        }
        Ok(())
    }
}

/// Options for [`verify_files`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The chain's HMAC key, when the writer used one.
    pub key: Option<ChainKey>,
    /// A head hash logged earlier (an anchor): the chain must contain it.
    pub expect_head: Option<[u8; 32]>,
}

impl VerifyOptions {
    /// With the chain's key.
    pub fn key(mut self, key: ChainKey) -> Self {
        self.key = Some(key);
        self
    }

    /// With an anchor (64 hex digits) the chain must contain; `None` if it is not 64 hex digits.
    pub fn expect_head(mut self, hex: &str) -> Option<Self> {
        self.expect_head = Some(parse_hex32(hex.trim().as_bytes())?);
        Some(self)
    }
}

struct Record {
    file: Arc<Path>,
    line: u64,
    link: Link,
}

/// Verifies the chain through `files`, in chain order (files are sorted by their first record's
/// sequence number, so rotated files may be given in any order). Stops at the first problem.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// use zerotrust_audit::{VerifyOptions, verify_files};
///
/// let dir = std::env::temp_dir().join(format!("zt-verify-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = dir.join("empty.jsonl");
/// std::fs::write(&file, "")?;
/// let verified = verify_files(&[file], &VerifyOptions::default()).unwrap();
/// assert_eq!(verified.records, 0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn verify_files(files: &[PathBuf], options: &VerifyOptions) -> Result<Verified, ChainError> {
    let mut ordered = Vec::with_capacity(files.len());
    let mut warnings = Vec::new();
    for file in files {
        let noted = warnings.len();
        match first_seq(file, options.key.as_ref(), &mut warnings)? {
            Some(seq) => ordered.push((seq, file.clone())),
            None if warnings.len() == noted => {
                warnings.push(format!("{}: no records", file.display()));
            }
            None => {}
        }
    }
    ordered.sort();
    let mut records = RecordStream::new(ordered.iter().map(|(_, f)| f.clone()).collect(), options);
    let mut verified = Verified {
        records: 0,
        files: ordered.iter().map(|(_, f)| f.clone()).collect(),
        first: None,
        head: None,
        warnings,
    };
    let mut head_seen = options.expect_head.is_none();
    // The last two accepted records, newest last.
    let mut before: Option<Record> = None;
    let mut last: Option<Record> = None;
    let mut next = records.next_record()?;
    while let Some(current) = next.take() {
        next = records.next_record()?;
        if !current.link.hash_ok {
            return Err(ChainError::Altered {
                file: current.file.to_path_buf(),
                line: current.line,
            });
        }
        if let Some(a) = &last {
            if !links(&a.link, &current.link) {
                return Err(diagnose(before.as_ref(), a, &current, next.as_ref()));
            }
        } else {
            verified.first = Some((current.link.seq, hex(&current.link.prev)));
        }
        if options.expect_head == Some(current.link.hash) {
            head_seen = true;
        }
        verified.records += 1;
        before = last.replace(current);
    }
    verified.warnings.extend(records.warnings);
    if let Some(a) = &last {
        verified.head = Some((a.link.seq, hex(&a.link.hash)));
    }
    if !head_seen {
        return Err(ChainError::HeadNotFound {
            head: options.expect_head.map(|h| hex(&h)).unwrap_or_default(),
        });
    }
    Ok(verified)
}

fn links(a: &Link, b: &Link) -> bool {
    b.prev == a.hash && b.seq == a.seq.wrapping_add(1)
}

/// Names what happened at `current`, which does not link to `last`.
fn diagnose(
    before: Option<&Record>,
    last: &Record,
    current: &Record,
    next: Option<&Record>,
) -> ChainError {
    let at = |r: &Record| (r.file.to_path_buf(), r.line);
    // The record after `current` continues from `last`: `current` was slipped in.
    if next.is_some_and(|n| n.link.hash_ok && links(&last.link, &n.link)) {
        let (file, line) = at(current);
        return ChainError::Inserted { file, line };
    }
    // `current` continues from the record before `last`: `last` was slipped in.
    if before.is_some_and(|b| links(&b.link, &current.link)) {
        let (file, line) = at(last);
        return ChainError::Inserted { file, line };
    }
    let expected = last.link.seq.wrapping_add(1);
    if current.link.seq > expected {
        let (file, line) = at(current);
        return ChainError::Removed {
            file,
            line,
            count: current.link.seq - expected,
            first: expected,
            last: current.link.seq - 1,
        };
    }
    if current.link.seq == expected {
        let (file, line) = at(last);
        return ChainError::Rehashed { file, line };
    }
    let (file, line) = at(current);
    ChainError::Inserted { file, line }
}

fn io_error(file: &Path, error: &io::Error) -> ChainError {
    ChainError::Io {
        file: file.to_path_buf(),
        message: error.to_string(),
    }
}

/// The sequence number of a file's first record (`None` when it has none).
fn first_seq(
    file: &Path,
    key: Option<&ChainKey>,
    warnings: &mut Vec<String>,
) -> Result<Option<u64>, ChainError> {
    let reader = BufReader::new(File::open(file).map_err(|e| io_error(file, &e))?);
    let mut lines = reader.split(b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line = line.map_err(|e| io_error(file, &e))?;
        if line.is_empty() {
            continue;
        }
        let number = index as u64 + 1;
        return match parse_line(&line, key) {
            Ok(link) => Ok(Some(link.seq)),
            Err(_) if lines.peek().is_none() && !line.ends_with(b"}") => {
                warnings.push(interrupted(file, number));
                Ok(None)
            }
            Err(what) => Err(ChainError::Malformed {
                file: file.to_path_buf(),
                line: number,
                what,
            }),
        };
    }
    Ok(None)
}

fn interrupted(file: &Path, line: u64) -> String {
    format!(
        "{}:{line}: incomplete last line (a write was interrupted)",
        file.display()
    )
}

type Lines = std::iter::Enumerate<io::Split<BufReader<File>>>;

/// Records of several files, one after the other.
struct RecordStream<'o> {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(Arc<Path>, Lines)>,
    options: &'o VerifyOptions,
    warnings: Vec<String>,
}

impl<'o> RecordStream<'o> {
    fn new(files: Vec<PathBuf>, options: &'o VerifyOptions) -> Self {
        Self {
            files: files.into_iter(),
            current: None,
            options,
            warnings: Vec::new(),
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, ChainError> {
        loop {
            if self.current.is_none() {
                let Some(file) = self.files.next() else {
                    return Ok(None);
                };
                let opened = File::open(&file).map_err(|e| io_error(&file, &e))?;
                let lines = BufReader::new(opened).split(b'\n').enumerate();
                self.current = Some((Arc::from(file.as_path()), lines));
            }
            let Some((file, lines)) = self.current.as_mut() else {
                continue;
            };
            let Some((index, line)) = lines.next() else {
                self.current = None;
                continue;
            };
            let line = line.map_err(|e| io_error(file, &e))?;
            let number = index as u64 + 1;
            if line.is_empty() {
                continue;
            }
            match parse_line(&line, self.options.key.as_ref()) {
                Ok(link) => {
                    return Ok(Some(Record {
                        file: Arc::clone(file),
                        line: number,
                        link,
                    }));
                }
                Err(what) => {
                    // An unfinished last line is what a crash mid-write leaves; the writer starts
                    // a new file after it, linked to the last complete record.
                    let is_last = lines.next().is_none();
                    if is_last && !line.ends_with(b"}") {
                        self.warnings.push(interrupted(file, number));
                        self.current = None;
                        continue;
                    }
                    return Err(ChainError::Malformed {
                        file: file.to_path_buf(),
                        line: number,
                        what,
                    });
                }
            }
        }
    }
}
