//! Tamper evidence and rotation, on records that went through the whole pipeline: an axum
//! `Router` behind `AuditLogLayer`, the writer thread, and a `JsonFileSink` in a fresh directory.
//! Each test edits, removes, inserts or cuts lines the way an attacker (or a crash) would, and
//! checks that `verify_files` and the `zerotrust-audit verify` binary name exactly what happened.
//!
//! Line numbers are 1-based; line 1 of every file is its `audit-file-start` record, so request
//! `i` (0-based) of a fresh log is on line `i + 2` with sequence number `i + 1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use serde_json::Value;
use tower::ServiceExt;
use zerotrust_audit::{
    Audit, AuditLogLayer, ChainError, ChainKey, JsonFileSink, VerifyOptions, verify_files,
};

/// A generous bound for anything that should be quick (a request, a flush, a shutdown).
const BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zt-audit-chain-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn log(&self) -> PathBuf {
        self.0.join("audit.jsonl")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not complete within {BOUND:?}"))
}

fn app(audit: &Audit) -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(AuditLogLayer::new(audit.clone()))
}

/// Sends `requests` requests through the layer into `sink`, then flushes and shuts down.
///
/// Batches are small: a file is rotated before a batch once it reached its maximum size, so
/// small batches make rotation at 4 KiB happen every few records however fast the writer runs.
async fn write_log(sink: JsonFileSink, requests: usize) {
    let audit = Audit::builder().sink(sink).max_batch(4).start().unwrap();
    let app = app(&audit);
    for i in 0..requests {
        let request = Request::get(format!("/items/{i}"))
            .body(Body::empty())
            .unwrap();
        let response = within("a request", app.clone().oneshot(request))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    within("flush", audit.flush()).await.unwrap();
    within("shutdown", audit.shutdown()).await.unwrap();
}

/// A fresh plain (SHA-256) log of `requests` records plus its start record.
async fn plain_log(dir: &TempDir, requests: usize) -> PathBuf {
    let path = dir.log();
    write_log(JsonFileSink::open(&path).unwrap(), requests).await;
    path
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.ends_with('\n'),
        "{} ends with a newline",
        path.display()
    );
    text.lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn line(lines: &[String], number: usize) -> &str {
    lines
        .get(number - 1)
        .unwrap_or_else(|| panic!("there is no line {number}"))
}

/// The member of `value` at the JSON pointer `pointer` (`Null` when absent).
fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    value.pointer(pointer).unwrap_or(&Value::Null)
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// `(seq, prev, hash)` of a record.
fn chain_of(line: &str) -> (u64, String, String) {
    let v = json(line);
    (
        at(&v, "/zerotrust/chain/seq").as_u64().unwrap(),
        at(&v, "/zerotrust/chain/prev").as_str().unwrap().to_owned(),
        at(&v, "/zerotrust/chain/hash").as_str().unwrap().to_owned(),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What an attacker without the key can do: rewrite the chain fields of `line` with `seq` and
/// `prev` and a correct SHA-256 of the result.
fn reseal(line: &str, seq: u64, prev: &str) -> String {
    let at = line.rfind(r#","chain":{"#).expect("a chained record");
    let (body, _) = line.split_at(at);
    let mut out = format!(r#"{body},"chain":{{"seq":{seq},"prev":"{prev}""#);
    let hash = sha256_hex(out.as_bytes());
    out.push_str(&format!(r#","hash":"{hash}"}}}}}}"#));
    out
}

/// `line` with `from` replaced by `to` (which must occur), chain fields untouched.
fn edit(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{line} contains {from}");
    line.replacen(from, to, 1)
}

/// Replaces line `number` (1-based) with `f` of it.
fn change(lines: &mut [String], number: usize, f: impl FnOnce(&str) -> String) {
    let slot = lines
        .get_mut(number - 1)
        .unwrap_or_else(|| panic!("there is no line {number}"));
    *slot = f(slot);
}

/// The re-hash attack: another status, and the record's own SHA-256 recomputed to match.
fn rehash_with_another_status(line: &str) -> String {
    let (seq, prev, _) = chain_of(line);
    reseal(
        &edit(line, r#""status_code":200"#, r#""status_code":403"#),
        seq,
        &prev,
    )
}

fn verify(files: &[PathBuf]) -> Result<zerotrust_audit::Verified, ChainError> {
    verify_files(files, &VerifyOptions::default())
}

/// The log files in chain order: rotated ones (`audit.jsonl.<20 digits>`) sorted, then the active.
fn log_files(dir: &TempDir) -> Vec<PathBuf> {
    let mut rotated: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit.jsonl."))
        })
        .collect();
    rotated.sort();
    let active = dir.log();
    if active.exists() {
        rotated.push(active);
    }
    rotated
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zerotrust-audit"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn key() -> ChainKey {
    ChainKey::hmac_sha256(b"0123456789abcdef0123456789abcdef").unwrap()
}

// ---------------------------------------------------------------------------------------------
// A single file
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_log_verifies_with_its_count_and_head() {
    let dir = TempDir::new("clean");
    let path = plain_log(&dir, 10).await;
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 11, "one start record and ten request records");

    let start = json(line(&lines, 1));
    assert_eq!(at(&start, "/event/action"), "audit-file-start");
    assert_eq!(at(&start, "/zerotrust/previous_file"), &Value::Null);
    for (i, l) in lines.iter().enumerate() {
        let (seq, _, _) = chain_of(l);
        assert_eq!(seq, i as u64, "sequence numbers count lines without gaps");
    }
    let (_, first_prev, _) = chain_of(line(&lines, 1));
    assert_eq!(first_prev, "0".repeat(64), "a new chain starts at zeros");
    for pair in lines.windows(2) {
        let [a, b] = pair else { unreachable!() };
        assert_eq!(
            chain_of(b).1,
            chain_of(a).2,
            "each record links to the one before"
        );
    }
    let request = json(line(&lines, 5));
    assert_eq!(at(&request, "/event/action"), "zerotrust-decision");
    assert_eq!(at(&request, "/url/path"), "/items/3");

    let verified = verify(std::slice::from_ref(&path)).unwrap();
    let (last_seq, _, last_hash) = chain_of(line(&lines, 11));
    assert_eq!(verified.records, 11);
    assert_eq!(verified.files, vec![path]);
    assert_eq!(verified.first, Some((0, "0".repeat(64))));
    assert_eq!(verified.head, Some((last_seq, last_hash.clone())));
    assert_eq!(last_seq, 10);
    assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
    let shown = verified.to_string();
    assert!(shown.starts_with("ok: 11 records in 1 file(s)"), "{shown}");
    assert!(shown.contains("(chain start)"), "{shown}");
    assert!(shown.contains(&last_hash), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_one_field_of_a_middle_record_is_altered_at_that_line() {
    let dir = TempDir::new("altered");
    let path = plain_log(&dir, 10).await;
    let mut lines = read_lines(&path);
    change(&mut lines, 5, |l| {
        edit(l, r#""method":"GET""#, r#""method":"PUT""#)
    });
    write_lines(&path, &lines);

    let error = verify(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        error,
        ChainError::Altered {
            file: path.clone(),
            line: 5
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}:5: record altered (its content does not match its hash)",
            path.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_start_record_or_a_chain_number_is_detected_at_that_line() {
    let dir = TempDir::new("altered-start");
    let path = plain_log(&dir, 6).await;
    let original = read_lines(&path);

    let mut lines = original.clone();
    change(&mut lines, 1, |l| {
        edit(l, r#""reason":"startup""#, r#""reason":"rotation""#)
    });
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Altered {
            file: path.clone(),
            line: 1
        }
    );

    // The sequence number is inside the hashed part: renumbering a record is an edit.
    let mut lines = original;
    change(&mut lines, 4, |l| {
        let (seq, _, _) = chain_of(l);
        edit(
            l,
            &format!(r#""seq":{seq},"#),
            &format!(r#""seq":{},"#, seq + 100),
        )
    });
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Altered {
            file: path.clone(),
            line: 4
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_middle_line_is_removed_at_the_line_after_the_gap() {
    let dir = TempDir::new("removed");
    let path = plain_log(&dir, 10).await;
    let original = read_lines(&path);

    // One line: line 6 (sequence 5) is gone; the record now on line 6 is sequence 6.
    let mut lines = original.clone();
    lines.remove(5);
    write_lines(&path, &lines);
    let error = verify(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        error,
        ChainError::Removed {
            file: path.clone(),
            line: 6,
            count: 1,
            first: 5,
            last: 5
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "{}:6: 1 record(s) removed before this line (sequence 5..=5 missing)",
            path.display()
        )
    );

    // Three lines: 4, 5 and 6 (sequence 3..=5); the gap is before the new line 4.
    let mut lines = original;
    lines.drain(3..6);
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Removed {
            file: path.clone(),
            line: 4,
            count: 3,
            first: 3,
            last: 5
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserting_a_copy_of_a_record_is_inserted_at_the_inserted_line() {
    let dir = TempDir::new("inserted-copy");
    let path = plain_log(&dir, 10).await;
    let original = read_lines(&path);

    // A copy of an earlier record (line 4) slipped in as line 8.
    let mut lines = original.clone();
    lines.insert(7, line(&original, 4).to_owned());
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Inserted {
            file: path.clone(),
            line: 8
        }
    );

    // A duplicate of the line just before it (line 6 repeated as line 7).
    let mut lines = original.clone();
    lines.insert(6, line(&original, 6).to_owned());
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Inserted {
            file: path.clone(),
            line: 7
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserting_a_forged_record_with_a_correct_self_hash_is_inserted_at_that_line() {
    let dir = TempDir::new("inserted-forged");
    let path = plain_log(&dir, 10).await;
    let original = read_lines(&path);

    // Forged from line 6 (sequence 5): another path, chained right after line 6 with the next
    // sequence number and a correct SHA-256 of its own, inserted as line 7.
    let (seq, _, hash) = chain_of(line(&original, 6));
    let forged = reseal(
        &edit(
            line(&original, 6),
            r#""path":"/items/4""#,
            r#""path":"/admin""#,
        ),
        seq + 1,
        &hash,
    );
    let mut lines = original;
    lines.insert(6, forged);
    write_lines(&path, &lines);
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Inserted {
            file: path.clone(),
            line: 7
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_and_rehashing_a_record_without_a_key_is_rehashed_at_that_line() {
    let dir = TempDir::new("rehashed");
    let path = plain_log(&dir, 10).await;
    let mut lines = read_lines(&path);
    change(&mut lines, 5, rehash_with_another_status);
    write_lines(&path, &lines);

    let error = verify(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        error,
        ChainError::Rehashed {
            file: path.clone(),
            line: 5
        }
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:5: record altered", path.display())),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_chain_key_the_rehash_attack_is_altered_and_no_key_fails() {
    let dir = TempDir::new("keyed");
    let path = dir.log();
    write_log(
        JsonFileSink::builder(&path)
            .chain_key(key())
            .open()
            .unwrap(),
        10,
    )
    .await;
    let keyed = VerifyOptions::default().key(key());

    let verified = verify_files(std::slice::from_ref(&path), &keyed).unwrap();
    assert_eq!(verified.records, 11);

    // Without the key (or with another) nothing verifies: the first line already fails.
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap_err(),
        ChainError::Altered {
            file: path.clone(),
            line: 1
        }
    );
    let other = VerifyOptions::default()
        .key(ChainKey::hmac_sha256(b"another key of at least 32 bytes!").unwrap());
    assert_eq!(
        verify_files(std::slice::from_ref(&path), &other).unwrap_err(),
        ChainError::Altered {
            file: path.clone(),
            line: 1
        }
    );

    // The attacker edits line 5 and recomputes its SHA-256: without the key, that is not the
    // record's HMAC, so the line itself is reported.
    let mut lines = read_lines(&path);
    change(&mut lines, 5, rehash_with_another_status);
    write_lines(&path, &lines);
    assert_eq!(
        verify_files(std::slice::from_ref(&path), &keyed).unwrap_err(),
        ChainError::Altered {
            file: path.clone(),
            line: 5
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Rotation and restarts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_form_one_chain_that_verifies_in_any_order() {
    let dir = TempDir::new("rotation");
    write_log(
        JsonFileSink::builder(dir.log())
            .max_file_size(4096)
            .open()
            .unwrap(),
        120,
    )
    .await;
    let files = log_files(&dir);
    assert!(files.len() >= 4, "rotation at 4 KiB: {files:?}");

    // Sizes: a file is rotated once it reaches the maximum, never long after.
    let mut total = 0;
    let mut next_seq = 0;
    for (i, file) in files.iter().enumerate() {
        let lines = read_lines(file);
        total += lines.len() as u64;
        let start = json(line(&lines, 1));
        assert_eq!(at(&start, "/event/action"), "audit-file-start", "{file:?}");
        let previous = at(&start, "/zerotrust/previous_file");
        match i.checked_sub(1).and_then(|p| files.get(p)) {
            None => assert_eq!(previous, &Value::Null),
            Some(before) => {
                assert_eq!(previous, &Value::from(file_name(before)), "{file:?}");
                assert_eq!(at(&start, "/event/reason"), "rotation");
            }
        }
        // Only the first line of a file is a start record; the rest are requests.
        for l in lines.iter().skip(1) {
            assert_eq!(
                at(&json(l), "/event/action"),
                "zerotrust-decision",
                "{file:?}"
            );
        }
        // Sequence numbers continue across files; the rotated name is the first one's.
        let (first_seq, _, _) = chain_of(line(&lines, 1));
        assert_eq!(first_seq, next_seq, "{file:?}");
        next_seq = chain_of(lines.last().unwrap()).0 + 1;
        if file != &dir.log() {
            assert_eq!(file_name(file), format!("audit.jsonl.{first_seq:020}"));
            let size = fs::metadata(file).unwrap().len();
            assert!(size >= 4096, "{file:?} rotated at {size} bytes");
            assert!(size < 4096 * 4, "{file:?} grew to {size} bytes");
        }
    }
    assert_eq!(
        total,
        120 + files.len() as u64,
        "120 requests and a start per file"
    );

    let in_order = verify(&files).unwrap();
    assert_eq!(in_order.records, total);
    assert_eq!(in_order.files, files);
    assert_eq!(in_order.first, Some((0, "0".repeat(64))));
    assert_eq!(in_order.head.as_ref().map(|h| h.0), Some(total - 1));

    let mut reversed = files.clone();
    reversed.reverse();
    assert_eq!(verify(&reversed).unwrap(), in_order);
    let mut shuffled = files.clone();
    shuffled.rotate_left(files.len() / 2);
    shuffled.swap(0, 1);
    let verified = verify(&shuffled).unwrap();
    assert_eq!(verified.files, files, "reported in chain order");
    assert_eq!(verified, in_order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_middle_rotated_file_is_removed_at_the_next_file() {
    let dir = TempDir::new("rotation-removed");
    write_log(
        JsonFileSink::builder(dir.log())
            .max_file_size(4096)
            .open()
            .unwrap(),
        120,
    )
    .await;
    let files = log_files(&dir);
    assert!(files.len() >= 4, "{files:?}");

    let gone = files.get(1).unwrap().clone();
    let gone_lines = read_lines(&gone);
    let (first, _, _) = chain_of(line(&gone_lines, 1));
    let (last, _, _) = chain_of(gone_lines.last().unwrap());
    fs::remove_file(&gone).unwrap();
    let rest: Vec<PathBuf> = files.iter().filter(|f| **f != gone).cloned().collect();

    assert_eq!(
        verify(&rest).unwrap_err(),
        ChainError::Removed {
            file: files.get(2).unwrap().clone(),
            line: 1,
            count: gone_lines.len() as u64,
            first,
            last,
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_rotated_keeps_at_most_that_many_and_they_still_verify() {
    let dir = TempDir::new("keep-rotated");
    write_log(
        JsonFileSink::builder(dir.log())
            .max_file_size(4096)
            .keep_rotated(2)
            .open()
            .unwrap(),
        120,
    )
    .await;
    let files = log_files(&dir);
    assert_eq!(
        files.len(),
        3,
        "two rotated files and the active one: {files:?}"
    );

    let verified = verify(&files).unwrap();
    let (first_seq, first_prev) = verified.first.clone().unwrap();
    assert!(first_seq > 0, "older files were deleted");
    assert_ne!(first_prev, "0".repeat(64));
    assert!(
        verified
            .to_string()
            .contains(&format!("(after {first_prev})")),
        "{verified}"
    );
    // The oldest kept file names a file that no longer exists.
    let oldest = read_lines(files.first().unwrap());
    let previous = at(&json(line(&oldest, 1)), "/zerotrust/previous_file")
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!dir.path().join(previous).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_on_the_same_path_continues_the_chain() {
    let dir = TempDir::new("restart");
    let path = plain_log(&dir, 5).await;
    let before = read_lines(&path);
    let (_, _, head_before) = chain_of(before.last().unwrap());

    // A second process (pipeline) on the same path, after the first one shut down.
    write_log(JsonFileSink::open(&path).unwrap(), 5).await;
    let files = log_files(&dir);
    let rotated = dir.path().join(format!("audit.jsonl.{:020}", 0));
    assert_eq!(files, vec![rotated.clone(), path.clone()]);
    assert_eq!(
        read_lines(&rotated),
        before,
        "the first run's file is kept as it was"
    );

    let after = read_lines(&path);
    let start = json(line(&after, 1));
    assert_eq!(at(&start, "/event/action"), "audit-file-start");
    assert_eq!(at(&start, "/event/reason"), "startup");
    assert_eq!(
        at(&start, "/zerotrust/previous_file"),
        &Value::from(file_name(&rotated))
    );
    let (seq, prev, _) = chain_of(line(&after, 1));
    assert_eq!(seq, 6, "continues the sequence");
    assert_eq!(
        prev, head_before,
        "links to the last record before the restart"
    );

    let verified = verify(&files).unwrap();
    assert_eq!(verified.records, 12);
    assert_eq!(verified.head.map(|h| h.0), Some(11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_last_line_is_a_warning_not_an_error() {
    let dir = TempDir::new("interrupted");
    let path = plain_log(&dir, 6).await;
    let text = fs::read(&path).unwrap();
    let lines = read_lines(&path);
    let last = lines.last().unwrap();
    // Cut the last record half-way (as a crash mid-write would).
    let start_of_last = text.len() - last.len() - 1;
    let mut cut = start_of_last + last.len() / 2;
    if text.get(cut - 1) == Some(&b'}') {
        cut -= 1;
    }
    fs::write(&path, text.get(..cut).unwrap()).unwrap();

    let verified = verify(std::slice::from_ref(&path)).unwrap();
    assert_eq!(verified.records, 6, "the complete records");
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
    assert!(
        verified
            .warnings
            .iter()
            .all(|w| w.contains(&format!("{}:7", path.display()))
                && w.contains("incomplete last line")),
        "{:?}",
        verified.warnings
    );
    let (_, _, complete_head) = chain_of(line(&lines, 6));
    assert_eq!(verified.head, Some((5, complete_head.clone())));

    let (code, stdout, stderr) = cli(&["verify", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 6 records"), "{stdout}");
    assert!(stderr.contains("warning:"), "{stderr}");

    // The writer restarted after the crash continues from the last complete record.
    write_log(JsonFileSink::open(&path).unwrap(), 2).await;
    let files = log_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let (seq, prev, _) = chain_of(line(&read_lines(&path), 1));
    assert_eq!((seq, prev), (6, complete_head));
    let verified = verify(&files).unwrap();
    assert_eq!(verified.records, 6 + 3);
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_after_a_crash_inside_the_start_record_continues_the_chain() {
    let dir = TempDir::new("restart-partial-start");
    let path = plain_log(&dir, 5).await;
    let (last_seq, _, last_hash) = chain_of(read_lines(&path).last().unwrap());
    // A restart that crashed while writing its start record: the active file holds half a line.
    write_log(JsonFileSink::open(&path).unwrap(), 0).await;
    let start = read_lines(&path);
    assert_eq!(start.len(), 1, "only the start record");
    let half = line(&start, 1).get(..line(&start, 1).len() / 2).unwrap();
    fs::write(&path, half).unwrap();

    // The next start keeps every file and continues from the last complete record.
    let sink = JsonFileSink::open(&path).expect("a restart after a crash opens the log");
    write_log(sink, 2).await;
    let (seq, prev, _) = chain_of(line(&read_lines(&path), 1));
    assert_eq!((seq, prev), (last_seq + 1, last_hash));
    // Every file left in the directory (the interrupted one wherever it was moved, if kept)
    // verifies as one chain.
    let files = log_files(&dir);
    assert!(files.len() >= 2, "{files:?}");
    let verified = verify(&files).unwrap();
    assert_eq!(verified.records, 6 + 3);
    assert!(verified.warnings.len() <= 1, "{:?}", verified.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_holding_only_an_interrupted_line_is_a_warning_not_an_error() {
    let dir = TempDir::new("interrupted-only");
    let path = plain_log(&dir, 3).await;
    let lines = read_lines(&path);
    let (_, _, head) = chain_of(line(&lines, 4));
    // What a crash while writing the start record of the next file leaves behind.
    let next = dir.path().join("audit.jsonl.next");
    fs::write(
        &next,
        r#"{"@timestamp":"2025-01-01T00:00:00.000000Z","message":"audit file st"#,
    )
    .unwrap();

    let verified = verify(&[path.clone(), next.clone()]).unwrap();
    assert_eq!(verified.records, 4);
    assert_eq!(verified.head, Some((3, head)));
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
    let (code, stdout, stderr) = cli(&["verify", path.to_str().unwrap(), next.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Anchors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchored_head_passes_when_present_and_fails_when_the_end_was_cut() {
    let dir = TempDir::new("head");
    let path = plain_log(&dir, 8).await;
    let lines = read_lines(&path);
    let (_, _, head) = chain_of(lines.last().unwrap());
    let (_, _, middle) = chain_of(line(&lines, 5));

    for anchor in [&head, &middle] {
        let options = VerifyOptions::default().expect_head(anchor).unwrap();
        let verified = verify_files(std::slice::from_ref(&path), &options).unwrap();
        assert_eq!(verified.records, 9);
        let (code, stdout, stderr) = cli(&["verify", "--head", anchor, path.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.starts_with("ok:"), "{stdout}");
    }
    assert!(VerifyOptions::default().expect_head("abc").is_none());

    // Cut the last record: the rest still chains, only the anchor shows the loss.
    write_lines(&path, lines.get(..lines.len() - 1).unwrap());
    assert_eq!(
        verify(std::slice::from_ref(&path)).unwrap().records,
        8,
        "without an anchor, a cut end is invisible"
    );
    let options = VerifyOptions::default().expect_head(&head).unwrap();
    assert_eq!(
        verify_files(std::slice::from_ref(&path), &options).unwrap_err(),
        ChainError::HeadNotFound { head: head.clone() }
    );
    let (code, stdout, stderr) = cli(&["verify", "--head", &head, path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&head) && stdout.contains("not in the chain"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_0_with_ok_for_a_good_chain_and_1_naming_file_and_line_for_an_altered_one() {
    let dir = TempDir::new("cli");
    let path = plain_log(&dir, 10).await;
    let file = path.to_str().unwrap();

    let (code, stdout, stderr) = cli(&["verify", file]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("ok: 11 records in 1 file(s)"),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");

    let mut lines = read_lines(&path);
    change(&mut lines, 7, |l| {
        edit(l, r#""method":"GET""#, r#""method":"DELETE""#)
    });
    write_lines(&path, &lines);
    let (code, stdout, stderr) = cli(&["verify", file]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{file}:7: record altered")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_rotated_files_in_any_order_and_a_keyed_chain_with_its_key_file() {
    let dir = TempDir::new("cli-rotated");
    write_log(
        JsonFileSink::builder(dir.log())
            .max_file_size(4096)
            .open()
            .unwrap(),
        60,
    )
    .await;
    let mut files: Vec<String> = log_files(&dir)
        .iter()
        .map(|f| f.to_str().unwrap().to_owned())
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    files.reverse();
    let mut args = vec!["verify"];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "ok: {} records in {} file(s)",
            60 + files.len(),
            files.len()
        )),
        "{stdout}"
    );

    let keyed = TempDir::new("cli-keyed");
    let path = keyed.log();
    write_log(
        JsonFileSink::builder(&path)
            .chain_key(key())
            .open()
            .unwrap(),
        3,
    )
    .await;
    let key_file = keyed.path().join("chain.key");
    fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let (code, stdout, stderr) = cli(&[
        "verify",
        "--key-file",
        key_file.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("ok: 4 records"), "{stdout}");
    let (code, stdout, stderr) = cli(&["verify", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("{}:1: record altered", path.display())),
        "{stdout}"
    );
}

#[test]
fn the_cli_exits_2_on_usage_errors() {
    let dir = TempDir::new("cli-usage");
    let short_key = dir.path().join("short.key");
    fs::write(&short_key, "too short").unwrap();
    let missing = dir.path().join("missing.key");
    let log = dir.log();
    fs::write(&log, "").unwrap();
    let log = log.to_str().unwrap();

    let cases: &[&[&str]] = &[
        &[],
        &["check", log],
        &["verify"],
        &["verify", "--frobnicate", log],
        &["verify", "--head"],
        &["verify", "--head", "not-hex", log],
        &["verify", "--head", &"A".repeat(64), log],
        &["verify", "--key-file"],
        &["verify", "--key-file", short_key.to_str().unwrap(), log],
        &["verify", "--key-file", missing.to_str().unwrap(), log],
    ];
    for args in cases {
        let (code, stdout, stderr) = cli(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("usage: zerotrust-audit verify"),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }

    // Help is not an error; an empty file is an empty chain.
    let (code, stdout, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("usage:"), "{stdout}");
    let (code, stdout, _) = cli(&["verify", log]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.starts_with("ok: 0 records"), "{stdout}");
}

#[test]
fn the_cli_reports_an_unreadable_file_as_a_failure_not_a_success() {
    let dir = TempDir::new("cli-missing");
    let missing = dir.path().join("nope.jsonl");
    let (code, stdout, stderr) = cli(&["verify", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains(missing.to_str().unwrap()), "{stdout}");
}
