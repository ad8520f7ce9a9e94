//! The operator's network lists: trusted networks, blocked networks and anonymisers, from inline
//! values and plain-text files, compiled into prefix tries and swapped atomically on reload.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::joint::map::JointPrefixMap;

/// A list could not be loaded. On a reload, the lists in use stay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// A list file could not be read.
    #[error("cannot read network list {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of a list file is neither an address, a network, a comment nor blank.
    #[error("network list {path}, line {line}: {text:?} is not an address or network")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line (at most 100 characters of it).
        text: String,
    },
}

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// The operator's own networks: offices, VPN concentrators, the cluster.
    Trusted,
    /// Networks whose requests are refused.
    Blocked,
    /// Anonymisers: Tor exit nodes, VPN and proxy ranges.
    Anonymizer,
}

#[derive(Clone)]
enum Source {
    Inline(Arc<str>, Vec<IpNet>),
    File(Arc<str>, PathBuf),
}

impl Source {
    fn path(&self) -> Option<&Path> {
        match self {
            Source::Inline(..) => None,
            Source::File(_, path) => Some(path),
        }
    }
}

/// Where the lists come from, as configured on the builder.
#[derive(Clone, Default)]
pub(crate) struct ListSources {
    sources: Vec<(ListKind, Source)>,
}

impl ListSources {
    pub(crate) fn add_inline(
        &mut self,
        kind: ListKind,
        label: impl Into<Arc<str>>,
        nets: impl IntoIterator<Item = IpNet>,
    ) {
        self.sources.push((
            kind,
            Source::Inline(label.into(), nets.into_iter().map(canonical).collect()),
        ));
    }

    pub(crate) fn add_file(
        &mut self,
        kind: ListKind,
        label: impl Into<Arc<str>>,
        path: impl AsRef<Path>,
    ) {
        self.sources.push((
            kind,
            Source::File(label.into(), path.as_ref().to_path_buf()),
        ));
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.sources.iter().filter_map(|(_, s)| s.path())
    }
}

/// An IPv4-mapped IPv6 network as the IPv4 network it is; host bits cleared.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(net.trunc());
    }
    net.trunc()
}

/// Reads one list: one address or network per line; `#` starts a comment; blank lines are
/// skipped. A line that is anything else fails the whole list (a typo must not silently drop an
/// entry from a block list).
pub(crate) fn parse_list(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut nets = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = line
            .parse::<IpNet>()
            .ok()
            .or_else(|| line.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            Some(net) => nets.push(canonical(net)),
            None => return Err((index + 1, raw.chars().take(100).collect())),
        }
    }
    Ok(nets)
}

/// What a reload found: the number of networks on each list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListStats {
    /// Trusted networks.
    pub trusted: usize,
    /// Blocked networks.
    pub blocked: usize,
    /// Anonymiser networks.
    pub anonymizers: usize,
}

/// One file's identity at load time, to notice a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

type Trie = JointPrefixMap<IpNet, Arc<str>>;

/// The lists, compiled.
pub(crate) struct Compiled {
    trusted: Trie,
    blocked: Trie,
    anonymizers: Trie,
    stamps: Vec<Option<Stamp>>,
    stats: ListStats,
}

impl Compiled {
    fn build(sources: &ListSources) -> Result<Self, ListError> {
        let mut compiled = Compiled {
            trusted: Trie::new(),
            blocked: Trie::new(),
            anonymizers: Trie::new(),
            stamps: Vec::new(),
            stats: ListStats::default(),
        };
        for (kind, source) in &sources.sources {
            let (label, nets) = match source {
                Source::Inline(label, nets) => (label, nets.clone()),
                Source::File(label, path) => {
                    // The stamp is taken before reading: a change during the read is seen next time.
                    compiled.stamps.push(stamp(path));
                    let text = std::fs::read_to_string(path).map_err(|source| ListError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let nets = parse_list(&text).map_err(|(line, text)| ListError::Parse {
                        path: path.clone(),
                        line,
                        text,
                    })?;
                    (label, nets)
                }
            };
            let trie = match kind {
                ListKind::Trusted => &mut compiled.trusted,
                ListKind::Blocked => &mut compiled.blocked,
                ListKind::Anonymizer => &mut compiled.anonymizers,
            };
            for net in nets {
                trie.insert(net, Arc::clone(label));
            }
        }
        compiled.stats = ListStats {
            trusted: compiled.trusted.len(),
            blocked: compiled.blocked.len(),
            anonymizers: compiled.anonymizers.len(),
        };
        Ok(compiled)
    }

    /// The label of the most specific network of `kind` holding `ip` (already canonical).
    pub(crate) fn find(&self, kind: ListKind, ip: IpAddr) -> Option<&Arc<str>> {
        let trie = match kind {
            ListKind::Trusted => &self.trusted,
            ListKind::Blocked => &self.blocked,
            ListKind::Anonymizer => &self.anonymizers,
        };
        if trie.is_empty() {
            return None;
        }
        let host = match ip {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
        };
        trie.get_lpm(&host).map(|(_, label)| label)
    }
}

struct Shared {
    sources: ListSources,
    current: ArcSwap<Compiled>,
}

/// The trusted, blocked and anonymiser lists in use, shared by every clone of the
/// [`GeoRisk`](crate::GeoRisk) that holds them.
///
/// Lookups read an immutable snapshot (a prefix trie per list) without locking.
/// [`reload`](NetworkLists::reload) re-reads the files, compiles a new snapshot and swaps it in
/// at once; requests in flight finish with the snapshot they started with. A file that cannot be
/// read or parsed fails the reload and the lists in use stay.
#[derive(Clone)]
pub struct NetworkLists {
    shared: Arc<Shared>,
}

impl fmt::Debug for NetworkLists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkLists")
            .field("stats", &self.stats())
            .finish()
    }
}

impl NetworkLists {
    pub(crate) fn load(sources: ListSources) -> Result<Self, ListError> {
        let compiled = Compiled::build(&sources)?;
        Ok(Self {
            shared: Arc::new(Shared {
                sources,
                current: ArcSwap::from_pointee(compiled),
            }),
        })
    }

    /// The snapshot in use.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Compiled>> {
        self.shared.current.load()
    }

    /// The number of networks on each list in use.
    pub fn stats(&self) -> ListStats {
        self.shared.current.load().stats
    }

    /// Which list `ip` is on, most decisive first (blocked, then trusted, then anonymiser), with
    /// the label of the list that holds it.
    ///
    /// ```
    /// use zerotrust_geo::{GeoRisk, ListKind};
    ///
    /// let risk = GeoRisk::builder()
    ///     .trusted_networks(["10.0.0.0/8".parse().unwrap()])
    ///     .blocked_networks(["10.66.0.0/16".parse().unwrap()])
    ///     .build()
    ///     .unwrap();
    /// let lists = risk.lists();
    /// assert_eq!(lists.lookup("10.1.2.3".parse().unwrap()).map(|m| m.0), Some(ListKind::Trusted));
    /// assert_eq!(lists.lookup("10.66.0.9".parse().unwrap()).map(|m| m.0), Some(ListKind::Blocked));
    /// assert_eq!(lists.lookup("8.8.8.8".parse().unwrap()), None);
    /// ```
    pub fn lookup(&self, ip: IpAddr) -> Option<(ListKind, Arc<str>)> {
        let ip = ip.to_canonical();
        let snapshot = self.snapshot();
        [ListKind::Blocked, ListKind::Trusted, ListKind::Anonymizer]
            .into_iter()
            .find_map(|kind| {
                snapshot
                    .find(kind, ip)
                    .map(|label| (kind, Arc::clone(label)))
            })
    }

    /// Re-reads every list file and swaps the new lists in. On error the lists in use stay, and
    /// the error is logged and returned.
    ///
    /// Reading files blocks; from async code, call it in `tokio::task::spawn_blocking` (or let
    /// [`spawn_reloader`](NetworkLists::spawn_reloader) do it).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("zt-doc-reload-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let tor = dir.join("tor-exits.txt");
    /// std::fs::write(&tor, "# Tor exits\n198.51.100.7\n")?;
    ///
    /// let risk = zerotrust_geo::GeoRisk::builder().anonymizer_list("tor", &tor).build()?;
    /// assert_eq!(risk.lists().stats().anonymizers, 1);
    ///
    /// std::fs::write(&tor, "198.51.100.7\n198.51.100.8\n2001:db8::/48\n")?;
    /// assert_eq!(risk.lists().reload()?.anonymizers, 3);
    ///
    /// std::fs::write(&tor, "198.51.100.7\nnot an address\n")?;
    /// assert!(risk.lists().reload().is_err());
    /// assert_eq!(risk.lists().stats().anonymizers, 3); // the lists in use stay
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn reload(&self) -> Result<ListStats, ListError> {
        match Compiled::build(&self.shared.sources) {
            Ok(compiled) => {
                let stats = compiled.stats;
                self.shared.current.store(Arc::new(compiled));
                tracing::info!(
                    target: "zerotrust::geo",
                    trusted = stats.trusted,
                    blocked = stats.blocked,
                    anonymizers = stats.anonymizers,
                    "network lists reloaded"
                );
                Ok(stats)
            }
            Err(error) => {
                metrics::counter!("zerotrust_geo_list_reload_failures_total").increment(1);
                tracing::error!(target: "zerotrust::geo", %error, "network list reload failed; keeping the lists in use");
                Err(error)
            }
        }
    }

    /// Whether any list file changed (modification time or size, or appeared or vanished) since
    /// the lists in use were loaded.
    pub fn files_changed(&self) -> bool {
        let snapshot = self.snapshot();
        let now: Vec<Option<Stamp>> = self.shared.sources.paths().map(stamp).collect();
        now != snapshot.stamps
    }

    /// Reloads when a list file changed; answers whether it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool, ListError> {
        if !self.files_changed() {
            return Ok(false);
        }
        self.reload().map(|_| true)
    }

    /// Checks the list files every `every` and reloads them when one changed, on a background
    /// task of the current Tokio runtime (the file reads run on its blocking pool).
    ///
    /// The task ends by itself once every handle to these lists is dropped; abort the returned
    /// handle to end it sooner. A failed reload is logged and the lists in use stay; the next
    /// change is tried again.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as `tokio::spawn` does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// # let blocked = std::env::temp_dir().join(format!("zt-doc-blocked-{}.txt", std::process::id()));
    /// # std::fs::write(&blocked, "")?;
    /// let risk = zerotrust_geo::GeoRisk::builder().blocked_networks_file(&blocked).build()?;
    /// let reloader = risk.lists().spawn_reloader(Duration::from_secs(30));
    /// # reloader.abort();
    /// # std::fs::remove_file(&blocked)?;
    /// # Ok(()) }
    /// ```
    pub fn spawn_reloader(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let lists = NetworkLists { shared };
                // Errors were logged by `reload`.
                let _ = tokio::task::spawn_blocking(move || lists.reload_if_changed()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_accept_addresses_networks_comments_and_blank_lines() {
        let text = "\u{feff}# Tor exit nodes\n\n198.51.100.7\n  203.0.113.0/24  # a range\r\n2001:db8::1\n2001:db8:1::/48\n::ffff:192.0.2.0/120\n10.1.2.3/8\n";
        let nets = parse_list(text).unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "198.51.100.7/32",
                "203.0.113.0/24",
                "2001:db8::1/128",
                "2001:db8:1::/48",
                "192.0.2.0/24",
                "10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn one_bad_line_fails_the_whole_list_with_its_number() {
        let err = parse_list("10.0.0.1\n\n10.0.0.300\n").unwrap_err();
        assert_eq!(err.0, 3);
        assert_eq!(err.1, "10.0.0.300");
        assert!(parse_list("example.com").is_err());
        assert!(parse_list("10.0.0.0/33").is_err());
    }

    #[test]
    fn the_most_specific_network_wins_and_mapped_addresses_match_ipv4() {
        let mut sources = ListSources::default();
        sources.add_inline(
            ListKind::Anonymizer,
            "vpn",
            ["198.51.100.0/24".parse().unwrap()],
        );
        sources.add_inline(
            ListKind::Anonymizer,
            "tor",
            ["198.51.100.7/32".parse().unwrap()],
        );
        let lists = NetworkLists::load(sources).unwrap();
        let label = |ip: &str| {
            lists
                .lookup(ip.parse().unwrap())
                .map(|(_, label)| label.to_string())
        };
        assert_eq!(label("198.51.100.7").as_deref(), Some("tor"));
        assert_eq!(label("::ffff:198.51.100.7").as_deref(), Some("tor"));
        assert_eq!(label("198.51.100.8").as_deref(), Some("vpn"));
        assert_eq!(label("198.51.101.1"), None);
    }
}
