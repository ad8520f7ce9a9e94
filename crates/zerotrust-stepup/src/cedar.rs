//! Attribute-based policy in the Cedar language (feature `cedar`): [`CedarPolicies`] compiles
//! `.cedar` files once, answers each request from `ZeroTrust` and the request, and reloads.
//!
//! What the policies see, built per request without a JSON round trip:
//!
//! - principal: `User::"<subject>"` with a verified identity; otherwise `Workload::"<URI SAN>"`
//!   (or the certificate's common name) with a mutual-TLS client certificate; otherwise
//!   `Anonymous::""`.
//! - action: `Action::"<METHOD>"` (`Action::"GET"`, `Action::"POST"`, ...).
//! - resource: `Route::"<matched pattern>"` (`Route::"/api/users/{id}"`, `Route::"(default)"`)
//!   with attribute `path`, the request's path.
//! - context: `risk`, `trust`, `trust_rank`, `signals`, and when the earlier layers established
//!   them `device`, `network` and `ip`.
//!
//! [`CedarPolicies::SCHEMA`] declares every attribute. Attributes no loaded policy names are left
//! out ([`Reads`]): they cost time to build and nothing could read them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use http::Method;
use miette::Diagnostic;
use zerotrust_core::{PeerCertificate, TrustLevel, ZeroTrust};

/// A line and column (both from 1) in a Cedar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CedarLocation {
    /// The line, from 1.
    pub line: usize,
    /// The column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for CedarLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// `file` or `file:line:column`.
fn at(file: &Path, location: &Option<CedarLocation>) -> String {
    match location {
        Some(location) => format!("{}:{location}", file.display()),
        None => file.display().to_string(),
    }
}

/// Cedar files that cannot be loaded. Each error names the file (and where Cedar says so, the
/// line and column) and carries Cedar's message. On [`CedarPolicies::reload`] the policies in
/// force stay as they were.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CedarError {
    /// A file cannot be read.
    #[error("{}: cannot read the file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The schema does not parse or is not consistent.
    #[error("{}: invalid Cedar schema: {message}", at(file, location))]
    Schema {
        /// The schema file.
        file: PathBuf,
        /// Where Cedar found the error, when it says.
        location: Option<CedarLocation>,
        /// Cedar's message.
        message: String,
    },
    /// A policy does not parse.
    #[error("{}: invalid Cedar policy: {message}", at(file, location))]
    Syntax {
        /// The policy file.
        file: PathBuf,
        /// Where Cedar found the error, when it says.
        location: Option<CedarLocation>,
        /// Cedar's message.
        message: String,
    },
    /// A policy does not type-check against the schema (an unknown attribute, a wrong type).
    #[error("{}: policy does not match the schema: {message}", at(file, location))]
    Invalid {
        /// The policy file.
        file: PathBuf,
        /// Where Cedar found the error, when it says.
        location: Option<CedarLocation>,
        /// The policy's id.
        policy: String,
        /// Cedar's message.
        message: String,
    },
    /// The file declares a policy template: templates need links this engine does not make.
    #[error("{}: policy templates are not supported ({policy})", file.display())]
    Template {
        /// The policy file.
        file: PathBuf,
        /// The template's id.
        policy: String,
    },
    /// Two policies of one file carry the same `@id`.
    #[error("{}: policy id {policy} is used twice", file.display())]
    DuplicateId {
        /// The policy file.
        file: PathBuf,
        /// The id.
        policy: String,
    },
}

/// Where Cedar places `error` in `text`, and its message with its help.
fn diagnose(error: &dyn Diagnostic, text: &str) -> (Option<CedarLocation>, String) {
    let location = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| locate(text, label.offset()));
    let mut message = error.to_string();
    if let Some(help) = error.help() {
        message.push_str(" (");
        message.push_str(&help.to_string());
        message.push(')');
    }
    (location, message)
}

fn locate(text: &str, offset: usize) -> CedarLocation {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    CedarLocation {
        line: before.matches('\n').count() + 1,
        column: before.get(line_start..).map_or(0, |l| l.chars().count()) + 1,
    }
}

/// A file's modification time and length: what the reloader compares.
type Stamp = Option<(Option<SystemTime>, u64)>;

/// Where policies or a schema come from.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    Text { name: PathBuf, text: Arc<str> },
}

impl Source {
    fn name(&self) -> &Path {
        match self {
            Source::File(path) => path,
            Source::Text { name, .. } => name,
        }
    }

    fn read(&self) -> Result<Arc<str>, CedarError> {
        match self {
            Source::File(path) => std::fs::read_to_string(path)
                .map(Arc::from)
                .map_err(|source| CedarError::Read {
                    file: path.clone(),
                    source,
                }),
            Source::Text { text, .. } => Ok(Arc::clone(text)),
        }
    }

    fn stamp(&self) -> Stamp {
        match self {
            Source::File(path) => std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len())),
            Source::Text { .. } => None,
        }
    }
}

/// The entity type names the requests use, parsed once.
struct Types {
    user: EntityTypeName,
    workload: EntityTypeName,
    anonymous: EntityTypeName,
    action: EntityTypeName,
    route: EntityTypeName,
}

impl Types {
    // The names are constants and valid Cedar identifiers (the unit tests build every one), so
    // parsing them cannot fail; it happens once, when the engine is built, never per request.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let name = |n: &str| EntityTypeName::from_str(n).expect("a constant, valid type name");
        Self {
            user: name("User"),
            workload: name("Workload"),
            anonymous: name("Anonymous"),
            action: name("Action"),
            route: name("Route"),
        }
    }
}

/// Which of the attributes this engine provides the policies can read at all: an attribute is
/// read only through its name (`x.name`, `x has name`, `x["name"]`), so one that no policy names
/// need not be built. A policy that uses `context` as a whole value (`context == {...}`,
/// `{"c": context}`) could see every attribute of it: then all are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    roles: bool,
    scopes: bool,
    amr: bool,
    acr: bool,
    auth_age: bool,
    trust: bool,
    trust_rank: bool,
    risk: bool,
    dns: bool,
    cn: bool,
    path: bool,
    signals: bool,
    device: bool,
    network: bool,
    ip: bool,
}

impl Reads {
    const ALL: Reads = Reads {
        roles: true,
        scopes: true,
        amr: true,
        acr: true,
        auth_age: true,
        trust: true,
        trust_rank: true,
        risk: true,
        dns: true,
        cn: true,
        path: true,
        signals: true,
        device: true,
        network: true,
        ip: true,
    };

    /// What `policies` can read, from their syntax trees (Cedar's JSON form, where `x["name"]` is
    /// already `x.name`); everything if a tree cannot be had.
    fn of(policies: &PolicySet) -> Reads {
        let mut names = HashSet::new();
        for policy in policies.policies() {
            let Ok(tree) = policy.to_json() else {
                return Reads::ALL;
            };
            if !attribute_names(&tree, false, &mut names) {
                return Reads::ALL;
            }
        }
        let named = |name: &str| names.contains(name);
        Reads {
            roles: named("roles"),
            scopes: named("scopes"),
            amr: named("amr"),
            acr: named("acr"),
            auth_age: named("auth_age"),
            trust: named("trust"),
            trust_rank: named("trust_rank"),
            risk: named("risk"),
            dns: named("dns"),
            cn: named("cn"),
            path: named("path"),
            signals: named("signals"),
            device: named("device"),
            network: named("network"),
            ip: named("ip"),
        }
    }
}

/// Collects the attribute names `tree` accesses (`.` and `has` nodes) into `names`; `false` if
/// `context` appears as a whole value (not as the record an attribute is taken from).
fn attribute_names(tree: &serde_json::Value, accessed: bool, names: &mut HashSet<String>) -> bool {
    match tree {
        serde_json::Value::Object(map) => {
            if !accessed && map.get("Var").and_then(|v| v.as_str()) == Some("context") {
                return false;
            }
            for (key, value) in map {
                let access = key == "." || key == "has";
                if access && let Some(attr) = value.get("attr").and_then(|a| a.as_str()) {
                    names.insert(attr.to_owned());
                }
                let whole = if access {
                    value
                        .as_object()
                        .into_iter()
                        .flatten()
                        .all(|(k, v)| attribute_names(v, k == "left", names))
                } else {
                    attribute_names(value, false, names)
                };
                if !whole {
                    return false;
                }
            }
            true
        }
        serde_json::Value::Array(items) => items.iter().all(|v| attribute_names(v, false, names)),
        _ => true,
    }
}

/// One compiled generation of the policies.
struct Loaded {
    policies: PolicySet,
    /// The attributes the policies can read; the others are not built.
    reads: Reads,
    /// The schema's action entities that belong to action groups (so `action in Action::"read"`
    /// works); empty without a schema.
    actions: Vec<Entity>,
    /// The sources' stamps, taken before they were read.
    stamps: Vec<Stamp>,
}

/// Attribute-based policies in the [Cedar](https://www.cedarpolicy.com) language, compiled once
/// and swapped atomically on [`reload`](Self::reload). Give it to routes with
/// [`Requirements::cedar`](crate::Requirements::cedar): after the route's predicates, the request
/// goes on only if the policies permit it (403 `stepup.cedar_denied` otherwise).
///
/// Cedar's rules apply: nothing is permitted unless a `permit` policy says so, and any `forbid`
/// that applies wins over every `permit`. Beyond Cedar, a policy that fails to evaluate (an
/// attribute the request lacks, a type error) denies the request: a `forbid` that errors is never
/// skipped. Guard optional attributes with `has` (`context has device && ...`).
///
/// What the policies see (entities built per request, no JSON round trip):
///
/// | variable | entity / value | attributes |
/// |---|---|---|
/// | `principal` | `User::"<subject>"` | `roles`, `scopes`, `amr` (sets of strings), `acr`?, `auth_age`? (seconds since `auth_time`), `trust`, `trust_rank`, `risk` |
/// | | `Workload::"<URI SAN>"` (no identity, a client certificate; else its common name) | `dns` (set), `cn`?, `trust`, `trust_rank`, `risk` |
/// | | `Anonymous::""` (neither) | none |
/// | `action` | `Action::"<METHOD>"` | |
/// | `resource` | `Route::"<matched pattern>"` (`Route::"(default)"` for the default route) | `path` |
/// | `context` | | `risk`, `trust`, `trust_rank`, `signals` (set of signal names), `device`? `{ id, binding, status, compliant, owned }`, `network`? `{ zone, country? }`, `ip`? (`ipaddr`) |
///
/// Attributes marked `?` are present only when known. `risk` is the risk score in per mille, an
/// integer from 0 to 1000 (Cedar has no floating point: `context.risk > 700` means a score above
/// 0.7). `trust` is the level's name (`"untrusted"` ... `"verified"`), `trust_rank` its rank (0
/// for untrusted to 4 for verified) for comparisons. [`SCHEMA`](Self::SCHEMA) declares it all.
/// An attribute no loaded policy names (as `x.name`, `x has name` or `x["name"]`) is not built,
/// which saves most of the cost of building the request; a policy that uses `context` as a whole
/// value (`context == {...}`) gets every attribute.
///
/// ```
/// use std::sync::Arc;
/// use zerotrust_stepup::{CedarPolicies, Requirements, StepUpPolicy};
///
/// let cedar: Arc<CedarPolicies> = Arc::new(r#"
///     permit(principal, action == Action::"GET", resource == Route::"/api/reports")
///     when { principal.roles.contains("analyst") };
///     forbid(principal, action, resource) when { context.risk > 700 };
/// "#.parse()?);
/// let policy = StepUpPolicy::builder()
///     .route("/api/reports", Requirements::new().cedar(Arc::clone(&cedar)))
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CedarPolicies {
    current: ArcSwap<Loaded>,
    sources: Vec<Source>,
    schema: Option<Source>,
    authorizer: Authorizer,
    types: Types,
    /// Serialises reloads, so that an older read never replaces a newer one.
    reloading: Mutex<()>,
}

impl fmt::Debug for CedarPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPolicies")
            .field(
                "sources",
                &self.sources.iter().map(Source::name).collect::<Vec<_>>(),
            )
            .field("schema", &self.schema.as_ref().map(Source::name))
            .field("policies", &self.len())
            .finish_non_exhaustive()
    }
}

/// Builds [`CedarPolicies`] from files and embedded text; see [`CedarPolicies::builder`].
#[derive(Default)]
#[must_use]
pub struct CedarPoliciesBuilder {
    sources: Vec<Source>,
    schema: Option<Source>,
}

impl fmt::Debug for CedarPoliciesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CedarPoliciesBuilder")
            .field(
                "sources",
                &self.sources.iter().map(Source::name).collect::<Vec<_>>(),
            )
            .field("schema", &self.schema.as_ref().map(Source::name))
            .finish()
    }
}

impl CedarPoliciesBuilder {
    /// Adds a `.cedar` policy file; [`CedarPolicies::reload`] reads it again.
    ///
    /// ```no_run
    /// let cedar = zerotrust_stepup::CedarPolicies::builder()
    ///     .file("policies/base.cedar")
    ///     .file("policies/admin.cedar")
    ///     .build()?;
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources.push(Source::File(path.into()));
        self
    }

    /// Adds policies embedded in the program; `name` stands for the file in errors and policy
    /// ids. Reloading compiles them again as they are.
    ///
    /// ```
    /// let cedar = zerotrust_stepup::CedarPolicies::builder()
    ///     .text("builtin", r#"forbid(principal, action, resource) when { context.risk > 900 };"#)
    ///     .build()?;
    /// assert_eq!(cedar.len(), 1);
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn text(mut self, name: impl Into<String>, policies: impl Into<String>) -> Self {
        self.sources.push(Source::Text {
            name: PathBuf::from(name.into()),
            text: Arc::from(policies.into()),
        });
        self
    }

    /// Validates every policy against this schema file (Cedar schema syntax, or JSON if the name
    /// ends in `.json`) when loading and reloading: an unknown attribute or entity type, or a
    /// type error, refuses the policies. Reloading reads it again.
    ///
    /// ```no_run
    /// let cedar = zerotrust_stepup::CedarPolicies::builder()
    ///     .file("policies/base.cedar")
    ///     .schema_file("policies/zerotrust.cedarschema")
    ///     .build()?;
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn schema_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.schema = Some(Source::File(path.into()));
        self
    }

    /// Validates every policy against this schema, in Cedar schema syntax, such as
    /// [`CedarPolicies::SCHEMA`].
    ///
    /// ```
    /// use zerotrust_stepup::{CedarError, CedarPolicies};
    ///
    /// let typo = CedarPolicies::builder()
    ///     .text("typo", r#"permit(principal, action, resource) when { principal.rolse.contains("admin") };"#)
    ///     .schema_text(CedarPolicies::SCHEMA)
    ///     .build();
    /// assert!(matches!(typo, Err(CedarError::Invalid { .. })));
    /// ```
    pub fn schema_text(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(Source::Text {
            name: PathBuf::from("(schema)"),
            text: Arc::from(schema.into()),
        });
        self
    }

    /// Reads, parses and (with a schema) validates every source.
    pub fn build(self) -> Result<CedarPolicies, CedarError> {
        let loaded = compile(&self.sources, self.schema.as_ref())?;
        Ok(CedarPolicies {
            current: ArcSwap::from_pointee(loaded),
            sources: self.sources,
            schema: self.schema,
            authorizer: Authorizer::new(),
            types: Types::new(),
            reloading: Mutex::new(()),
        })
    }
}

/// Reads and compiles every source into one policy set. Policy ids are `<file>:<@id>` for
/// policies with an `@id` annotation and `<file>:policy<n>` (the n-th policy of the file) for the
/// others.
fn compile(sources: &[Source], schema: Option<&Source>) -> Result<Loaded, CedarError> {
    // Taken before reading: a file changed while it is read shows as changed afterwards.
    let stamps = sources.iter().chain(schema).map(Source::stamp).collect();
    let schema_file = schema.map(|s| s.name().to_path_buf());
    let schema = match schema {
        None => None,
        Some(source) => {
            let text = source.read()?;
            let file = source.name();
            let json = file.extension().is_some_and(|e| e == "json");
            let parsed = if json {
                Schema::from_json_str(&text).map_err(|e| diagnose(&e, &text))
            } else {
                Schema::from_cedarschema_str(&text)
                    .map(|(schema, _warnings)| schema)
                    .map_err(|e| diagnose(&e, &text))
            };
            let schema = parsed.map_err(|(location, message)| CedarError::Schema {
                file: file.to_path_buf(),
                location,
                message,
            })?;
            Some(schema)
        }
    };

    let mut policies = PolicySet::new();
    // Which source and text each policy came from, to place validation errors.
    let mut origin: HashMap<PolicyId, (usize, Arc<str>)> = HashMap::new();
    for (index, source) in sources.iter().enumerate() {
        let text = source.read()?;
        let file = source.name();
        let parsed = PolicySet::from_str(&text).map_err(|e| {
            let (location, message) = diagnose(&e, &text);
            CedarError::Syntax {
                file: file.to_path_buf(),
                location,
                message,
            }
        })?;
        if let Some(template) = parsed.templates().next() {
            return Err(CedarError::Template {
                file: file.to_path_buf(),
                policy: template.id().to_string(),
            });
        }
        for policy in parsed.policies() {
            let local = policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_owned);
            let id = PolicyId::new(format!("{}:{local}", file.display()));
            if policies.add(policy.new_id(id.clone())).is_err() {
                return Err(CedarError::DuplicateId {
                    file: file.to_path_buf(),
                    policy: local,
                });
            }
            origin.insert(id, (index, Arc::clone(&text)));
        }
    }

    let mut actions = Vec::new();
    if let Some(schema) = schema {
        let validator = Validator::new(schema);
        let result = validator.validate(&policies, ValidationMode::Strict);
        if let Some(error) = result.validation_errors().next() {
            let (index, text) = origin
                .get(error.policy_id())
                .map_or((0, ""), |(i, t)| (*i, &**t));
            let (location, message) = diagnose(error, text);
            return Err(CedarError::Invalid {
                file: sources
                    .get(index)
                    .map(|s| s.name().to_path_buf())
                    .unwrap_or_default(),
                location,
                policy: error.policy_id().to_string(),
                message,
            });
        }
        for warning in result.validation_warnings() {
            tracing::warn!(target: "zerotrust::stepup", %warning, "Cedar policy warning");
        }
        // Action groups (`action in Action::"write"`) need the action entities and their parents;
        // without them a `forbid` on a group would never apply.
        let entities = validator.schema().action_entities().map_err(|e| {
            let (location, message) = diagnose(&e, "");
            CedarError::Schema {
                file: schema_file.clone().unwrap_or_default(),
                location,
                message,
            }
        })?;
        actions = entities
            .iter()
            .filter(|e| {
                entities
                    .ancestors(&e.uid())
                    .is_some_and(|mut a| a.next().is_some())
            })
            .cloned()
            .collect();
    }
    Ok(Loaded {
        reads: Reads::of(&policies),
        policies,
        actions,
        stamps,
    })
}

impl FromStr for CedarPolicies {
    type Err = CedarError;

    /// Compiles policies given as text (tests, embedded defaults), without a schema; they are
    /// named `(inline)` in errors and policy ids.
    ///
    /// ```
    /// let cedar: zerotrust_stepup::CedarPolicies =
    ///     r#"permit(principal is User, action, resource);"#.parse()?;
    /// assert_eq!(cedar.len(), 1);
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    fn from_str(policies: &str) -> Result<Self, Self::Err> {
        CedarPolicies::builder().text("(inline)", policies).build()
    }
}

/// What a Cedar decision is made from: the request's context and the parts of the request the
/// policies see.
pub(crate) struct CedarInput<'a> {
    pub(crate) zt: &'a ZeroTrust,
    pub(crate) certificate: Option<&'a PeerCertificate>,
    pub(crate) method: &'a Method,
    pub(crate) route: &'a str,
    pub(crate) path: &'a str,
    pub(crate) now: i64,
}

/// Why a request could not be put to the policies: which part, and Cedar's error.
#[derive(Debug, thiserror::Error)]
#[error("{part}: {error}")]
struct BuildError {
    part: &'static str,
    error: Box<dyn std::error::Error + Send + Sync>,
}

fn failed<E: std::error::Error + Send + Sync + 'static>(
    part: &'static str,
) -> impl FnOnce(E) -> BuildError {
    move |error| BuildError {
        part,
        error: Box::new(error),
    }
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings<'s>(values: impl IntoIterator<Item = &'s String>) -> RestrictedExpression {
    RestrictedExpression::new_set(values.into_iter().map(|v| string(v)))
}

fn trust_rank(level: TrustLevel) -> i64 {
    match level {
        TrustLevel::Untrusted => 0,
        TrustLevel::Low => 1,
        TrustLevel::Medium => 2,
        TrustLevel::High => 3,
        TrustLevel::Verified => 4,
    }
}

/// A score in `0.0..=1.0` as per mille, rounded; anything not a number counts as the highest risk.
fn per_mille(score: f64) -> i64 {
    if score.is_nan() {
        return 1000;
    }
    // In range after the clamp, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    let value = (score.clamp(0.0, 1.0) * 1000.0).round() as i64;
    value
}

impl CedarPolicies {
    /// The Cedar schema of what the policies see: give it to
    /// [`schema_text`](CedarPoliciesBuilder::schema_text) (or extend a copy) to have every policy
    /// type-checked when it is loaded.
    pub const SCHEMA: &'static str = r#"// What zerotrust-stepup gives Cedar policies.
type Device = {
    id: String,
    binding: String,   // "header", "assertion", "certificate"
    status: String,    // "known", "new", "unknown"
    compliant: Bool,   // no posture rule violated
    owned: Bool,       // the verified subject owns the device
};
type Network = {
    zone: String,      // "trusted", "private", "public", "anonymizer"
    country?: String,  // ISO 3166-1 alpha-2
};
type RequestContext = {
    risk: Long,        // risk score in per mille, 0..=1000
    trust: String,     // "untrusted", "low", "medium", "high", "verified"
    trust_rank: Long,  // 0 (untrusted) ..= 4 (verified)
    signals: Set<String>,
    device?: Device,
    network?: Network,
    ip?: ipaddr,
};
entity User = {
    roles: Set<String>,
    scopes: Set<String>,
    amr: Set<String>,
    acr?: String,
    auth_age?: Long,   // seconds since auth_time
    trust: String,
    trust_rank: Long,
    risk: Long,
};
entity Workload = {
    dns: Set<String>,
    cn?: String,
    trust: String,
    trust_rank: Long,
    risk: Long,
};
entity Anonymous;
entity Route = { path: String };
action GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS appliesTo {
    principal: [User, Workload, Anonymous],
    resource: [Route],
    context: RequestContext,
};
"#;

    /// A builder: files, embedded text, an optional schema.
    ///
    /// ```no_run
    /// let cedar = zerotrust_stepup::CedarPolicies::builder()
    ///     .file("policies/base.cedar")
    ///     .schema_text(zerotrust_stepup::CedarPolicies::SCHEMA)
    ///     .build()?;
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn builder() -> CedarPoliciesBuilder {
        CedarPoliciesBuilder::default()
    }

    /// Compiles these `.cedar` files (no schema).
    ///
    /// ```no_run
    /// let cedar = zerotrust_stepup::CedarPolicies::from_files(["policies/base.cedar", "policies/admin.cedar"])?;
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn from_files(
        paths: impl IntoIterator<Item = impl Into<PathBuf>>,
    ) -> Result<Self, CedarError> {
        paths
            .into_iter()
            .fold(Self::builder(), CedarPoliciesBuilder::file)
            .build()
    }

    /// The number of policies in force.
    ///
    /// ```
    /// let cedar: zerotrust_stepup::CedarPolicies = "".parse()?;
    /// assert_eq!(cedar.len(), 0); // nothing permitted: every request is denied
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.current.load().policies.num_of_policies()
    }

    /// Whether no policy is in force (then every request is denied).
    ///
    /// ```
    /// let cedar: zerotrust_stepup::CedarPolicies = "permit(principal, action, resource);".parse()?;
    /// assert!(!cedar.is_empty());
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the policies in force, sorted: `<file>:<@id>` or `<file>:policy<n>`.
    ///
    /// ```
    /// let cedar: zerotrust_stepup::CedarPolicies = r#"
    ///     @id("admins") permit(principal, action, resource) when { principal.roles.contains("admin") };
    ///     forbid(principal, action, resource) when { context.risk > 800 };
    /// "#.parse()?;
    /// assert_eq!(cedar.policy_ids(), ["(inline):admins", "(inline):policy1"]);
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .current
            .load()
            .policies
            .policies()
            .map(|p| p.id().to_string())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Reads every file again, compiles (and validates) them, and swaps the new policies in at
    /// once: requests being decided finish with the old set, the next ones use the new one. If a
    /// file cannot be read, parsed or validated, the policies in force stay and the error names
    /// the file.
    ///
    /// ```
    /// let cedar: zerotrust_stepup::CedarPolicies = "permit(principal, action, resource);".parse()?;
    /// cedar.reload()?; // embedded text compiles again as it was
    /// assert_eq!(cedar.len(), 1);
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn reload(&self) -> Result<(), CedarError> {
        let _serial = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let loaded = compile(&self.sources, self.schema.as_ref())?;
        let count = loaded.policies.num_of_policies();
        self.current.store(Arc::new(loaded));
        tracing::info!(target: "zerotrust::stepup", policies = count, "Cedar policies reloaded");
        Ok(())
    }

    /// The sources' stamps now.
    fn stamps(&self) -> Vec<Stamp> {
        self.sources
            .iter()
            .chain(&self.schema)
            .map(Source::stamp)
            .collect()
    }

    /// Checks the files every `interval` on a background thread and reloads once a change (of a
    /// modification time or length) has held still for one interval, so that a file caught while
    /// it is being written is not compiled. A failed reload is logged and keeps the policies in
    /// force; the same files are not retried until they change again. The thread stops when the
    /// returned handle is dropped or [`stop`](CedarReloader::stop)ped, or when the policies are
    /// dropped.
    ///
    /// # Warning
    ///
    /// A file truncated or half written may still parse, as a policy set with fewer policies
    /// (a `forbid` missing). Replace policy files atomically: write a temporary file in the same
    /// directory and rename it over the old one.
    ///
    /// ```no_run
    /// use std::{sync::Arc, time::Duration};
    /// let cedar = Arc::new(zerotrust_stepup::CedarPolicies::from_files(["policies/base.cedar"])?);
    /// let reloader = cedar.spawn_reloader(Duration::from_secs(5));
    /// // ... serve; keep `reloader` alive as long as files should be watched.
    /// reloader.stop();
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> CedarReloader {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak: Weak<Self> = Arc::downgrade(self);
        let thread = std::thread::Builder::new()
            .name("zerotrust-cedar-reload".into())
            .spawn(move || {
                // The stamps at the previous tick (a change must hold still for one interval),
                // and those of the last attempt (a broken file is not retried every tick).
                let mut previous: Option<Vec<Stamp>> = None;
                let mut tried: Option<Vec<Stamp>> = None;
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let Some(cedar) = weak.upgrade() else { return };
                    let now = cedar.stamps();
                    let settled = previous.as_ref() == Some(&now);
                    previous = Some(now.clone());
                    if !settled
                        || now == cedar.current.load().stamps
                        || tried.as_ref() == Some(&now)
                    {
                        continue;
                    }
                    tried = Some(now);
                    if let Err(error) = cedar.reload() {
                        tracing::warn!(target: "zerotrust::stepup", %error, "Cedar policies not reloaded; the previous ones stay in force");
                    }
                }
            });
        match thread {
            Ok(thread) => CedarReloader {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(error) => {
                tracing::warn!(target: "zerotrust::stepup", %error, "cannot start the Cedar reloader thread");
                CedarReloader {
                    stop: None,
                    thread: None,
                }
            }
        }
    }

    /// Whether the policies permit the request; a denial or an evaluation error is logged (never
    /// shown to the client) and answers `false`.
    pub(crate) fn permits(&self, input: &CedarInput<'_>) -> bool {
        let loaded = self.current.load();
        let request = match self.request(input, &loaded, &loaded.reads) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(target: "zerotrust::stepup", route = input.route, %error, "Cedar request could not be built; denied");
                return false;
            }
        };
        let (request, entities) = request;
        let response = self
            .authorizer
            .is_authorized(&request, &loaded.policies, &entities);
        let diagnostics = response.diagnostics();
        let mut errors = diagnostics.errors().peekable();
        if errors.peek().is_some() {
            for error in errors {
                tracing::warn!(target: "zerotrust::stepup", route = input.route, %error, "Cedar policy failed to evaluate; denied");
            }
            return false;
        }
        match response.decision() {
            CedarDecision::Allow => true,
            CedarDecision::Deny => {
                let forbidding: Vec<&str> = diagnostics.reason().map(PolicyId::as_ref).collect();
                tracing::debug!(target: "zerotrust::stepup", route = input.route, method = %input.method, policies = ?forbidding, "Cedar policies denied the request");
                false
            }
        }
    }

    /// The request and its entities (principal, resource, the schema's grouped actions), with
    /// the attributes `reads` names.
    fn request(
        &self,
        input: &CedarInput<'_>,
        loaded: &Loaded,
        reads: &Reads,
    ) -> Result<(Request, Entities), BuildError> {
        let zt = input.zt;
        let t = &self.types;
        let risk = zt.risk_assessment();
        let risk_per_mille = per_mille(risk.score);
        let trust = risk.trust_level.as_str();
        let rank = trust_rank(risk.trust_level);

        let common = |attrs: &mut HashMap<String, RestrictedExpression>| {
            if reads.trust {
                attrs.insert("trust".into(), string(trust));
            }
            if reads.trust_rank {
                attrs.insert("trust_rank".into(), RestrictedExpression::new_long(rank));
            }
            if reads.risk {
                attrs.insert(
                    "risk".into(),
                    RestrictedExpression::new_long(risk_per_mille),
                );
            }
        };
        let principal = if let Some(id) = zt.identity() {
            let uid = EntityUid::from_type_name_and_id(t.user.clone(), EntityId::new(id.subject()));
            let mut attrs = HashMap::with_capacity(8);
            if reads.roles {
                attrs.insert("roles".into(), strings(id.roles()));
            }
            if reads.scopes {
                attrs.insert("scopes".into(), strings(id.scopes()));
            }
            if reads.amr {
                attrs.insert("amr".into(), strings(id.amr()));
            }
            if reads.acr
                && let Some(acr) = id.acr()
            {
                attrs.insert("acr".into(), string(acr));
            }
            if reads.auth_age
                && let Some(auth_time) = id.auth_time()
            {
                let age = input.now.saturating_sub(auth_time).max(0);
                attrs.insert("auth_age".into(), RestrictedExpression::new_long(age));
            }
            common(&mut attrs);
            Entity::new(uid, attrs, HashSet::new()).map_err(failed("principal"))?
        } else if let Some((cert, name)) = input.certificate.and_then(|cert| {
            cert.uri_sans()
                .next()
                .or_else(|| cert.subject_common_name())
                .map(|name| (cert, name))
        }) {
            let uid = EntityUid::from_type_name_and_id(t.workload.clone(), EntityId::new(name));
            let mut attrs = HashMap::with_capacity(5);
            if reads.dns {
                attrs.insert(
                    "dns".into(),
                    RestrictedExpression::new_set(cert.dns_sans().map(string)),
                );
            }
            if reads.cn
                && let Some(cn) = cert.subject_common_name()
            {
                attrs.insert("cn".into(), string(cn));
            }
            common(&mut attrs);
            Entity::new(uid, attrs, HashSet::new()).map_err(failed("principal"))?
        } else {
            Entity::new_no_attrs(
                EntityUid::from_type_name_and_id(t.anonymous.clone(), EntityId::new("")),
                HashSet::new(),
            )
        };
        let principal_uid = principal.uid();

        let resource_uid =
            EntityUid::from_type_name_and_id(t.route.clone(), EntityId::new(input.route));
        let resource = if reads.path {
            Entity::new(
                resource_uid.clone(),
                HashMap::from([("path".into(), string(input.path))]),
                HashSet::new(),
            )
            .map_err(failed("resource"))?
        } else {
            Entity::new_no_attrs(resource_uid.clone(), HashSet::new())
        };
        let action = EntityUid::from_type_name_and_id(
            t.action.clone(),
            EntityId::new(input.method.as_str()),
        );

        let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(7);
        if reads.risk {
            context.push((
                "risk".into(),
                RestrictedExpression::new_long(risk_per_mille),
            ));
        }
        if reads.trust {
            context.push(("trust".into(), string(trust)));
        }
        if reads.trust_rank {
            context.push(("trust_rank".into(), RestrictedExpression::new_long(rank)));
        }
        if reads.signals {
            context.push((
                "signals".into(),
                RestrictedExpression::new_set(zt.signals().iter().map(|s| string(s.name()))),
            ));
        }
        if reads.device
            && let Some(device) = zt.device()
        {
            context.push((
                "device".into(),
                RestrictedExpression::new_record([
                    ("id".into(), string(&device.device_id)),
                    ("binding".into(), string(device.binding.as_str())),
                    ("status".into(), string(device.status.as_str())),
                    (
                        "compliant".into(),
                        RestrictedExpression::new_bool(device.violations.is_empty()),
                    ),
                    (
                        "owned".into(),
                        RestrictedExpression::new_bool(device.owned_by_subject),
                    ),
                ])
                .map_err(failed("context.device"))?,
            ));
        }
        if reads.network
            && let Some(network) = zt.network()
        {
            let mut fields = vec![("zone".into(), string(network.zone.as_str()))];
            if let Some(country) = &network.location.country {
                fields.push(("country".into(), string(country.as_str())));
            }
            context.push((
                "network".into(),
                RestrictedExpression::new_record(fields).map_err(failed("context.network"))?,
            ));
        }
        if reads.ip
            && let Some(ip) = zt
                .network()
                .map(|n| n.client_ip)
                .or_else(|| zt.client_ip().map(|c| c.addr()))
        {
            // Costly (Cedar parses the extension's name and the address each time): built only
            // for policies that read `ip`.
            context.push(("ip".into(), RestrictedExpression::new_ip(ip.to_string())));
        }
        let context = Context::from_pairs(context).map_err(failed("context"))?;

        let entities = Entities::from_entities(
            loaded.actions.iter().cloned().chain([principal, resource]),
            None,
        )
        .map_err(failed("entities"))?;
        let request = Request::new(principal_uid, action, resource_uid, context, None)
            .map_err(failed("request"))?;
        Ok((request, entities))
    }
}

/// The background thread of [`CedarPolicies::spawn_reloader`]; dropping it stops the thread.
#[must_use = "the reloader stops when its handle is dropped"]
#[derive(Debug)]
pub struct CedarReloader {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CedarReloader {
    /// Stops the thread and waits for it (at most one reload in progress).
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// let cedar: Arc<zerotrust_stepup::CedarPolicies> = Arc::new("".parse()?);
    /// cedar.spawn_reloader(Duration::from_millis(50)).stop();
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CedarReloader {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread, which then ends; no need to wait for it here.
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse() {
        let t = Types::new();
        assert_eq!(t.user.to_string(), "User");
        assert_eq!(t.route.to_string(), "Route");
    }

    #[test]
    fn per_mille_rounds_and_clamps() {
        assert_eq!(per_mille(0.0), 0);
        assert_eq!(per_mille(0.7004), 700);
        assert_eq!(per_mille(0.7005), 701);
        assert_eq!(per_mille(1.5), 1000);
        assert_eq!(per_mille(-0.1), 0);
        assert_eq!(per_mille(f64::NAN), 1000);
    }

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(locate(text, 0), CedarLocation { line: 1, column: 1 });
        assert_eq!(locate(text, 3), CedarLocation { line: 2, column: 1 });
        // Inside `é`: the character's start.
        assert_eq!(locate(text, 6), CedarLocation { line: 2, column: 3 });
        assert_eq!(locate(text, 7), CedarLocation { line: 2, column: 4 });
        assert_eq!(locate(text, 8), CedarLocation { line: 3, column: 1 });
        assert_eq!(locate(text, 99), CedarLocation { line: 3, column: 2 });
    }

    fn reads(policies: &str) -> Reads {
        Reads::of(&PolicySet::from_str(policies).unwrap())
    }

    #[test]
    fn only_the_attributes_policies_name_are_read() {
        let none = Reads {
            roles: false,
            scopes: false,
            amr: false,
            acr: false,
            auth_age: false,
            trust: false,
            trust_rank: false,
            risk: false,
            dns: false,
            cn: false,
            path: false,
            signals: false,
            device: false,
            network: false,
            ip: false,
        };
        assert_eq!(reads("permit(principal, action, resource);"), none);
        assert_eq!(
            reads(
                r#"permit(principal == User::"a", action == Action::"GET", resource == Route::"/x")
                   when { principal in Group::"g" };"#
            ),
            none
        );
        // `.name`, `has name`, `["name"]`, `has a.b`, through an alias of an entity.
        let r = reads(
            r#"permit(principal, action, resource) when {
                   principal.roles.contains("a") && principal has acr && context["ip"] == ip("10.0.0.1") &&
                   context has device.compliant && {"p": principal}.p.scopes.isEmpty()
               };"#,
        );
        assert!(r.roles && r.acr && r.ip && r.device && r.scopes);
        assert!(!r.risk && !r.network && !r.signals && !r.path && !r.amr);
        // Names are collected across policies.
        let r = reads(
            r#"permit(principal, action, resource) when { resource.path like "/a/*" };
               forbid(principal, action, resource) when { context.risk > 700 };"#,
        );
        assert!(r.path && r.risk && !r.trust);
    }

    #[test]
    fn context_used_as_a_whole_value_reads_everything() {
        for policy in [
            r#"forbid(principal, action, resource) when { context == {} };"#,
            r#"forbid(principal, action, resource) when { {"c": context}.c.x == 1 };"#,
            r#"forbid(principal, action, resource) when { [context].isEmpty() };"#,
            r#"forbid(principal, action, resource) when { (if true then context else {}) has risk };"#,
        ] {
            assert_eq!(reads(policy), Reads::ALL, "{policy}");
        }
    }

    #[test]
    fn the_published_schema_parses() {
        let (schema, _) = Schema::from_cedarschema_str(CedarPolicies::SCHEMA).unwrap();
        assert!(schema.action_entities().is_ok());
    }

    /// Every shape of principal and context the layer builds conforms to [`CedarPolicies::SCHEMA`].
    #[test]
    fn requests_conform_to_the_published_schema() {
        use zerotrust_core::{
            CountryCode, DeviceAssessment, DeviceBinding, DeviceStatus, GeoLocation, Identity,
            NetworkAssessment, NetworkZone, Posture, RiskSignal,
        };

        let (schema, _) = Schema::from_cedarschema_str(CedarPolicies::SCHEMA).unwrap();
        let cedar: CedarPolicies = "".parse().unwrap();
        let loaded = cedar.current.load();
        let check = |zt: &ZeroTrust, certificate: Option<&PeerCertificate>| {
            let input = CedarInput {
                zt,
                certificate,
                method: &Method::GET,
                route: "/api/{id}",
                path: "/api/7",
                now: 1_000,
            };
            let (request, entities) = cedar.request(&input, &loaded, &Reads::ALL).unwrap();
            Entities::from_entities(entities.iter().cloned(), Some(&schema)).unwrap();
            Request::new(
                request.principal().unwrap().clone(),
                request.action().unwrap().clone(),
                request.resource().unwrap().clone(),
                request.context().unwrap().clone(),
                Some(&schema),
            )
            .unwrap();
        };

        // Anonymous, nothing known.
        check(&ZeroTrust::new(), None);
        // A user with everything.
        let mut zt = ZeroTrust::new();
        zt.set_identity(Arc::new(
            Identity::new("alice", "https://idp", 2_000)
                .with_roles(vec!["admin".into()])
                .with_scopes(vec!["openid".into()])
                .with_acr(Some("urn:acr:mfa".into()))
                .with_amr(vec!["otp".into()])
                .with_auth_time(Some(900)),
        ));
        zt.add_signal(RiskSignal::new("x.test", 0.3, "test"));
        zt.set_device(DeviceAssessment {
            device_id: Arc::from("d-1"),
            binding: DeviceBinding::Header,
            status: DeviceStatus::New,
            owned_by_subject: false,
            posture: Posture::default(),
            violations: Vec::new(),
        });
        zt.set_network(NetworkAssessment {
            client_ip: "2001:db8::1".parse().unwrap(),
            location: GeoLocation {
                country: CountryCode::new("SE"),
                ..GeoLocation::default()
            },
            zone: NetworkZone::Public,
            travel: None,
        });
        check(&zt, None);
        // A user with nothing optional, on a network without a country.
        let mut zt = ZeroTrust::new();
        zt.set_identity(Arc::new(Identity::new("bob", "https://idp", 2_000)));
        zt.set_network(NetworkAssessment {
            client_ip: "10.0.0.1".parse().unwrap(),
            location: GeoLocation::default(),
            zone: NetworkZone::Private,
            travel: None,
        });
        check(&zt, None);
    }
}
