//! [`GeoRisk`]: what the layer checks, configured once with [`GeoRisk::builder`], and the
//! synchronous part of the check.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use zerotrust_core::geo::{CountryCode, GeoLocation, GeoLocator, NetworkAssessment, NetworkZone};
use zerotrust_core::{
    ClientIpResolver, Enforcement, LocationHistory, MemoryLocationHistory, Reason, RiskSignal,
    Sighting,
};

use crate::embedded::EmbeddedGeo;
use crate::hours::{Clock, SystemClock, WorkingHours, unix_secs};
use crate::lists::{ListError, ListKind, ListSources, NetworkLists};
use crate::special::{AddressScope, address_scope};

/// The stable reasons this layer refuses a request with (HTTP 403, except `store.unavailable`,
/// 503). Descriptions are fixed text: they never echo the address, country or network.
pub mod reasons {
    use zerotrust_core::Reason;

    /// The client address is on a blocked-networks list.
    pub const BLOCKED_ADDRESS: Reason = Reason::new(
        "network.blocked_address",
        "Requests from this network are not accepted.",
    );
    /// The client address is in a blocked country.
    pub const BLOCKED_COUNTRY: Reason = Reason::new(
        "network.blocked_country",
        "Requests from this country are not accepted.",
    );
    /// A country allowlist is set and the address is not in one of its countries (or its country
    /// is unknown).
    pub const COUNTRY_NOT_ALLOWED: Reason = Reason::new(
        "network.country_not_allowed",
        "Requests are accepted only from approved countries.",
    );
    /// The client address belongs to a blocked autonomous system.
    pub const BLOCKED_ASN: Reason = Reason::new(
        "network.blocked_asn",
        "Requests from this network provider are not accepted.",
    );
    /// The client address is a listed anonymiser and anonymisers are blocked.
    pub const ANONYMIZER_BLOCKED: Reason = Reason::new(
        "network.anonymizer_blocked",
        "Requests through anonymising networks are not accepted.",
    );
    /// The subject could not have travelled from the previous request's location in time, and
    /// impossible travel is refused.
    pub const IMPOSSIBLE_TRAVEL: Reason = Reason::new(
        "travel.impossible",
        "The request's location is inconsistent with the previous one.",
    );
    /// The location history could not be reached (503, `Retry-After: 1`).
    pub use zerotrust_core::revocation::STORE_UNAVAILABLE;
}

/// The risk signals this layer adds, each with a configurable weight
/// ([`GeoRiskBuilder::signal_weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GeoSignal {
    /// `network.public` (0.02): a public address outside the trusted networks. Small on purpose:
    /// in a zero-trust model the network confers next to nothing, so working from outside the
    /// office is recorded but alone never costs a trust level (0.02 is below the `Verified` threshold).
    Public,
    /// `network.private` (0.1): a local address (RFC 1918, loopback, ...) not listed as trusted.
    Private,
    /// `network.anonymizer` (0.6): a listed anonymiser (Tor exit, VPN, proxy); the evidence names
    /// the list.
    Anonymizer,
    /// `network.country_unknown` (0.2): a non-local address no geo source could place.
    CountryUnknown,
    /// `network.asn_unknown` (0.1): ASNs are blocked but the address's ASN is unknown, so the
    /// block could not be checked.
    AsnUnknown,
    /// `travel.impossible` (0.8): the subject moved faster than possible since the last request;
    /// the evidence gives distance, time, speed and countries.
    ImpossibleTravel,
    /// `time.outside_hours` (0.2): outside the configured working hours; the evidence is the local
    /// time.
    OutsideHours,
    /// `store.degraded` (0.3): the location history could not be reached and travel is
    /// configured fail-open.
    StoreDegraded,
}

impl GeoSignal {
    /// Every signal, in declaration order.
    pub const ALL: [GeoSignal; 8] = [
        GeoSignal::Public,
        GeoSignal::Private,
        GeoSignal::Anonymizer,
        GeoSignal::CountryUnknown,
        GeoSignal::AsnUnknown,
        GeoSignal::ImpossibleTravel,
        GeoSignal::OutsideHours,
        GeoSignal::StoreDegraded,
    ];

    /// The signal's stable name.
    pub const fn name(self) -> &'static str {
        match self {
            GeoSignal::Public => "network.public",
            GeoSignal::Private => "network.private",
            GeoSignal::Anonymizer => "network.anonymizer",
            GeoSignal::CountryUnknown => "network.country_unknown",
            GeoSignal::AsnUnknown => "network.asn_unknown",
            GeoSignal::ImpossibleTravel => "travel.impossible",
            GeoSignal::OutsideHours => "time.outside_hours",
            GeoSignal::StoreDegraded => zerotrust_core::revocation::STORE_DEGRADED,
        }
    }

    /// The weight used unless configured otherwise.
    pub const fn default_weight(self) -> f64 {
        match self {
            GeoSignal::Public => 0.02,
            GeoSignal::Private | GeoSignal::AsnUnknown => 0.1,
            GeoSignal::Anonymizer => 0.6,
            GeoSignal::CountryUnknown | GeoSignal::OutsideHours => 0.2,
            GeoSignal::ImpossibleTravel => 0.8,
            GeoSignal::StoreDegraded => 0.3,
        }
    }

    const fn index(self) -> usize {
        match self {
            GeoSignal::Public => 0,
            GeoSignal::Private => 1,
            GeoSignal::Anonymizer => 2,
            GeoSignal::CountryUnknown => 3,
            GeoSignal::AsnUnknown => 4,
            GeoSignal::ImpossibleTravel => 5,
            GeoSignal::OutsideHours => 6,
            GeoSignal::StoreDegraded => 7,
        }
    }
}

/// A [`GeoRisk`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoRiskError {
    /// A network list could not be loaded.
    #[error(transparent)]
    Lists(#[from] ListError),
    /// A country code is not two ASCII letters.
    #[error("{0:?} is not an ISO 3166-1 alpha-2 country code")]
    InvalidCountry(String),
    /// The country allowlist was set but is empty: every request would be refused.
    #[error("the country allowlist is empty")]
    EmptyAllowlist,
    /// The travel speed limit is not a positive number.
    #[error("the travel speed limit must be a positive number of km/h, not {0}")]
    InvalidSpeed(f64),
    /// A signal weight is not within 0..=1.
    #[error("the weight of {signal} must be within 0..=1, not {weight}")]
    InvalidWeight {
        /// The signal's name.
        signal: &'static str,
        /// The weight given.
        weight: f64,
    },
}

pub(crate) struct TravelCheck {
    pub(crate) history: Arc<dyn LocationHistory>,
    pub(crate) max_speed_kmh: f64,
    pub(crate) fail_open: bool,
    pub(crate) within_country: bool,
    pub(crate) deny: bool,
}

pub(crate) struct Config {
    pub(crate) locator: Arc<dyn GeoLocator>,
    pub(crate) resolver: ClientIpResolver,
    pub(crate) lists: NetworkLists,
    allowed_countries: Option<Vec<CountryCode>>,
    blocked_countries: Vec<CountryCode>,
    blocked_asns: Vec<u32>,
    admit_unknown_countries: bool,
    block_anonymizers: bool,
    weights: [f64; GeoSignal::ALL.len()],
    pub(crate) travel: Option<TravelCheck>,
    hours: Option<WorkingHours>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) enforcement: Enforcement,
}

/// What [`GeoRiskLayer`](crate::GeoRiskLayer) checks, built once and shared (cloning is cheap).
///
/// Strict by default: no network is trusted, anonymiser lists and country rules apply to every
/// address outside the trusted networks (local addresses included), impossible travel is checked
/// for every subject against an in-memory history and fails closed, and refusals are enforced.
/// Each relaxation is a builder call with a **Warning** in its documentation.
///
/// ```
/// use zerotrust_geo::{GeoRisk, GeoSignal};
///
/// # fn main() -> Result<(), zerotrust_geo::GeoRiskError> {
/// let risk = GeoRisk::builder()
///     .trusted_networks(["10.0.0.0/8".parse().unwrap()])
///     .block_countries(["KP"])
///     .signal_weight(GeoSignal::Public, 0.05)
///     .build()?;
/// # let _ = risk;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GeoRisk {
    pub(crate) config: Arc<Config>,
}

impl fmt::Debug for GeoRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("GeoRisk")
            .field("lists", &c.lists)
            .field("allowed_countries", &c.allowed_countries)
            .field("blocked_countries", &c.blocked_countries)
            .field("blocked_asns", &c.blocked_asns)
            .field("admit_unknown_countries", &c.admit_unknown_countries)
            .field("block_anonymizers", &c.block_anonymizers)
            .field("travel", &c.travel.as_ref().map(|t| t.max_speed_kmh))
            .field("working_hours", &c.hours)
            .field("enforcement", &c.enforcement)
            .finish_non_exhaustive()
    }
}

/// Builds a [`GeoRisk`]; see [`GeoRisk::builder`].
pub struct GeoRiskBuilder {
    locator: Option<Arc<dyn GeoLocator>>,
    resolver: ClientIpResolver,
    sources: ListSources,
    allowed_countries: Option<Vec<String>>,
    blocked_countries: Vec<String>,
    blocked_asns: Vec<u32>,
    admit_unknown_countries: bool,
    block_anonymizers: bool,
    weights: [f64; GeoSignal::ALL.len()],
    history: Option<Arc<dyn LocationHistory>>,
    travel: bool,
    max_speed_kmh: f64,
    travel_fail_open: bool,
    within_country: bool,
    deny_impossible_travel: bool,
    hours: Option<WorkingHours>,
    clock: Arc<dyn Clock>,
    enforcement: Enforcement,
}

impl fmt::Debug for GeoRiskBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoRiskBuilder").finish_non_exhaustive()
    }
}

impl GeoRisk {
    /// The default travel speed limit: a little faster than an airliner, in km/h.
    pub const DEFAULT_MAX_SPEED_KMH: f64 = 900.0;

    /// A builder with the strict defaults.
    pub fn builder() -> GeoRiskBuilder {
        GeoRiskBuilder {
            locator: None,
            resolver: ClientIpResolver::peer_only(),
            sources: ListSources::default(),
            allowed_countries: None,
            blocked_countries: Vec::new(),
            blocked_asns: Vec::new(),
            admit_unknown_countries: false,
            block_anonymizers: false,
            weights: GeoSignal::ALL.map(GeoSignal::default_weight),
            history: None,
            travel: true,
            max_speed_kmh: Self::DEFAULT_MAX_SPEED_KMH,
            travel_fail_open: false,
            within_country: false,
            deny_impossible_travel: false,
            hours: None,
            clock: Arc::new(SystemClock),
            enforcement: Enforcement::Enforce,
        }
    }

    /// The network lists in use, to [`reload`](NetworkLists::reload) them or run a
    /// [background reloader](NetworkLists::spawn_reloader).
    pub fn lists(&self) -> &NetworkLists {
        &self.config.lists
    }

    /// What the geo source knows about `ip`.
    pub fn locate(&self, ip: IpAddr) -> GeoLocation {
        self.config.locator.locate(ip)
    }
}

impl GeoRiskBuilder {
    /// The geo source (default: [`EmbeddedGeo`], built by [`build`](Self::build)).
    ///
    /// ```
    /// use zerotrust_geo::{EmbeddedGeo, GeoRisk};
    ///
    /// let builder = GeoRisk::builder().locator(EmbeddedGeo::new());
    /// # let _ = builder;
    /// ```
    pub fn locator(mut self, locator: impl GeoLocator) -> Self {
        self.locator = Some(Arc::new(locator));
        self
    }

    /// How the client address is found when no earlier layer recorded it (default: the socket
    /// peer only). Use the same resolver, with the same trusted proxies, in every layer.
    ///
    /// ```
    /// use zerotrust_core::{ClientIpResolver, ForwardedSource};
    /// use zerotrust_geo::GeoRisk;
    ///
    /// let resolver = ClientIpResolver::builder()
    ///     .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
    ///     .source(ForwardedSource::XForwardedFor)
    ///     .build();
    /// let builder = GeoRisk::builder().client_ip_resolver(resolver);
    /// # let _ = builder;
    /// ```
    pub fn client_ip_resolver(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Networks that are the operator's own: requests from them get zone `Trusted`, no network
    /// signals, no country or ASN rules and no travel check. None by default.
    ///
    /// # Warning
    ///
    /// Every address in these networks skips the country, ASN and anonymiser rules. List only
    /// networks you control, and only behind a [client IP resolver](Self::client_ip_resolver)
    /// that cannot be fooled by forwarding headers.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .trusted_networks(["10.0.0.0/8".parse().unwrap(), "2001:db8:42::/48".parse().unwrap()]);
    /// # let _ = builder;
    /// ```
    pub fn trusted_networks(mut self, nets: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.sources.add_inline(ListKind::Trusted, "trusted", nets);
        self
    }

    /// Trusted networks from a file (one address or network per line, `#` comments), re-read on
    /// [reload](NetworkLists::reload).
    ///
    /// # Warning
    ///
    /// As for [`trusted_networks`](Self::trusted_networks); and whoever can write the file can
    /// trust any network.
    ///
    /// ```no_run
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .trusted_networks_file("config/trusted-networks.txt");
    /// # let _ = builder;
    /// ```
    pub fn trusted_networks_file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.add_file(ListKind::Trusted, "trusted", path);
        self
    }

    /// Networks whose requests are refused with 403 `network.blocked_address`, before any other
    /// rule (a blocked network inside a trusted one is still blocked).
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .blocked_networks(["192.0.2.0/24".parse().unwrap()]);
    /// # let _ = builder;
    /// ```
    pub fn blocked_networks(mut self, nets: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.sources.add_inline(ListKind::Blocked, "blocked", nets);
        self
    }

    /// Blocked networks from a file (one address or network per line, `#` comments), re-read on
    /// [reload](NetworkLists::reload).
    ///
    /// ```no_run
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .blocked_networks_file("config/blocked-networks.txt");
    /// # let _ = builder;
    /// ```
    pub fn blocked_networks_file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.add_file(ListKind::Blocked, "blocked", path);
        self
    }

    /// Anonymiser networks under a label (`"tor"`, `"vpn"`) named in the signal's evidence.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .anonymizer_networks("vpn", ["198.51.100.0/24".parse().unwrap()]);
    /// # let _ = builder;
    /// ```
    pub fn anonymizer_networks(
        mut self,
        label: impl Into<Arc<str>>,
        nets: impl IntoIterator<Item = ipnet::IpNet>,
    ) -> Self {
        self.sources.add_inline(ListKind::Anonymizer, label, nets);
        self
    }

    /// An anonymiser list file under a label: a Tor bulk exit list, a VPN provider's ranges (one
    /// address or network per line, `#` comments), re-read on [reload](NetworkLists::reload).
    ///
    /// ```no_run
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .anonymizer_list("tor", "lists/tor-exit-nodes.txt")
    ///     .anonymizer_list("vpn", "lists/vpn-ranges.txt");
    /// # let _ = builder;
    /// ```
    pub fn anonymizer_list(mut self, label: impl Into<Arc<str>>, path: impl AsRef<Path>) -> Self {
        self.sources.add_file(ListKind::Anonymizer, label, path);
        self
    }

    /// Refuses listed anonymisers with 403 `network.anonymizer_blocked` instead of only adding the
    /// `network.anonymizer` signal.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .anonymizer_networks("tor", ["198.51.100.7/32".parse().unwrap()])
    ///     .block_anonymizers();
    /// # let _ = builder;
    /// ```
    pub fn block_anonymizers(mut self) -> Self {
        self.block_anonymizers = true;
        self
    }

    /// Accepts requests only from these countries (ISO 3166-1 alpha-2 codes, either case); others
    /// get 403 `network.country_not_allowed`, and so do addresses whose country is unknown
    /// (including local addresses that are not trusted) unless
    /// [`admit_unknown_countries`](Self::admit_unknown_countries) is set. Calling it again adds
    /// countries.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .allow_countries(["DE", "AT", "CH"]);
    /// # let _ = builder;
    /// ```
    pub fn allow_countries(mut self, codes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.allowed_countries
            .get_or_insert_with(Vec::new)
            .extend(codes.into_iter().map(|c| c.as_ref().to_owned()));
        self
    }

    /// Refuses requests from these countries with 403 `network.blocked_country`.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().block_countries(["KP", "IR"]);
    /// # let _ = builder;
    /// ```
    pub fn block_countries(mut self, codes: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.blocked_countries
            .extend(codes.into_iter().map(|c| c.as_ref().to_owned()));
        self
    }

    /// Refuses requests from these autonomous systems with 403 `network.blocked_asn`. Needs a geo
    /// source with ASN data (a MaxMind ASN database); an address whose ASN is unknown gets the
    /// `network.asn_unknown` signal instead.
    ///
    /// ```
    /// // Example ASNs from the documentation range (RFC 5398).
    /// let builder = zerotrust_geo::GeoRisk::builder().block_asns([64496, 64497]);
    /// # let _ = builder;
    /// ```
    pub fn block_asns(mut self, asns: impl IntoIterator<Item = u32>) -> Self {
        self.blocked_asns.extend(asns);
        self
    }

    /// Lets addresses of unknown country pass the country allowlist (with the
    /// `network.country_unknown` signal).
    ///
    /// # Warning
    ///
    /// Anyone whose address the geo source cannot place (new allocations, some satellite and
    /// mobile networks, local addresses behind a misconfigured proxy) passes the allowlist.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .allow_countries(["DE"])
    ///     .admit_unknown_countries();
    /// # let _ = builder;
    /// ```
    pub fn admit_unknown_countries(mut self) -> Self {
        self.admit_unknown_countries = true;
        self
    }

    /// The weight of one of this layer's signals (see [`GeoSignal`] for the defaults); checked to
    /// be within `0..=1` by [`build`](Self::build).
    ///
    /// # Warning
    ///
    /// A lower weight makes the decision layer care less; a weight of 0 silences the signal in
    /// the risk score (it is still recorded for the audit log).
    ///
    /// ```
    /// use zerotrust_geo::{GeoRisk, GeoSignal};
    ///
    /// let builder = GeoRisk::builder()
    ///     .signal_weight(GeoSignal::Anonymizer, 0.9)
    ///     .signal_weight(GeoSignal::Public, 0.0);
    /// # let _ = builder;
    /// ```
    pub fn signal_weight(mut self, signal: GeoSignal, weight: f64) -> Self {
        if let Some(slot) = self.weights.get_mut(signal.index()) {
            *slot = weight;
        }
        self
    }

    /// Where each subject's last location is kept (default: in this process,
    /// [`MemoryLocationHistory`]). Use a shared store (Redis) when several replicas serve the
    /// same users.
    ///
    /// ```
    /// use zerotrust_core::MemoryLocationHistory;
    ///
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .location_history(MemoryLocationHistory::new());
    /// # let _ = builder;
    /// ```
    pub fn location_history(mut self, history: impl LocationHistory) -> Self {
        self.history = Some(Arc::new(history));
        self
    }

    /// A location history already shared with other parts of the application.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use zerotrust_core::{LocationHistory, MemoryLocationHistory};
    ///
    /// let history: Arc<dyn LocationHistory> = Arc::new(MemoryLocationHistory::new());
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .shared_location_history(Arc::clone(&history));
    /// # let _ = builder;
    /// ```
    pub fn shared_location_history(mut self, history: Arc<dyn LocationHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// The speed above which travel is impossible, in km/h (default 900).
    ///
    /// # Warning
    ///
    /// A higher limit lets faster journeys pass unnoticed; a token used from two places an hour
    /// apart is the case the check exists for.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().max_travel_speed_kmh(1000.0);
    /// # let _ = builder;
    /// ```
    pub fn max_travel_speed_kmh(mut self, kmh: f64) -> Self {
        self.max_speed_kmh = kmh;
        self
    }

    /// Judges travel between two sightings in the same country too. Off by default, because
    /// country-level sources cannot tell places within a country apart; turn it on with a City
    /// database, whose accuracy radii keep coarse sightings from raising false alarms.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().travel_within_country();
    /// # let _ = builder;
    /// ```
    pub fn travel_within_country(mut self) -> Self {
        self.within_country = true;
        self
    }

    /// Refuses impossible travel with 403 `travel.impossible`, instead of only adding the
    /// `travel.impossible` signal for a decision layer to weigh.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().deny_impossible_travel();
    /// # let _ = builder;
    /// ```
    pub fn deny_impossible_travel(mut self) -> Self {
        self.deny_impossible_travel = true;
        self
    }

    /// When the location history cannot be reached, lets the request through with the
    /// `store.degraded` signal instead of refusing it with 503 `store.unavailable`.
    ///
    /// # Warning
    ///
    /// While the store is down, impossible travel goes unnoticed; the signal and the audit record
    /// are the only trace.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().travel_fail_open();
    /// # let _ = builder;
    /// ```
    pub fn travel_fail_open(mut self) -> Self {
        self.travel_fail_open = true;
        self
    }

    /// Turns the impossible-travel check off: no sighting is recorded or compared.
    ///
    /// # Warning
    ///
    /// A stolen token used from the other side of the world raises no signal.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().without_travel_check();
    /// # let _ = builder;
    /// ```
    pub fn without_travel_check(mut self) -> Self {
        self.travel = false;
        self
    }

    /// Adds the `time.outside_hours` signal to requests outside these working hours.
    ///
    /// ```
    /// use zerotrust_geo::{Tz, WorkingHours};
    ///
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .working_hours(WorkingHours::new(Tz::Europe__Berlin));
    /// # let _ = builder;
    /// ```
    pub fn working_hours(mut self, hours: WorkingHours) -> Self {
        self.hours = Some(hours);
        self
    }

    /// The clock for sightings and working hours (default: the system clock).
    ///
    /// ```
    /// use zerotrust_geo::{GeoRisk, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(1_900_000_000);
    /// let builder = GeoRisk::builder().clock(clock.clone());
    /// # let _ = builder;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How refusals are applied (default [`Enforcement::Enforce`]: every refusal is answered).
    ///
    /// - [`Enforcement::ReportOnly`]: every check runs and records as usual (client address,
    ///   network assessment, signals, travel). A refusal (blocked network, country or ASN, a
    ///   blocked anonymiser, impossible travel with `deny_impossible_travel`, the location history
    ///   unreachable, and a client address that cannot be resolved, 400 or 500) becomes a
    ///   [`Decision`](zerotrust_core::Decision) with `enforced: false`, logged and counted
    ///   (`zerotrust_report_only_total`), and the request goes through.
    /// - [`Enforcement::Rollout`]`(n)`: enforced for `n`% of the verified subjects (chosen by a
    ///   stable hash of the subject, the same answer on every request and replica), reported for
    ///   the others. Requests without a verified subject are always enforced, so place the layer
    ///   after the one that authenticates.
    /// - [`Enforcement::Off`]: the layer calls the service at once: no address resolved, nothing
    ///   located, no signal, no network assessment, no sighting recorded.
    ///
    /// # Warning
    ///
    /// With `ReportOnly`, `Rollout` and `Off`, blocked networks, countries and ASNs, and requests
    /// whose travel or address could not be checked, reach the service; only the signals (and a
    /// decision layer that weighs them) stand in the way.
    ///
    /// ```
    /// use zerotrust_core::Enforcement;
    ///
    /// let builder = zerotrust_geo::GeoRisk::builder()
    ///     .block_countries(["KP"])
    ///     .enforcement(Enforcement::rollout(10));
    /// # let _ = builder;
    /// ```
    pub fn enforcement(mut self, mode: Enforcement) -> Self {
        self.enforcement = mode;
        self
    }

    /// Shorthand for [`enforcement`](Self::enforcement)`(Enforcement::ReportOnly)`: decides and
    /// records, but lets every request through.
    ///
    /// # Warning
    ///
    /// Nothing is refused: blocked networks, countries and ASNs, and requests whose travel could
    /// not be checked, all reach the service.
    ///
    /// ```
    /// let builder = zerotrust_geo::GeoRisk::builder().block_countries(["KP"]).report_only();
    /// # let _ = builder;
    /// ```
    pub fn report_only(self) -> Self {
        self.enforcement(Enforcement::ReportOnly)
    }

    /// Checks the configuration, loads the network lists and, without another locator, parses
    /// the embedded geo tables (once per process). Blocking: call it at startup.
    ///
    /// ```
    /// use zerotrust_geo::{GeoRisk, GeoRiskError};
    ///
    /// let err = GeoRisk::builder().allow_countries(["Germany"]).build().unwrap_err();
    /// assert!(matches!(err, GeoRiskError::InvalidCountry(code) if code == "Germany"));
    /// ```
    pub fn build(self) -> Result<GeoRisk, GeoRiskError> {
        fn codes(list: Vec<String>) -> Result<Vec<CountryCode>, GeoRiskError> {
            let mut out = list
                .into_iter()
                .map(|c| CountryCode::new(c.trim()).ok_or(GeoRiskError::InvalidCountry(c)))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }
        if !(self.max_speed_kmh.is_finite() && self.max_speed_kmh > 0.0) {
            return Err(GeoRiskError::InvalidSpeed(self.max_speed_kmh));
        }
        for signal in GeoSignal::ALL {
            let weight = self
                .weights
                .get(signal.index())
                .copied()
                .unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&weight) {
                return Err(GeoRiskError::InvalidWeight {
                    signal: signal.name(),
                    weight,
                });
            }
        }
        let allowed_countries = self.allowed_countries.map(codes).transpose()?;
        if allowed_countries.as_ref().is_some_and(Vec::is_empty) {
            return Err(GeoRiskError::EmptyAllowlist);
        }
        let blocked_countries = codes(self.blocked_countries)?;
        let mut blocked_asns = self.blocked_asns;
        blocked_asns.sort_unstable();
        blocked_asns.dedup();
        let lists = NetworkLists::load(self.sources)?;
        let travel = self.travel.then(|| TravelCheck {
            history: self
                .history
                .unwrap_or_else(|| Arc::new(MemoryLocationHistory::new())),
            max_speed_kmh: self.max_speed_kmh,
            fail_open: self.travel_fail_open,
            within_country: self.within_country,
            deny: self.deny_impossible_travel,
        });
        let locator = self
            .locator
            .unwrap_or_else(|| Arc::new(EmbeddedGeo::new()) as Arc<dyn GeoLocator>);
        Ok(GeoRisk {
            config: Arc::new(Config {
                locator,
                resolver: self.resolver,
                lists,
                allowed_countries,
                blocked_countries,
                blocked_asns,
                admit_unknown_countries: self.admit_unknown_countries,
                block_anonymizers: self.block_anonymizers,
                weights: self.weights,
                travel,
                hours: self.hours,
                clock: self.clock,
                enforcement: self.enforcement,
            }),
        })
    }
}

/// What the synchronous part of the check found.
pub(crate) struct Assessment {
    pub(crate) network: NetworkAssessment,
    pub(crate) signals: Vec<RiskSignal>,
    pub(crate) block: Option<Reason>,
    /// The sighting to record and compare, when travel is checked for this request's zone.
    pub(crate) sighting: Option<Sighting>,
}

impl Config {
    pub(crate) fn signal(&self, signal: GeoSignal, evidence: String) -> RiskSignal {
        let weight = self
            .weights
            .get(signal.index())
            .copied()
            .unwrap_or(signal.default_weight());
        RiskSignal::new(signal.name(), weight, evidence)
    }

    /// Zone, location, signals and any refusal for a request from `ip` at `now`.
    ///
    /// Order of the rules: a blocked network first; then a trusted network ends the checks; then
    /// anonymisers, blocked countries, the country allowlist and blocked ASNs.
    pub(crate) fn assess(&self, ip: IpAddr, now: SystemTime) -> Assessment {
        let ip = ip.to_canonical();
        let lists = self.lists.snapshot();
        let location = self.locator.locate(ip);
        let blocked = lists.find(ListKind::Blocked, ip).is_some();
        let trusted = lists.find(ListKind::Trusted, ip).is_some();
        let anonymizer = lists.find(ListKind::Anonymizer, ip);
        let scope = address_scope(ip);
        let zone = if trusted {
            NetworkZone::Trusted
        } else if anonymizer.is_some() {
            NetworkZone::Anonymizer
        } else if scope == AddressScope::Local {
            NetworkZone::Private
        } else {
            NetworkZone::Public
        };

        let mut signals = Vec::new();
        let mut block = None;
        let mut refuse = |reason: Reason| {
            block.get_or_insert(reason);
        };
        if blocked {
            refuse(reasons::BLOCKED_ADDRESS);
        }
        if zone != NetworkZone::Trusted {
            match (zone, anonymizer) {
                (NetworkZone::Anonymizer, Some(label)) => {
                    signals.push(self.signal(
                        GeoSignal::Anonymizer,
                        format!("{ip} is on the {label} list"),
                    ));
                    if self.block_anonymizers {
                        refuse(reasons::ANONYMIZER_BLOCKED);
                    }
                }
                (NetworkZone::Private, _) => signals.push(self.signal(
                    GeoSignal::Private,
                    format!("{ip} is a local address outside the trusted networks"),
                )),
                _ => signals.push(self.signal(
                    GeoSignal::Public,
                    format!("{ip} is outside the trusted networks"),
                )),
            }
            match location.country {
                Some(country) => {
                    if self.blocked_countries.binary_search(&country).is_ok() {
                        refuse(reasons::BLOCKED_COUNTRY);
                    }
                    if let Some(allowed) = &self.allowed_countries
                        && allowed.binary_search(&country).is_err()
                    {
                        refuse(reasons::COUNTRY_NOT_ALLOWED);
                    }
                }
                None => {
                    if self.allowed_countries.is_some() && !self.admit_unknown_countries {
                        refuse(reasons::COUNTRY_NOT_ALLOWED);
                    }
                    if zone != NetworkZone::Private {
                        signals.push(self.signal(
                            GeoSignal::CountryUnknown,
                            format!("no geo source places {ip}"),
                        ));
                    }
                }
            }
            if !self.blocked_asns.is_empty() {
                match location.asn {
                    Some(asn) if self.blocked_asns.binary_search(&asn).is_ok() => {
                        refuse(reasons::BLOCKED_ASN);
                    }
                    Some(_) => {}
                    None if zone != NetworkZone::Private => signals.push(self.signal(
                        GeoSignal::AsnUnknown,
                        format!("the autonomous system of {ip} is unknown"),
                    )),
                    None => {}
                }
            }
        }
        if let Some(local_time) = self.hours.as_ref().and_then(|h| h.check(now)) {
            signals.push(self.signal(GeoSignal::OutsideHours, local_time));
        }

        // Travel is judged only from public addresses: trusted and local networks say nothing
        // about where the subject is, and an anonymiser's exit says where the exit is.
        let sighting = match (
            &self.travel,
            zone,
            block,
            location.point,
            location.accuracy_km,
        ) {
            (Some(_), NetworkZone::Public, None, Some(point), Some(accuracy_km)) => {
                Some(Sighting {
                    at: unix_secs(now),
                    point,
                    accuracy_km,
                    country: location.country,
                    ip,
                })
            }
            _ => None,
        };
        Assessment {
            network: NetworkAssessment {
                client_ip: ip,
                location,
                zone,
                travel: None,
            },
            signals,
            block,
            sighting,
        }
    }
}

/// The evidence of a `travel.impossible` signal.
pub(crate) fn travel_evidence(
    previous: &Sighting,
    current: &Sighting,
    travel: &zerotrust_core::geo::Travel,
) -> String {
    let name = |c: Option<CountryCode>| c.map_or_else(|| "??".to_owned(), |c| c.to_string());
    format!(
        "{:.0} km in {} s ({:.0} km/h) from {} ({}) to {} ({})",
        travel.distance_km,
        travel.elapsed_secs,
        travel.speed_kmh,
        name(previous.country),
        previous.ip,
        name(current.country),
        current.ip,
    )
}
