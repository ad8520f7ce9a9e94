//! `DeviceCheckLayer` builds the service `DeviceCheckService`, whose future is `ResponseFuture`.

use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::service::CheckFuture;
use zerotrust_core::{PeerCertificate, ZeroTrust};

use crate::check::{DeviceCheck, DeviceFindings, Gathered};

/// Identifies the request's device, checks it against the registry and the posture policy, and
/// records a [`DeviceAssessment`](zerotrust_core::DeviceAssessment) and risk signals in
/// [`ZeroTrust`].
///
/// Place it inside (after) `JwtVerifyLayer`, so that devices are checked against the verified
/// subject: ownership checks, auto-registration and percentage roll-outs need one.
///
/// Refusals are answered by default; with
/// [`DeviceCheckBuilder::enforcement`](crate::DeviceCheckBuilder::enforcement) they can be
/// reported only, rolled out to a share of the subjects, or the check turned off.
///
/// ```
/// use axum::{routing::get, Router};
/// use zerotrust_core::{MemoryDeviceRegistry, ZeroTrust};
/// use zerotrust_device::{DeviceCheck, DeviceCheckLayer};
///
/// let check = DeviceCheck::builder(MemoryDeviceRegistry::new())
///     .device_headers()
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/", get(|zt: ZeroTrust| async move {
///         zt.device().map(|d| d.device_id.to_string()).unwrap_or_default()
///     }))
///     .layer(DeviceCheckLayer::new(check));
/// ```
#[derive(Clone, Debug)]
pub struct DeviceCheckLayer {
    check: DeviceCheck,
}

impl DeviceCheckLayer {
    /// A layer applying `check`.
    pub fn new(check: DeviceCheck) -> Self {
        Self { check }
    }
}

impl<S> Layer<S> for DeviceCheckLayer {
    type Service = DeviceCheckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeviceCheckService {
            inner,
            check: self.check.clone(),
        }
    }
}

/// The service built by [`DeviceCheckLayer`].
#[derive(Clone, Debug)]
pub struct DeviceCheckService<S> {
    inner: S,
    check: DeviceCheck,
}

/// The response future of [`DeviceCheckService`].
pub type ResponseFuture<S, B> = CheckFuture<S, B, DeviceFindings>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DeviceCheckService<S>
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
        let mode = self.check.enforcement();
        if !mode.is_on() {
            return CheckFuture::proceed(&mut self.inner, req);
        }
        let now = self.check.now();
        let gathered = self.check.gather(
            req.headers(),
            req.extensions().get::<PeerCertificate>(),
            now,
        );
        let claim = match gathered {
            Ok(Gathered::Claim(claim)) => claim,
            Ok(Gathered::Absent(signal)) => {
                ZeroTrust::get_or_insert_to_pass(req.extensions_mut()).add_signal(signal);
                return CheckFuture::proceed(&mut self.inner, req);
            }
            Err(rejection) => {
                // Refused before any device was identified: nothing to record but the decision.
                let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
                return match mode.apply(zt, rejection) {
                    Err(rejection) => CheckFuture::rejected(rejection, &req),
                    Ok(()) => CheckFuture::proceed(&mut self.inner, req),
                };
            }
        };
        // The identity's handle, not a copy of its subject.
        let identity = req
            .extensions()
            .get::<ZeroTrust>()
            .and_then(ZeroTrust::identity_arc)
            .cloned();
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // Boxed because the registry is asked asynchronously (it may be Redis).
        let check = Box::pin(self.check.clone().assess(claim, identity, now));
        CheckFuture::checking(check, inner, req)
    }
}
