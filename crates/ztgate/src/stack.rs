//! The configuration compiled into services: one zerotrust stack per route, around the forwarder.
//!
//! Per route, inside the gateway's audit layer:
//! `JwtVerify → DeviceCheck (if [device]) → GeoRisk (if [geo]) → StepUp (the route's policy) →
//! Forward`. A [`Stack`] is immutable; a reload compiles a new one and swaps it in, so requests in
//! flight finish on the stack they started on. What must survive a reload lives in [`Persistent`]
//! (device registry, location history, signing key, the plain connection pool), and the token
//! verifier (with its keys and cache), the geo data and each TLS upstream client (with its pool)
//! are kept when what they are built from did not change.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use zerotrust_core::{
    ClientIpResolver, Enforcement, ForwardedSource, MemoryDeviceRegistry, MemoryLocationHistory,
};
use zerotrust_device::{CertificateIds, DeviceCheck, DeviceCheckLayer, PostureAssertions};
use zerotrust_geo::{
    EmbeddedGeo, GeoLocatorExt as _, GeoRisk, GeoRiskError, GeoRiskLayer, ListError, MaxMindError,
    MaxMindGeo,
};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer, KeyPolicy, KeySet};
use zerotrust_stepup::{PolicyError, StepUpLayer, StepUpPolicy};

use crate::client::{HttpClient, TlsKey};
use crate::config::{
    Config, ConfigError, ForwardedHeader, GeoConfig, MaxMindConfig, PostureConfig, TravelMode,
    UpstreamConfig,
};
use crate::identity::Signer;
use crate::proxy::{self, Forward, Target, Upstream};

/// One route's whole service.
pub(crate) type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// What outlives reloads.
pub(crate) struct Persistent {
    pub(crate) registry: Arc<MemoryDeviceRegistry>,
    pub(crate) history: Arc<MemoryLocationHistory>,
    pub(crate) signer: Arc<Signer>,
    /// The client of the `http://` routes.
    pub(crate) plain: HttpClient,
    /// `[upstream]` as read at start (timeouts and pool settings of every client).
    pub(crate) upstream: UpstreamConfig,
}

/// A compiled route.
pub(crate) struct CompiledRoute {
    pub(crate) prefix: String,
    pub(crate) service: RouteService,
}

/// The compiled configuration.
pub(crate) struct Stack {
    pub(crate) config: Config,
    /// Longest prefix first.
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) resolver: ClientIpResolver,
    pub(crate) verifier: JwtVerifier,
    geo: Option<GeoRisk>,
    /// The clients of the `https://` routes, by what they are built from.
    tls_clients: Vec<(TlsKey, HttpClient)>,
}

impl Stack {
    /// The route serving `path`: the longest prefix matching on a segment boundary.
    pub(crate) fn route(&self, path: &str) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// Whether every issuer's keys are loaded.
    pub(crate) fn is_ready(&self) -> bool {
        self.verifier.is_ready()
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn build_verifier(config: &Config, file: &Path) -> Result<JwtVerifier, ConfigError> {
    let mut builder = JwtVerifier::builder();
    for c in &config.issuers {
        let mut issuer = match &c.jwks_url {
            Some(url) => Issuer::jwks(&c.issuer, url),
            None => Issuer::discover(&c.issuer),
        }
        .audiences(c.audiences.iter().cloned());
        if let Some(types) = &c.token_types {
            issuer = issuer.accept_token_types(types.iter().cloned());
        }
        if let Some(path) = &c.roles_claim {
            issuer = issuer.roles_claim(path);
        }
        for claim in &c.required_claims {
            issuer = issuer.require_claim(claim.clone());
        }
        if c.allow_insecure_http {
            issuer = issuer.allow_insecure_http();
        }
        builder = builder.issuer(issuer);
    }
    if let Some(s) = config.jwt.leeway_seconds {
        builder = builder.leeway(Duration::from_secs(s));
    }
    if let Some(n) = config.jwt.cache_verified_tokens {
        builder = builder.cache_verified_tokens(n);
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(file, "issuer", e.to_string()))
}

fn build_resolver(config: &Config) -> ClientIpResolver {
    let c = &config.client_ip;
    if c.trusted_proxies.is_empty() {
        return ClientIpResolver::peer_only();
    }
    let source = match c.header.unwrap_or(ForwardedHeader::XForwardedFor) {
        ForwardedHeader::XForwardedFor => ForwardedSource::XForwardedFor,
        ForwardedHeader::Forwarded => ForwardedSource::Forwarded,
    };
    ClientIpResolver::builder()
        .trusted_proxies(c.trusted_proxies.iter().copied())
        .source(source)
        .build()
}

fn build_device(
    config: &Config,
    file: &Path,
    persistent: &Persistent,
) -> Result<Option<DeviceCheck>, ConfigError> {
    let Some(c) = &config.device else {
        return Ok(None);
    };
    let mut b = DeviceCheck::builder_shared(persistent.registry.clone());
    if c.headers {
        b = b.device_headers();
    }
    if let Some(ids) = &c.client_certificate {
        b = b.client_certificates(if ids == "sha256" {
            CertificateIds::Sha256Fingerprint
        } else {
            CertificateIds::UriSanPrefix(ids.clone())
        });
    }
    if c.auto_register {
        b = b.auto_register();
    }
    if let Some(w) = c.allow_missing_weight {
        b = b.allow_missing_device(w);
    }
    if let Some(p) = &c.posture {
        b = b.posture_assertions(posture_assertions(p, file)?);
    }
    b.enforcement(c.mode.into())
        .build()
        .map(Some)
        .map_err(|e| ConfigError::new(file, "device", e.to_string()))
}

fn posture_assertions(p: &PostureConfig, file: &Path) -> Result<PostureAssertions, ConfigError> {
    let jwks_err = |m: String| {
        ConfigError::new(
            file,
            "device.posture.jwks",
            format!("{}: {m}", p.jwks.display()),
        )
    };
    let json = std::fs::read(&p.jwks).map_err(|e| jwks_err(e.to_string()))?;
    let (keys, ignored) =
        KeySet::from_jwk_set(&json, &KeyPolicy::remote()).map_err(|e| jwks_err(e.to_string()))?;
    for key in &ignored {
        tracing::warn!(
            target: "ztgate",
            file = %p.jwks.display(),
            index = key.index,
            kid = ?key.kid,
            error = %key.error,
            "device.posture.jwks: key left out"
        );
    }
    if keys.is_empty() {
        return Err(jwks_err("no usable public key".into()));
    }
    let mut a = PostureAssertions::new(keys, p.issuer.clone());
    if let Some(aud) = &p.audience {
        a = a.audience(aud.clone());
    }
    if let Some(s) = p.max_age_seconds {
        a = a.max_age(Duration::from_secs(s));
    }
    if let Some(h) = &p.header {
        let name = http::HeaderName::from_bytes(h.as_bytes())
            .map_err(|e| ConfigError::new(file, "device.posture.header", format!("{h:?}: {e}")))?;
        a = a.header(name);
    }
    Ok(a)
}

/// The key of the list file `path` in `[geo]`, for an error that names the file.
fn list_key(c: &GeoConfig, path: &Path) -> String {
    let index = |files: &[std::path::PathBuf]| files.iter().position(|f| f == path);
    if let Some(i) = index(&c.trusted_networks_files) {
        return format!("geo.trusted_networks_files[{i}]");
    }
    if let Some(i) = index(&c.blocked_networks_files) {
        return format!("geo.blocked_networks_files[{i}]");
    }
    c.anonymizer_lists
        .iter()
        .find(|(_, f)| f.as_path() == path)
        .map_or_else(
            || "geo".to_owned(),
            |(label, _)| format!("geo.anonymizer_lists.{label}"),
        )
}

fn maxmind(c: &MaxMindConfig, file: &Path) -> Result<MaxMindGeo, ConfigError> {
    let city_key = if c.country.is_some() {
        "geo.maxmind.country"
    } else {
        "geo.maxmind.city"
    };
    let mut b = MaxMindGeo::builder();
    if let Some(city) = c.city.as_ref().or(c.country.as_ref()) {
        b = b.city_file(city);
    }
    if let Some(asn) = &c.asn {
        b = b.asn_file(asn);
    }
    b.build().map_err(|e| {
        let key = match &e {
            MaxMindError::Read { slot, .. }
            | MaxMindError::Invalid { slot, .. }
            | MaxMindError::WrongKind { slot, .. } => {
                if *slot == "asn" {
                    "geo.maxmind.asn"
                } else {
                    city_key
                }
            }
            _ => "geo.maxmind",
        };
        let path = if key == "geo.maxmind.asn" {
            c.asn.as_ref()
        } else {
            c.city.as_ref().or(c.country.as_ref())
        };
        let message = match (&e, path) {
            // `Read` names the file already.
            (MaxMindError::Read { .. }, _) | (_, None) => e.to_string(),
            (_, Some(p)) => format!("{}: {e}", p.display()),
        };
        ConfigError::new(file, key, message)
    })
}

fn build_geo(
    config: &Config,
    file: &Path,
    resolver: &ClientIpResolver,
    persistent: &Persistent,
) -> Result<Option<GeoRisk>, ConfigError> {
    let Some(c) = &config.geo else {
        return Ok(None);
    };
    let mut b = GeoRisk::builder()
        .client_ip_resolver(resolver.clone())
        .shared_location_history(persistent.history.clone())
        .trusted_networks(c.trusted_networks.iter().copied())
        .blocked_networks(c.blocked_networks.iter().copied())
        .block_countries(&c.block_countries)
        .block_asns(c.block_asns.iter().copied());
    if let Some(allow) = &c.allow_countries {
        b = b.allow_countries(allow);
    }
    if c.admit_unknown_countries {
        b = b.admit_unknown_countries();
    }
    match c.impossible_travel {
        TravelMode::Signal => {}
        TravelMode::Deny => b = b.deny_impossible_travel(),
        TravelMode::Off => b = b.without_travel_check(),
    }
    if let Some(kmh) = c.max_travel_speed_kmh {
        b = b.max_travel_speed_kmh(kmh);
    }
    for path in &c.trusted_networks_files {
        b = b.trusted_networks_file(path);
    }
    for path in &c.blocked_networks_files {
        b = b.blocked_networks_file(path);
    }
    for (label, path) in &c.anonymizer_lists {
        b = b.anonymizer_list(label.as_str(), path);
    }
    if c.block_anonymizers {
        b = b.block_anonymizers();
    }
    if let Some(m) = &c.maxmind {
        // The embedded country data fills what the databases lack (an ASN-only setup keeps its
        // countries, for example).
        b = b.locator(maxmind(m, file)?.or(EmbeddedGeo::new()));
    }
    if let Some(hours) = &c.working_hours {
        let hours = hours.build().map_err(|(key, message)| {
            ConfigError::new(file, format!("geo.working_hours.{key}"), message)
        })?;
        b = b.working_hours(hours);
    }
    b.enforcement(c.mode.into()).build().map(Some).map_err(|e| {
        let key = match &e {
            GeoRiskError::Lists(ListError::Read { path, .. } | ListError::Parse { path, .. }) => {
                list_key(c, path)
            }
            _ => "geo".to_owned(),
        };
        ConfigError::new(file, key, e.to_string())
    })
}

pub(crate) fn build_policy(
    config: &Config,
    index: usize,
    text: &str,
    file: &Path,
) -> Result<(StepUpPolicy, bool), ConfigError> {
    let route = config.routes.get(index);
    let policy = route.and_then(|r| r.policy.as_ref());
    let key = format!("route[{index}].policy");
    let mut doc = toml::Table::new();
    let mut anonymous = false;
    if let Some(policy) = policy {
        anonymous = policy
            .get_ref()
            .get("anonymous")
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        doc.insert(
            "default".into(),
            toml::Value::Table(policy.get_ref().clone()),
        );
    }
    let at = policy.map(|p| p.span());
    let fail = |message: String| {
        // The step-up parser saw a document of its own: keep its last line (what is wrong) and
        // point at the offending key inside this file's policy table when it is named.
        let what = message
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(&message)
            .trim()
            .to_owned();
        let offset = at.as_ref().map(|span| {
            named_key(&what)
                .and_then(|k| find_key_line(text, span.start, k))
                .unwrap_or(span.start)
        });
        ConfigError::new(file, key.clone(), format!("invalid step-up policy: {what}"))
            .at(text, offset)
    };
    let source = toml::to_string(&doc).map_err(|e| fail(e.to_string()))?;
    let mut builder = StepUpPolicy::from_toml(&source)
        .map_err(|e| fail(e.to_string()))?
        .enforcement(config.stepup.mode.into());
    for (role, permissions) in &config.stepup.rbac {
        builder = builder.role(role.clone(), permissions.iter().cloned());
    }
    // One realm for the gateway: the step-up challenges name the token check's.
    if let Some(realm) = &config.jwt.realm {
        builder = builder.realm(realm.clone());
    }
    let policy = builder.build().map_err(|e| match e {
        // The realm comes from `[jwt]`, not from the route's policy: name that key.
        PolicyError::Realm { .. } => ConfigError::new(file, "jwt.realm", e.to_string()),
        e => fail(e.to_string()),
    })?;
    Ok((policy, anonymous))
}

/// The key a serde message names (`unknown field `x``, `invalid value ... for `x``).
fn named_key(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message.get(start..)?.find('`')?;
    message.get(start..start + len)
}

/// The offset of the first line at or after `from`, within the same table, that assigns `key`.
fn find_key_line(text: &str, from: usize, key: &str) -> Option<usize> {
    let mut offset = from;
    let mut first = true;
    for line in text.get(from..)?.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if !first && trimmed.starts_with('[') {
            return None;
        }
        first = false;
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// Compiles `config` (read from `text` in `file`), keeping what did not change from `previous`.
pub(crate) fn compile(
    config: Config,
    text: &str,
    file: &Path,
    previous: Option<&Stack>,
    persistent: &Persistent,
) -> Result<Stack, ConfigError> {
    let verifier = match previous {
        Some(p) if p.config.issuers == config.issuers && p.config.jwt == config.jwt => {
            p.verifier.clone()
        }
        _ => build_verifier(&config, file)?,
    };
    let resolver = build_resolver(&config);
    let device = build_device(&config, file, persistent)?;
    // Kept across a reload when unchanged, unless it names files: those are re-read.
    let geo = match previous {
        Some(p)
            if p.config.geo == config.geo
                && p.config.client_ip == config.client_ip
                && !config.geo.as_ref().is_some_and(GeoConfig::has_files) =>
        {
            p.geo.clone()
        }
        _ => build_geo(&config, file, &resolver, persistent)?,
    };
    // `[upstream]` is read at start only.
    let shared = Arc::new(proxy::Shared {
        signer: persistent.signer.clone(),
        trusted_proxies: config.client_ip.trusted_proxies.clone(),
        response_timeout: Duration::from_millis(persistent.upstream.response_header_timeout_ms),
        body_idle_timeout: Duration::from_millis(persistent.upstream.body_idle_timeout_ms),
    });
    let mut tls_clients: Vec<(TlsKey, HttpClient)> = Vec::new();
    let jwt_mode: Enforcement = config.jwt.mode.into();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        let upstream = Upstream::parse(&r.upstream)
            .map_err(|m| ConfigError::new(file, format!("route[{i}].upstream"), m))?;
        let client = if upstream.is_https() {
            // HTTP/2 is offered unless the route sends the client's Host (see `client`).
            let key = TlsKey::read(r.tls.as_ref(), !r.preserve_host, file, i)?;
            let known = tls_clients
                .iter()
                .chain(previous.iter().flat_map(|p| p.tls_clients.iter()))
                .find(|(k, _)| *k == key)
                .map(|(_, c)| c.clone());
            let client = match known {
                Some(client) => client,
                None => key.build(&persistent.upstream, file, i)?,
            };
            if !tls_clients.iter().any(|(k, _)| *k == key) {
                tls_clients.push((key, client.clone()));
            }
            client
        } else {
            persistent.plain.clone()
        };
        let (policy, anonymous) = build_policy(&config, i, text, file)?;
        // An anonymous route still reads a token when one is sent, but a missing or bad one is
        // only recorded: the route's policy admits the request without identity.
        let mode = if anonymous && jwt_mode.is_on() {
            Enforcement::ReportOnly
        } else {
            jwt_mode
        };
        let mut jwt = JwtVerifyLayer::new(verifier.clone()).enforcement(mode);
        if let Some(realm) = &config.jwt.realm {
            jwt = jwt.realm(realm.clone());
        }
        let forward = Forward {
            target: Arc::new(Target {
                prefix: r.prefix.clone(),
                route: Arc::from(r.prefix.as_str()),
                client,
                upstream,
                strip_prefix: r.strip_prefix,
                preserve_host: r.preserve_host,
                forward_authorization: r.forward_authorization,
            }),
            shared: shared.clone(),
        };
        let service = ServiceBuilder::new()
            .layer(jwt)
            .option_layer(device.clone().map(DeviceCheckLayer::new))
            .option_layer(geo.clone().map(GeoRiskLayer::new))
            .layer(StepUpLayer::new(policy))
            .service(forward);
        routes.push(CompiledRoute {
            prefix: r.prefix.clone(),
            service: BoxCloneSyncService::new(service),
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(Stack {
        config,
        routes,
        resolver,
        verifier,
        geo,
        tls_clients,
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/", "/anything"));
    }
}
