//! `zerotrust-audit verify [--key-file FILE] [--head HASH] FILE...`: checks the hash chain of audit
//! files and names the first altered, removed or inserted record.
//!
//! Exit status: 0 when the chain verifies, 1 when it does not, 2 on a usage error.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use zerotrust_audit::{ChainKey, VerifyOptions, verify_files};

const USAGE: &str = "usage: zerotrust-audit verify [--key-file FILE] [--head HASH] FILE...

Checks the hash chain of zerotrust audit files (JSON Lines). Rotated files may be
given in any order. Names the first altered, removed or inserted record.

  --key-file FILE  the HMAC-SHA256 chain key, if the writer used one
  --head HASH      a chain anchor logged earlier (64 hex digits) the chain must contain";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("verify") => {}
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => return usage("expected the command `verify`"),
    }
    let mut options = VerifyOptions::default();
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--key-file" => {
                let Some(path) = args.next() else {
                    return usage("--key-file needs a file");
                };
                match ChainKey::from_file(&path) {
                    Ok(key) => options = options.key(key),
                    Err(error) => return usage(&format!("{path}: {error}")),
                }
            }
            "--head" => {
                let Some(head) = args.next() else {
                    return usage("--head needs a hash");
                };
                match options.expect_head(&head) {
                    Some(with_head) => options = with_head,
                    None => return usage("--head needs 64 lower-case hex digits"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            flag if flag.starts_with("--") => return usage(&format!("unknown option {flag}")),
            file => files.push(PathBuf::from(file)),
        }
    }
    if files.is_empty() {
        return usage("no files given");
    }
    match verify_files(&files, &options) {
        Ok(verified) => {
            for warning in &verified.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{verified}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            println!("{problem}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("error: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}
