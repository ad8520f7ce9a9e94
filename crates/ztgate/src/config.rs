//! The configuration file: one TOML document, read strictly.
//!
//! Every table refuses unknown keys (`deny_unknown_fields`), so a misspelt key is an error, never
//! a silently ignored setting. A file that cannot be read is refused with its path, the line and
//! column, the key and what is wrong ([`ConfigError`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zerotrust_core::Enforcement;

/// A configuration that cannot be used: which file, where in it, which key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<inline>` for text given directly).
    pub file: PathBuf,
    /// Line and column (1-based) of the offending value, when known.
    pub position: Option<(usize, usize)>,
    /// The key, as a path such as `route[1].upstream` (empty for a syntax error at top level).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub(crate) fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            key: key.into(),
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, text: &str, offset: Option<usize>) -> Self {
        self.position = offset.map(|o| line_column(text, o));
        self
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before.get(nl + 1..).map_or(0, |s| s.chars().count())
    }) + 1;
    (line, column)
}

/// Enforce, report only, off, or a roll-out to a percentage of subjects:
/// `"enforce"`, `"report_only"`, `"off"`, `{ rollout = 25 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Mode {
    /// By name.
    Named(NamedMode),
    /// `{ rollout = N }`.
    Rollout {
        /// Percentage of subjects for whom the check is enforced.
        rollout: u8,
    },
}

/// The named modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedMode {
    /// Refusals are answered (the default).
    Enforce,
    /// Refusals are recorded, not answered.
    ReportOnly,
    /// The check does not run.
    Off,
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Named(NamedMode::Enforce)
    }
}

impl From<Mode> for Enforcement {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Named(NamedMode::Enforce) => Enforcement::Enforce,
            Mode::Named(NamedMode::ReportOnly) => Enforcement::ReportOnly,
            Mode::Named(NamedMode::Off) => Enforcement::Off,
            Mode::Rollout { rollout } => Enforcement::rollout(rollout),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[listener]]`: where the gateway accepts connections (at least one).
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// `[[route]]`: path prefix to upstream, with the route's policy (at least one).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// `[[issuer]]`: the token issuers trusted (at least one).
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// `[jwt]`: token verification settings.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// `[device]`: the device check; absent means no device layer.
    #[serde(default)]
    pub device: Option<DeviceConfig>,
    /// `[geo]`: the network and location check; absent means no geo layer.
    #[serde(default)]
    pub geo: Option<GeoConfig>,
    /// `[stepup]`: the decision point's global settings.
    #[serde(default)]
    pub stepup: StepUpConfig,
    /// `[audit]`: where decisions are recorded.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[client_ip]`: which proxies' forwarding headers are believed.
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// `[identity]`: the signed assertion and plain headers sent upstream.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// `[upstream]`: connection pool and timeouts shared by every route.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// `[server]`: limits of the listening side.
    #[serde(default)]
    pub server: ServerConfig,
}

/// `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `addr = "0.0.0.0:8443"`.
    pub addr: SocketAddr,
    /// `[listener.tls]`: serve HTTPS; absent means plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[listener.tls]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate issued by one of
    /// them (mutual TLS), and it becomes the request's `PeerCertificate`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[[route]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on segment boundaries (`/api` matches `/api` and `/api/x`, not
    /// `/apix`); the longest matching prefix wins.
    pub prefix: String,
    /// `http://host:port[/base]` or `https://host:port[/base]`.
    pub upstream: String,
    /// `[route.tls]`: how the gateway verifies (and authenticates to) an `https://` upstream;
    /// absent means the system's root certificates, no client certificate.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
    /// Remove `prefix` from the path before appending it to the upstream's base path.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Send the client's `Host` upstream instead of the upstream's authority.
    #[serde(default)]
    pub preserve_host: bool,
    /// Forward the client's `Authorization` header (by default it is removed: the upstream gets
    /// the gateway's assertion instead of a replayable bearer token).
    #[serde(default)]
    pub forward_authorization: bool,
    /// The step-up requirements of this route (the keys of a `[[route]]` of
    /// `StepUpPolicy::from_toml`, without `path`/`methods`): `scopes`, `roles`, `min_trust`,
    /// `max_risk`, `acr`, `anonymous`, `mode`, ...
    #[serde(default)]
    pub policy: Option<toml::Spanned<toml::Table>>,
}

/// `[route.tls]`: TLS to an `https://` upstream. The upstream's certificate is always verified;
/// there is no way to turn that off.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM CA certificates to trust for this upstream instead of the system's root certificates.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM certificate chain (leaf first) the gateway presents to the upstream (mutual TLS);
    /// needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The name the upstream's certificate is verified for (and sent as SNI), instead of the
    /// URL's host: for an upstream reached by IP address or an internal alias.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `[[issuer]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier (tokens' `iss`).
    pub issuer: String,
    /// A JWK Set URL; absent means OpenID Connect discovery from `issuer`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Accepted `typ` header values (default `["at+jwt"]`).
    #[serde(default)]
    pub token_types: Option<Vec<String>>,
    /// Dotted path of the roles claim (default `roles`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Claims every token must carry besides the standard ones.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// **Relaxation:** fetch keys over plain `http` (development issuers only).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// `[jwt]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `enforce` (default), `report_only`, `off`, `{ rollout = N }`.
    #[serde(default)]
    pub mode: Mode,
    /// Clock skew tolerated, seconds (default 30, at most 300).
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// Cache this many verified tokens (default: no cache).
    #[serde(default)]
    pub cache_verified_tokens: Option<u64>,
    /// `realm` of the `WWW-Authenticate` challenge.
    #[serde(default)]
    pub realm: Option<String>,
}

/// `[device]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Enforcement mode.
    #[serde(default)]
    pub mode: Mode,
    /// **Weak:** identify devices by `X-Device-Id` + `X-Device-Fingerprint`.
    #[serde(default)]
    pub headers: bool,
    /// Identify devices by the mutual-TLS client certificate: `"sha256"` (fingerprint) or a URI
    /// SAN prefix such as `"spiffe://example.org/device/"`.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// Register unknown devices to the verified subject on first sight.
    #[serde(default)]
    pub auto_register: bool,
    /// Let requests without device evidence through with this risk weight (default: refuse).
    #[serde(default)]
    pub allow_missing_weight: Option<f64>,
    /// `[device.posture]`: identify devices by signed posture assertions of the organisation's
    /// device management.
    #[serde(default)]
    pub posture: Option<PostureConfig>,
}

/// `[device.posture]`: signed device-posture assertions (compact JWS in `X-Device-Posture`,
/// header `typ` `device-posture+jwt`), verified with the device management's public keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureConfig {
    /// The `iss` of the assertions.
    pub issuer: String,
    /// A JWK Set file (`{"keys": [...]}`) with the issuer's public keys; re-read on reload.
    pub jwks: PathBuf,
    /// The `aud` the assertions must carry (default: not checked).
    #[serde(default)]
    pub audience: Option<String>,
    /// An assertion is fresh for this long after its `iat`, seconds (default 3600).
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
    /// The request header carrying the assertion (default `x-device-posture`).
    #[serde(default)]
    pub header: Option<String>,
}

/// `[geo]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Enforcement mode.
    #[serde(default)]
    pub mode: Mode,
    /// Only these countries (ISO codes) are admitted.
    #[serde(default)]
    pub allow_countries: Option<Vec<String>>,
    /// These countries are refused.
    #[serde(default)]
    pub block_countries: Vec<String>,
    /// These autonomous systems are refused.
    #[serde(default)]
    pub block_asns: Vec<u32>,
    /// Networks treated as the organisation's own.
    #[serde(default)]
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Networks refused outright.
    #[serde(default)]
    pub blocked_networks: Vec<ipnet::IpNet>,
    /// **Relaxation:** admit addresses whose country is unknown despite an allowlist.
    #[serde(default)]
    pub admit_unknown_countries: bool,
    /// `signal` (default), `deny` or `off`.
    #[serde(default)]
    pub impossible_travel: TravelMode,
    /// Travel speed limit in km/h (default 900).
    #[serde(default)]
    pub max_travel_speed_kmh: Option<f64>,
    /// Files of trusted networks (one address or network per line, `#` comments).
    #[serde(default)]
    pub trusted_networks_files: Vec<PathBuf>,
    /// Files of blocked networks (same format).
    #[serde(default)]
    pub blocked_networks_files: Vec<PathBuf>,
    /// `[geo.anonymizer_lists]`: label (`tor`, `vpn`) → file of anonymiser networks (same
    /// format); a listed address gets the `network.anonymizer` signal.
    #[serde(default)]
    pub anonymizer_lists: BTreeMap<String, PathBuf>,
    /// Refuse listed anonymisers instead of only signalling them.
    #[serde(default)]
    pub block_anonymizers: bool,
    /// `[geo.maxmind]`: MaxMind (or compatible) databases instead of the embedded country data,
    /// which still fills what they lack.
    #[serde(default)]
    pub maxmind: Option<MaxMindConfig>,
    /// `[geo.working_hours]`: requests outside them get the `time.outside_hours` signal.
    #[serde(default)]
    pub working_hours: Option<WorkingHoursConfig>,
}

/// `[geo.maxmind]`: `.mmdb` files, read into memory at start and on every reload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MaxMindConfig {
    /// A City (or Enterprise) database: country, city and coordinates.
    #[serde(default)]
    pub city: Option<PathBuf>,
    /// A Country database (instead of `city`, which it excludes).
    #[serde(default)]
    pub country: Option<PathBuf>,
    /// An ASN (or ISP) database: autonomous system and organisation.
    #[serde(default)]
    pub asn: Option<PathBuf>,
}

/// `[geo.working_hours]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingHoursConfig {
    /// An IANA time zone, such as `Europe/Berlin`.
    pub time_zone: String,
    /// Working days (`mon` .. `sun`; default Monday to Friday).
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Start of the working time, `HH:MM` local (default `08:00`).
    #[serde(default)]
    pub start: Option<String>,
    /// End of the working time, `HH:MM` local, exclusive (default `18:00`; before `start`: an
    /// overnight shift; equal to `start`: the whole day).
    #[serde(default)]
    pub end: Option<String>,
}

impl WorkingHoursConfig {
    /// The working hours, or the key (under `geo.working_hours`) and what is wrong.
    pub(crate) fn build(&self) -> Result<zerotrust_geo::WorkingHours, (&'static str, String)> {
        let tz: zerotrust_geo::Tz = self.time_zone.parse().map_err(|_| {
            (
                "time_zone",
                format!("{:?} is not an IANA time zone", self.time_zone),
            )
        })?;
        let mut hours = zerotrust_geo::WorkingHours::new(tz);
        if let Some(days) = &self.days {
            let parsed = days
                .iter()
                .map(|d| {
                    d.parse::<zerotrust_geo::Weekday>()
                        .map_err(|_| ("days", format!("{d:?} is not a day of the week")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() {
                return Err(("days", "at least one day is needed".into()));
            }
            hours = hours.days(parsed);
        }
        let time = |key: &'static str, text: &Option<String>, default: u32| match text {
            None => zerotrust_geo::NaiveTime::from_hms_opt(default, 0, 0)
                .ok_or((key, "invalid default".to_owned())),
            Some(t) => zerotrust_geo::NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| (key, format!("{t:?} is not a time HH:MM"))),
        };
        let start = time("start", &self.start, 8)?;
        let end = time("end", &self.end, 18)?;
        Ok(hours.between(start, end))
    }
}

impl GeoConfig {
    /// Whether the section names files (lists, databases), which a reload re-reads.
    pub(crate) fn has_files(&self) -> bool {
        !self.trusted_networks_files.is_empty()
            || !self.blocked_networks_files.is_empty()
            || !self.anonymizer_lists.is_empty()
            || self.maxmind.is_some()
    }
}

/// What impossible travel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TravelMode {
    /// Adds the `travel.impossible` signal.
    #[default]
    Signal,
    /// Refuses the request.
    Deny,
    /// Not checked.
    Off,
}

/// `[stepup]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepUpConfig {
    /// Enforcement mode of every route's decision (a route's `policy.mode` overrides it).
    #[serde(default)]
    pub mode: Mode,
    /// Role to permissions, for routes' `permissions`.
    #[serde(default)]
    pub rbac: HashMap<String, Vec<String>>,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON Lines file with the hash chain; absent means records go to the log (`tracing`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Rotate the file at this size, bytes.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Rotated files to keep.
    #[serde(default)]
    pub keep_rotated: Option<usize>,
    /// Also write records to the log (`tracing`) when a file is set.
    #[serde(default)]
    pub log: bool,
}

/// `[client_ip]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// The proxies whose forwarding header is believed (CIDR). None by default.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `x-forwarded-for` (default when proxies are trusted) or `forwarded`.
    #[serde(default)]
    pub header: Option<ForwardedHeader>,
}

/// Which forwarding header trusted proxies set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// RFC 7239 `Forwarded`.
    Forwarded,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// `iss` of the assertions (default `ztgate`).
    #[serde(default = "default_identity_issuer")]
    pub issuer: String,
    /// The request header carrying the assertion (default `x-zt-assertion`).
    #[serde(default = "default_identity_header")]
    pub header: String,
    /// Lifetime of an assertion, seconds (default 30, at most 60).
    #[serde(default = "default_identity_ttl")]
    pub ttl_seconds: u64,
    /// PEM PKCS#8 P-256 private key to sign with, so replicas share one JWKS; absent means a key
    /// generated at start (published at `/.well-known/ztgate/jwks.json`).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Also send `X-Zt-Subject`, `X-Zt-Trust-Level`, `X-Zt-Risk`, `X-Zt-Decision`.
    #[serde(default)]
    pub plain_headers: bool,
    /// **Relaxation:** reuse a signed assertion for identical requests (same audience, method,
    /// path, query, subject and `zt` claims) for up to this many seconds (default 0: a fresh
    /// assertion, with its own `jti`, per request; at most 10, and less than `ttl_seconds`). A
    /// reused assertion always has at least `ttl_seconds - reuse_seconds` seconds left.
    #[serde(default)]
    pub reuse_seconds: u64,
}

fn default_identity_issuer() -> String {
    "ztgate".into()
}
fn default_identity_header() -> String {
    "x-zt-assertion".into()
}
fn default_identity_ttl() -> u64 {
    30
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuer: default_identity_issuer(),
            header: default_identity_header(),
            ttl_seconds: default_identity_ttl(),
            signing_key: None,
            plain_headers: false,
            reuse_seconds: 0,
        }
    }
}

/// `[upstream]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// TCP connect timeout, milliseconds (default 2000).
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time until the upstream's response headers, milliseconds (default 30000).
    #[serde(default = "default_response_ms")]
    pub response_header_timeout_ms: u64,
    /// Idle pooled connections are closed after this many seconds (default 90).
    #[serde(default = "default_idle_s")]
    pub pool_idle_timeout_seconds: u64,
    /// Most idle connections kept per upstream (default 32).
    #[serde(default = "default_idle_per_host")]
    pub pool_max_idle_per_host: usize,
    /// A streaming body (the request's to the upstream, the response's to the client) that
    /// delivers no bytes for this long is ended with an error, milliseconds (default 30000).
    #[serde(default = "default_body_idle_ms")]
    pub body_idle_timeout_ms: u64,
}

fn default_connect_ms() -> u64 {
    2_000
}
fn default_response_ms() -> u64 {
    30_000
}
fn default_idle_s() -> u64 {
    90
}
fn default_idle_per_host() -> usize {
    32
}
fn default_body_idle_ms() -> u64 {
    30_000
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: default_connect_ms(),
            response_header_timeout_ms: default_response_ms(),
            pool_idle_timeout_seconds: default_idle_s(),
            pool_max_idle_per_host: default_idle_per_host(),
            body_idle_timeout_ms: default_body_idle_ms(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// On shutdown, wait at most this long for requests in flight, seconds (default 30).
    #[serde(default = "default_drain")]
    pub drain_timeout_seconds: u64,
    /// Time a client has to send its request headers, seconds (default 30).
    #[serde(default = "default_header_read")]
    pub header_read_timeout_seconds: u64,
}

fn default_drain() -> u64 {
    30
}
fn default_header_read() -> u64 {
    30
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            drain_timeout_seconds: default_drain(),
            header_read_timeout_seconds: default_header_read(),
        }
    }
}

/// The longest `identity.reuse_seconds` accepted.
pub const MAX_REUSE_SECONDS: u64 = 10;

/// Headers the assertion may not replace: the client's own are stripped under its name.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
];

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read: {e}")))?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::new(file, "", e.message().to_owned()).at(text, e.span().map(|s| s.start))
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            let inner = e.into_inner();
            ConfigError::new(file, key, inner.message().to_owned())
                .at(text, inner.span().map(|s| s.start))
        })?;
        config.check(text, file)?;
        Ok(config)
    }

    /// The checks serde cannot express.
    fn check(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let err = |key: String, msg: String| Err(ConfigError::new(file, key, msg));
        if self.listeners.is_empty() {
            return err(
                "listener".into(),
                "at least one [[listener]] is needed".into(),
            );
        }
        if self.routes.is_empty() {
            return err("route".into(), "at least one [[route]] is needed".into());
        }
        if self.issuers.is_empty() {
            return err("issuer".into(), "at least one [[issuer]] is needed".into());
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.audiences.is_empty() {
                return err(
                    format!("issuer[{i}].audiences"),
                    "at least one audience is needed".into(),
                );
            }
        }
        let mut seen = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            if !route.prefix.starts_with('/') {
                return err(
                    format!("route[{i}].prefix"),
                    format!("{:?} must start with '/'", route.prefix),
                );
            }
            if seen.contains(&route.prefix) {
                return err(
                    format!("route[{i}].prefix"),
                    format!("{:?} is already the prefix of another route", route.prefix),
                );
            }
            seen.push(route.prefix.clone());
            let upstream = match crate::proxy::Upstream::parse(&route.upstream) {
                Ok(upstream) => upstream,
                Err(message) => return err(format!("route[{i}].upstream"), message),
            };
            if let Some(tls) = &route.tls {
                if !upstream.is_https() {
                    return err(
                        format!("route[{i}].tls"),
                        format!("{:?} is not an https:// upstream", route.upstream),
                    );
                }
                if tls.client_cert.is_some() != tls.client_key.is_some() {
                    return err(
                        format!("route[{i}].tls"),
                        "client_cert and client_key go together".into(),
                    );
                }
                if let Some(name) = &tls.server_name
                    && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
                {
                    return err(
                        format!("route[{i}].tls.server_name"),
                        format!("{name:?} is not a DNS name or IP address"),
                    );
                }
            }
            if let Some(policy) = &route.policy {
                for reserved in ["path", "methods"] {
                    if policy.get_ref().contains_key(reserved) {
                        return Err(ConfigError::new(
                            file,
                            format!("route[{i}].policy.{reserved}"),
                            "a route's policy applies to its whole prefix: it takes no path or methods",
                        )
                        .at(text, Some(policy.span().start)));
                    }
                }
                crate::stack::build_policy(self, i, text, file)?;
            }
        }
        let id = &self.identity;
        if id.ttl_seconds == 0 || id.ttl_seconds > 60 {
            return err(
                "identity.ttl_seconds".into(),
                format!("{} is out of range 1..=60", id.ttl_seconds),
            );
        }
        if id.reuse_seconds > MAX_REUSE_SECONDS || id.reuse_seconds >= id.ttl_seconds {
            return err(
                "identity.reuse_seconds".into(),
                format!(
                    "{} is out of range 0..={MAX_REUSE_SECONDS} and must be less than ttl_seconds ({})",
                    id.reuse_seconds, id.ttl_seconds
                ),
            );
        }
        match http::HeaderName::from_bytes(id.header.as_bytes()) {
            Err(_) => {
                return err(
                    "identity.header".into(),
                    format!("{:?} is not a header name", id.header),
                );
            }
            Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
                return err(
                    "identity.header".into(),
                    format!(
                        "{:?} is a standard header and cannot carry the assertion",
                        id.header
                    ),
                );
            }
            Ok(_) => {}
        }
        if id.issuer.trim().is_empty() {
            return err("identity.issuer".into(), "must not be empty".into());
        }
        if self.upstream.body_idle_timeout_ms == 0 {
            return err(
                "upstream.body_idle_timeout_ms".into(),
                "must be at least 1".into(),
            );
        }
        if let Some(device) = &self.device {
            if !device.headers && device.client_certificate.is_none() && device.posture.is_none() {
                return err(
                    "device".into(),
                    "no way to identify devices: set headers = true, client_certificate or [device.posture]"
                        .into(),
                );
            }
            if let Some(posture) = &device.posture {
                if posture.issuer.trim().is_empty() {
                    return err("device.posture.issuer".into(), "must not be empty".into());
                }
                if posture.max_age_seconds == Some(0) {
                    return err(
                        "device.posture.max_age_seconds".into(),
                        "must be at least 1".into(),
                    );
                }
                if let Some(h) = &posture.header
                    && http::HeaderName::from_bytes(h.as_bytes()).is_err()
                {
                    return err(
                        "device.posture.header".into(),
                        format!("{h:?} is not a header name"),
                    );
                }
            }
        }
        if let Some(geo) = &self.geo {
            if let Some(m) = &geo.maxmind {
                if m.city.is_some() && m.country.is_some() {
                    return err(
                        "geo.maxmind".into(),
                        "city and country fill the same slot: set one of them".into(),
                    );
                }
                if m.city.is_none() && m.country.is_none() && m.asn.is_none() {
                    return err(
                        "geo.maxmind".into(),
                        "no database: set city, country or asn".into(),
                    );
                }
            }
            for label in geo.anonymizer_lists.keys() {
                if label.trim().is_empty() {
                    return err("geo.anonymizer_lists".into(), "a list needs a label".into());
                }
            }
            if let Some(hours) = &geo.working_hours
                && let Err((key, message)) = hours.build()
            {
                return err(format!("geo.working_hours.{key}"), message);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
