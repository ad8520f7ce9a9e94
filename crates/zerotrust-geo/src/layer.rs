//! `GeoRiskLayer` builds the service `GeoRiskService`, whose future is `ResponseFuture` (core's
//! `CheckFuture`, shared with the other checking layers).

use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::geo::NetworkAssessment;
use zerotrust_core::service::{CheckFuture, ContextUpdate, PendingCheck};
use zerotrust_core::{
    ClientIp, Reason, Rejection, RejectionKind, RiskSignal, Sighting, StoreError, ZeroTrust,
};

use crate::risk::{GeoRisk, GeoSignal, reasons, travel_evidence};
use crate::travel;

/// Puts where a request comes from into [`ZeroTrust`] and refuses blocked networks.
///
/// For each request it:
/// 1. takes the client address an earlier layer recorded, or resolves it with the configured
///    [`ClientIpResolver`](zerotrust_core::ClientIpResolver) (400/500 if it cannot) and records it;
/// 2. locates the address and places it in a zone (trusted, private, public, anonymiser), adds
///    the network signals, and refuses with 403 a blocked network, anonymiser, country or ASN;
/// 3. adds `time.outside_hours` outside the working hours, when configured;
/// 4. for a verified subject on a public address, swaps the sighting into the location history
///    and adds `travel.impossible` if the subject could not have moved here in time (503 if the
///    history cannot be reached, unless configured fail-open);
/// 5. records the [`NetworkAssessment`] and calls the service.
///
/// Every refusal is an RFC 9457 problem response carrying the request's `ZeroTrust` context, with
/// the decision, in the response extensions. Refusals are answered by default; with
/// [`GeoRiskBuilder::enforcement`](crate::GeoRiskBuilder::enforcement) they can be reported only,
/// rolled out to a share of the subjects, or the layer turned off.
///
/// ```
/// use axum::{routing::get, Router};
/// use zerotrust_core::ZeroTrust;
/// use zerotrust_geo::{GeoRisk, GeoRiskLayer};
///
/// # fn main() -> Result<(), zerotrust_geo::GeoRiskError> {
/// let risk = GeoRisk::builder()
///     .trusted_networks(["10.0.0.0/8".parse().unwrap()])
///     .block_countries(["KP"])
///     .build()?;
///
/// let app: Router = Router::new()
///     .route("/whereami", get(|zt: ZeroTrust| async move {
///         let network = zt.network().map(|n| n.zone.as_str()).unwrap_or("unknown");
///         network.to_owned()
///     }))
///     .layer(GeoRiskLayer::new(risk));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct GeoRiskLayer {
    risk: GeoRisk,
}

impl GeoRiskLayer {
    /// A layer checking requests with `risk`.
    pub fn new(risk: GeoRisk) -> Self {
        Self { risk }
    }

    /// The configuration in use (to reload its lists, for example).
    pub fn risk(&self) -> &GeoRisk {
        &self.risk
    }
}

impl<S> Layer<S> for GeoRiskLayer {
    type Service = GeoRiskService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GeoRiskService {
            inner,
            risk: self.risk.clone(),
        }
    }
}

/// The service built by [`GeoRiskLayer`].
#[derive(Clone, Debug)]
pub struct GeoRiskService<S> {
    inner: S,
    risk: GeoRisk,
}

/// A refusal under the configured [`Enforcement`](zerotrust_core::Enforcement): `Err` to answer
/// it, or `Ok` once the decision it would have been is recorded unenforced (report-only, or a
/// subject outside a roll-out).
fn refuse(risk: &GeoRisk, zt: &mut ZeroTrust, rejection: Rejection) -> Result<(), Rejection> {
    risk.config.enforcement.apply(zt, rejection)
}

fn forbidden(reason: Reason) -> Rejection {
    Rejection::new(RejectionKind::Forbidden, reason).with_layer("geo")
}

/// Applies the answer of the location history: the travel, its signal, and any refusal.
fn finish_travel(
    risk: &GeoRisk,
    zt: &mut ZeroTrust,
    mut network: NetworkAssessment,
    current: &Sighting,
    previous: Result<Option<Sighting>, StoreError>,
) -> Result<(), Rejection> {
    let config = &risk.config;
    let Some(check) = &config.travel else {
        zt.set_network(network);
        return Ok(());
    };
    let mut refusal = None;
    match previous {
        Ok(Some(previous)) if previous.ip != current.ip => {
            let travel = travel::judge(
                &previous,
                current,
                check.max_speed_kmh,
                check.within_country,
            );
            network.travel = Some(travel);
            if travel.impossible {
                zt.add_signal(config.signal(
                    GeoSignal::ImpossibleTravel,
                    travel_evidence(&previous, current, &travel),
                ));
                if check.deny {
                    refusal = Some(forbidden(reasons::IMPOSSIBLE_TRAVEL));
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(target: "zerotrust::geo", %error, fail_open = check.fail_open, "location history unavailable");
            if check.fail_open {
                zt.add_signal(config.signal(
                    GeoSignal::StoreDegraded,
                    "location history unavailable; travel not checked".to_owned(),
                ));
            } else {
                refusal = Some(error.rejection("geo"));
            }
        }
    }
    zt.set_network(network);
    match refusal {
        Some(rejection) => refuse(risk, zt, rejection),
        None => Ok(()),
    }
}

/// What the travel check found, applied to the request's context when the location history
/// answers: the movement since the previous sighting, its signal, and any refusal.
pub struct TravelFindings {
    risk: GeoRisk,
    /// The client address this layer resolved, when no earlier layer had.
    client: Option<ClientIp>,
    /// The zone, list and hours signals found before the travel check.
    signals: Vec<RiskSignal>,
    network: NetworkAssessment,
    sighting: Sighting,
    previous: Result<Option<Sighting>, StoreError>,
}

impl std::fmt::Debug for TravelFindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TravelFindings")
            .field("network", &self.network)
            .field("sighting", &self.sighting)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl ContextUpdate for TravelFindings {
    const LAYER: &'static str = "geo";

    fn apply(self, zt: &mut ZeroTrust) -> Result<(), Rejection> {
        if let Some(client) = self.client {
            zt.set_client_ip(client);
        }
        for signal in self.signals {
            zt.add_signal(signal);
        }
        finish_travel(&self.risk, zt, self.network, &self.sighting, self.previous)
    }
}

/// The response future of [`GeoRiskService`].
pub type ResponseFuture<S, B> = CheckFuture<S, B, TravelFindings>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GeoRiskService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Body>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &self.risk.config;
        if !config.enforcement.is_on() {
            return CheckFuture::proceed(&mut self.inner, req);
        }

        // 1. The client address: the one an earlier layer resolved, or ours.
        let context = req.extensions().get::<ZeroTrust>();
        let recorded = context.and_then(ZeroTrust::client_ip);
        let client = match recorded {
            Some(client) => client,
            None => match config.resolver.resolve_request(&req) {
                Ok(client) => client,
                Err(error) => {
                    // Not enforced: the decision is recorded and the request goes on unlocated.
                    let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
                    return match refuse(&self.risk, zt, error.rejection()) {
                        Err(rejection) => CheckFuture::rejected(rejection, &req),
                        Ok(()) => CheckFuture::proceed(&mut self.inner, req),
                    };
                }
            },
        };
        let resolved = recorded.is_none().then_some(client);

        // 2-3. Zone, location, network rules and working hours: lookups only, no I/O.
        let assessment = config.assess(client.addr(), config.clock.now());

        // 4. Impossible travel, for a verified subject seen on a public address.
        let travel = match (
            &config.travel,
            assessment.sighting,
            context.and_then(ZeroTrust::subject),
        ) {
            (Some(check), Some(sighting), Some(subject)) if assessment.block.is_none() => {
                Some((check.history.clone(), sighting, subject.to_owned()))
            }
            _ => None,
        };
        let Some((history, sighting, subject)) = travel else {
            // 5. Nothing asynchronous to do: recorded, then passed (or refused) at once; the
            // service is called without boxing a future.
            let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
            if let Some(client) = resolved {
                zt.set_client_ip(client);
            }
            for signal in assessment.signals {
                zt.add_signal(signal);
            }
            zt.set_network(assessment.network);
            if let Some(reason) = assessment.block
                && let Err(rejection) = refuse(&self.risk, zt, forbidden(reason))
            {
                return CheckFuture::rejected(rejection, &req);
            }
            return CheckFuture::proceed(&mut self.inner, req);
        };
        // Boxed because the location history is an async store (possibly remote); only requests
        // that need the travel check pay for it, one allocation each. What was found so far goes
        // into the context with the travel result, after the wait: a request cancelled while
        // waiting is audited with the context as the previous layer passed it.
        let risk = self.risk.clone();
        let network = assessment.network;
        let signals = assessment.signals;
        let check: PendingCheck<TravelFindings> = Box::pin(async move {
            let previous = history.swap(&subject, sighting).await;
            TravelFindings {
                risk,
                client: resolved,
                signals,
                network,
                sighting,
                previous,
            }
        });
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        CheckFuture::checking(check, inner, req)
    }
}
