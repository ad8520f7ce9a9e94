//! [`RedisLocationHistory`]: each subject's last sighting, swapped atomically by a Lua script.

use std::sync::{Arc, LazyLock};

use redis::Script;
use zerotrust_core::geo::{CountryCode, GeoPoint};
use zerotrust_core::{LocationHistory, Sighting, StoreError, StoreFuture};

use crate::conn::protocol;
use crate::stores::Shared;

/// Stores the sighting unless a later one is stored; answers the stored one (or nil).
/// KEYS[1] the subject's hash; ARGV: the sighting's time, the sighting, retention (s).
static SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local previous = redis.call('HMGET', KEYS[1], 'at', 'v')
if not (previous[1] and tonumber(previous[1]) > tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'at', ARGV[1], 'v', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return previous[2]
",
    )
});

/// The last sighting of each subject in Redis, shared by every replica, so impossible travel is
/// seen whichever replica served the earlier request.
///
/// One hash per subject (`<prefix>loc:{<subject>}`), forgotten after the retention period
/// without sightings (default 1 day). `swap` is one Lua script: the previous sighting is read
/// and the new one stored atomically, and an older sighting never replaces a newer one.
///
/// Made by [`RedisStores::locations`](crate::RedisStores::locations).
#[derive(Clone)]
pub struct RedisLocationHistory {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisLocationHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocationHistory")
            .finish_non_exhaustive()
    }
}

impl RedisLocationHistory {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn read(&self, subject: &str) -> Result<Option<Sighting>, StoreError> {
        let key = self.shared.keys.location(subject);
        let text: Option<String> = self
            .shared
            .run("location get", |mut c| async move {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg("v")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        text.as_deref().map(decode).transpose()
    }

    async fn replace(
        &self,
        subject: &str,
        sighting: Sighting,
    ) -> Result<Option<Sighting>, StoreError> {
        let key = self.shared.keys.location(subject);
        let retention = self.shared.location_retention.as_secs().max(1);
        let encoded = encode(&sighting);
        let previous: Option<String> = self
            .shared
            .run("location swap", |mut c| async move {
                SWAP.key(key)
                    .arg(sighting.at)
                    .arg(encoded)
                    .arg(retention)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        previous.as_deref().map(decode).transpose()
    }
}

impl LocationHistory for RedisLocationHistory {
    fn last<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(self.read(subject))
    }

    fn swap<'a>(
        &'a self,
        subject: &'a str,
        sighting: Sighting,
    ) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(self.replace(subject, sighting))
    }
}

/// `at|lat|lon|accuracy_km|country|ip`; floats in Rust's shortest form that reads back exactly.
fn encode(s: &Sighting) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        s.at,
        s.point.lat,
        s.point.lon,
        s.accuracy_km,
        s.country.as_ref().map_or("", |c| c.as_str()),
        s.ip
    )
}

fn decode(text: &str) -> Result<Sighting, StoreError> {
    let bad = || protocol("location", "unreadable sighting");
    let mut parts = text.splitn(6, '|');
    let mut next = || parts.next().ok_or_else(bad);
    let at = next()?.parse().map_err(|_| bad())?;
    let lat: f64 = next()?.parse().map_err(|_| bad())?;
    let lon: f64 = next()?.parse().map_err(|_| bad())?;
    let accuracy_km = next()?.parse().map_err(|_| bad())?;
    let country = match next()? {
        "" => None,
        code => Some(CountryCode::new(code).ok_or_else(bad)?),
    };
    let ip = next()?.parse().map_err(|_| bad())?;
    Ok(Sighting {
        at,
        point: GeoPoint { lat, lon },
        accuracy_km,
        country,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_survive_the_encoding_exactly() {
        let s = Sighting {
            at: 1_900_000_000,
            point: GeoPoint {
                lat: 52.520_008_1,
                lon: -0.1,
            },
            accuracy_km: 0.1 + 0.2,
            country: CountryCode::new("DE"),
            ip: "2001:db8::1"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0u8; 4])),
        };
        assert_eq!(decode(&encode(&s)).ok(), Some(s));
        assert!(decode("1|x|2|3||192.0.2.1").is_err());
    }
}
