//! Key names. Every key is `<prefix><kind>:{<tag>}...`, where the tag is the id the key belongs to
//! (a jti, a device id, a subject) with `%`, `{` and `}` escaped. Redis Cluster hashes only the
//! part between the first `{` and the next `}`, so all keys of one subject land in one slot (the
//! behaviour script touches several), and an id cannot break out of its tag.

use std::fmt::Write as _;

/// Builds the keys of one deployment from its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: Box<str>,
}

impl Keys {
    /// Keys under `prefix`, which the builder checked holds no `{` or `}`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn tagged(&self, kind: &str, id: &str, extra: usize) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 4 + extra);
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(":{");
        push_escaped(&mut key, id);
        key.push('}');
        key
    }

    /// The revocation of `jti`.
    pub(crate) fn revocation(&self, jti: &str) -> String {
        self.tagged("rev", jti, 0)
    }

    /// The record of device `id` (a hash).
    pub(crate) fn device(&self, id: &str) -> String {
        self.tagged("dev", id, 0)
    }

    /// The last sighting of `subject` (a hash).
    pub(crate) fn location(&self, subject: &str) -> String {
        self.tagged("loc", subject, 0)
    }

    /// One behaviour key of `subject`: `r`, `f`, `s` counters of the window starting at `start`,
    /// or the lockout (`lock`, no window).
    pub(crate) fn behavior(&self, subject: &str, what: &str, start: Option<i64>) -> String {
        let mut key = self.tagged("beh", subject, what.len() + 22);
        key.push(':');
        key.push_str(what);
        if let Some(start) = start {
            // Writing to a String cannot fail.
            let _ = write!(key, ":{start}");
        }
        key
    }

    /// The pub/sub channel of this deployment's events (revocations, device changes).
    pub(crate) fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

/// Appends `id` with `%`, `{` and `}` percent-escaped (an injective mapping).
fn push_escaped(out: &mut String, id: &str) {
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_their_hash_tag() {
        let keys = Keys::new("zt:");
        assert_eq!(keys.revocation("a}b{c%"), "zt:rev:{a%7Db%7Bc%25}");
        assert_eq!(
            keys.behavior("alice", "r", Some(1_900_000_200)),
            "zt:beh:{alice}:r:1900000200"
        );
        assert_eq!(keys.behavior("alice", "lock", None), "zt:beh:{alice}:lock");
        assert_ne!(keys.device("a%7Bb"), keys.device("a{b"));
    }
}
