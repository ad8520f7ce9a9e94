//! [`RedisDeviceRegistry`]: device records as Redis hashes, changed only by Lua scripts so each
//! operation is atomic for its device.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use redis::Script;
use serde_json::{Map, Value, json};
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{
    Compliance, DeviceRecord, DeviceRegistry, Posture, PostureRule, Registration, StoreError,
    StoreFuture,
};

use crate::conn::protocol;
use crate::stores::Shared;

// Every script: KEYS[1] the device hash; ARGV[1] its time to live (s), ARGV[2] the events
// channel, ARGV[3] the event announcing a change (`d <id>`), then the operation's arguments.

/// Stores the record unless the device exists; answers `{"1"}` or `{"0", field, value, ...}`.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  local existing = redis.call('HGETALL', KEYS[1])
  table.insert(existing, 1, '0')
  return existing
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {'1'}
",
    )
});

/// ARGV[4] posture (JSON), ARGV[5] its `reported_at` ('' when none), ARGV[6] compliance.
/// A report older than the stored one (or without a time, over one with) is ignored.
static UPDATE_POSTURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stored = redis.call('HGET', KEYS[1], 'pat')
local new = ARGV[5]
local older = false
if stored and stored ~= '' then
  if new == '' or tonumber(stored) > tonumber(new) then older = true end
end
if not older then
  redis.call('HSET', KEYS[1], 'posture', ARGV[4], 'pat', new, 'comp', ARGV[6])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
",
    )
});

/// ARGV[4] the subject to add to the owners (a JSON array of strings).
static BIND_OWNER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owners = cjson.decode(redis.call('HGET', KEYS[1], 'owners') or '[]')
for _, owner in ipairs(owners) do
  if owner == ARGV[4] then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    return 1
  end
end
owners[#owners + 1] = ARGV[4]
redis.call('HSET', KEYS[1], 'owners', cjson.encode(owners))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
",
    )
});

/// ARGV[4] the new `last_seen`, stored only if later.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
if not last or tonumber(ARGV[4]) > last then
  redis.call('HSET', KEYS[1], 'last', ARGV[4])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
",
    )
});

static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = redis.call('DEL', KEYS[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
",
    )
});

/// Device records in Redis, shared by every replica.
///
/// One hash per device (`<prefix>dev:{<id>}`), with a time to live renewed by every change and
/// `touch` (default 90 days). Each operation is one Lua script, atomic for its device: two
/// replicas registering a device at once end with one record. Reads are kept in a local cache
/// for a short time (default 1 s) while the events feed is connected; every change is announced
/// on the feed and drops the entry on every replica.
///
/// Made by [`RedisStores::devices`](crate::RedisStores::devices).
#[derive(Clone)]
pub struct RedisDeviceRegistry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisDeviceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeviceRegistry")
            .finish_non_exhaustive()
    }
}

impl RedisDeviceRegistry {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn ttl_secs(&self) -> u64 {
        self.shared.device_ttl.as_secs().max(1)
    }

    async fn read(&self, id: &str) -> Result<Option<Arc<DeviceRecord>>, StoreError> {
        let shared = &self.shared;
        if shared.cache_devices && shared.live() {
            if let Some(record) = shared.devices.get(id) {
                shared.stats.device(true);
                return Ok(Some(record));
            }
            shared.stats.device(false);
        }
        let epoch = shared.epoch();
        let key = shared.keys.device(id);
        let fields: HashMap<String, String> = shared
            .run("device get", |mut c| async move {
                redis::cmd("HGETALL").arg(&key).query_async(&mut c).await
            })
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let record = Arc::new(decode(&fields)?);
        if shared.cache_devices && shared.live() && shared.epoch() == epoch {
            let _ = shared
                .devices
                .entry_by_ref(id)
                .or_insert_with(|| Arc::clone(&record));
        }
        Ok(Some(record))
    }

    /// Runs a change script for `id` and drops the local entry.
    async fn change(
        &self,
        op: &'static str,
        script: &'static Script,
        id: &str,
        args: Vec<String>,
    ) -> Result<bool, StoreError> {
        let key = self.shared.keys.device(id);
        let channel = self.shared.keys.events_channel();
        let event = format!("d {id}");
        let ttl = self.ttl_secs();
        let outcome = self
            .shared
            .run(op, |mut c| async move {
                let mut invocation = script.key(key);
                invocation.arg(ttl).arg(channel).arg(event);
                for arg in &args {
                    invocation.arg(arg);
                }
                invocation.invoke_async::<i64>(&mut c).await
            })
            .await;
        self.shared.devices.invalidate(id);
        Ok(outcome? == 1)
    }

    async fn create(&self, record: DeviceRecord) -> Result<Registration, StoreError> {
        let key = self.shared.keys.device(&record.id);
        let channel = self.shared.keys.events_channel();
        let event = format!("d {}", record.id);
        let ttl = self.ttl_secs();
        let fields = encode(&record);
        let reply: Vec<String> = self
            .shared
            .run("device register", |mut c| async move {
                let mut invocation = REGISTER.key(key);
                invocation.arg(ttl).arg(channel).arg(event);
                for (name, value) in &fields {
                    invocation.arg(*name).arg(value);
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        match reply.split_first() {
            Some((flag, [])) if flag == "1" => Ok(Registration::Created(Arc::new(record))),
            Some((flag, rest)) if flag == "0" => {
                let fields: HashMap<String, String> = rest
                    .chunks_exact(2)
                    .filter_map(|pair| match pair {
                        [name, value] => Some((name.clone(), value.clone())),
                        _ => None,
                    })
                    .collect();
                Ok(Registration::Existing(Arc::new(decode(&fields)?)))
            }
            _ => Err(protocol("device register", "unexpected reply")),
        }
    }
}

impl DeviceRegistry for RedisDeviceRegistry {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<DeviceRecord>>> {
        Box::pin(self.read(id))
    }

    fn register(&self, record: DeviceRecord) -> StoreFuture<'_, Registration> {
        Box::pin(self.create(record))
    }

    fn update_posture<'a>(
        &'a self,
        id: &'a str,
        posture: Posture,
        compliance: Compliance,
    ) -> StoreFuture<'a, bool> {
        let args = vec![
            encode_posture(&posture),
            posture
                .reported_at
                .map(|at| at.to_string())
                .unwrap_or_default(),
            encode_compliance(&compliance),
        ];
        Box::pin(self.change("device posture", &UPDATE_POSTURE, id, args))
    }

    fn bind_owner<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.change("device bind", &BIND_OWNER, id, vec![subject.to_owned()]))
    }

    fn touch<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, bool> {
        Box::pin(self.change("device touch", &TOUCH, id, vec![at.to_string()]))
    }

    fn remove<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.change("device remove", &REMOVE, id, Vec::new()))
    }
}

// --- The hash's fields ----------------------------------------------------------------------

fn encode(record: &DeviceRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", record.id.clone()),
        (
            "fp",
            record
                .fingerprint
                .map(|d| hex(d.as_bytes()))
                .unwrap_or_default(),
        ),
        ("owners", Value::from(record.owners.clone()).to_string()),
        ("posture", encode_posture(&record.posture)),
        (
            "pat",
            record
                .posture
                .reported_at
                .map(|at| at.to_string())
                .unwrap_or_default(),
        ),
        ("first", record.first_seen.to_string()),
        ("last", record.last_seen.to_string()),
        ("comp", encode_compliance(&record.compliance)),
    ]
}

fn decode(fields: &HashMap<String, String>) -> Result<DeviceRecord, StoreError> {
    let bad = |what: &str| protocol("device get", what);
    let field = |name: &str| fields.get(name).ok_or_else(|| bad("a field is missing"));
    let number = |name: &str| -> Result<i64, StoreError> {
        field(name)?
            .parse()
            .map_err(|_| bad("a time is not a number"))
    };
    let fingerprint = match field("fp")?.as_str() {
        "" => None,
        text => Some(FingerprintDigest::from_bytes(unhex(text).ok_or_else(
            || bad("the fingerprint digest is not 32 bytes of hex"),
        )?)),
    };
    let owners: Vec<String> =
        serde_json::from_str(field("owners")?).map_err(|_| bad("the owners are not a list"))?;
    Ok(DeviceRecord {
        fingerprint,
        owners,
        posture: decode_posture(field("posture")?).ok_or_else(|| bad("unreadable posture"))?,
        first_seen: number("first")?,
        last_seen: number("last")?,
        compliance: decode_compliance(field("comp")?)
            .ok_or_else(|| bad("unreadable compliance"))?,
        ..DeviceRecord::new(field("id")?.clone(), 0)
    })
}

fn encode_posture(p: &Posture) -> String {
    json!({
        "platform": p.platform,
        "os_version": p.os_version,
        "disk_encrypted": p.disk_encrypted,
        "edr_running": p.edr_running,
        "jailbroken": p.jailbroken,
        "reported_at": p.reported_at,
    })
    .to_string()
}

fn decode_posture(text: &str) -> Option<Posture> {
    let map: Map<String, Value> = serde_json::from_str(text).ok()?;
    let string = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let flag = |name: &str| map.get(name).and_then(Value::as_bool);
    Some(Posture {
        platform: string("platform"),
        os_version: string("os_version"),
        disk_encrypted: flag("disk_encrypted"),
        edr_running: flag("edr_running"),
        jailbroken: flag("jailbroken"),
        reported_at: map.get("reported_at").and_then(Value::as_i64),
    })
}

fn encode_compliance(c: &Compliance) -> String {
    match c {
        Compliance::Unknown => "unknown".into(),
        Compliance::Compliant => "compliant".into(),
        Compliance::NonCompliant(rules) => {
            let names: Vec<&str> = rules.iter().map(|r| r.as_str()).collect();
            format!("noncompliant:{}", names.join(","))
        }
    }
}

fn decode_compliance(text: &str) -> Option<Compliance> {
    match text {
        "unknown" => Some(Compliance::Unknown),
        "compliant" => Some(Compliance::Compliant),
        _ => {
            let names = text.strip_prefix("noncompliant:")?;
            let rules = names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(rule)
                .collect::<Option<Vec<_>>>()?;
            Some(Compliance::NonCompliant(rules))
        }
    }
}

fn rule(name: &str) -> Option<PostureRule> {
    Some(match name {
        "os_version" => PostureRule::OsVersion,
        "disk_encryption" => PostureRule::DiskEncryption,
        "edr" => PostureRule::Edr,
        "jailbroken" => PostureRule::Jailbroken,
        "posture_age" => PostureRule::PostureAge,
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.extend(char::from_digit(u32::from(nibble), 16));
        }
    }
    out
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_hash_encoding() {
        let record = DeviceRecord {
            fingerprint: Some(FingerprintDigest::of("fp")),
            owners: vec!["alice".into(), "b\"o/b{}".into()],
            posture: Posture {
                platform: Some("ios".into()),
                os_version: Some("17.4.1".into()),
                disk_encrypted: Some(true),
                edr_running: None,
                jailbroken: Some(false),
                reported_at: Some(1_900_000_000),
            },
            compliance: Compliance::NonCompliant(vec![PostureRule::Edr, PostureRule::PostureAge]),
            ..DeviceRecord::new("d-1", 1_900_000_000)
        };
        let fields: HashMap<String, String> = encode(&record)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(decode(&fields).ok(), Some(record));
    }

    #[test]
    fn a_damaged_record_is_a_protocol_error_not_a_panic() {
        let mut fields: HashMap<String, String> = encode(&DeviceRecord::new("d", 1))
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        fields.insert("fp".into(), "zz".into());
        assert!(matches!(decode(&fields), Err(StoreError::Protocol(_))));
        fields.remove("fp");
        assert!(matches!(decode(&fields), Err(StoreError::Protocol(_))));
    }
}
