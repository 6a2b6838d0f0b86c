//! The injection webhook's metrics at `GET /metrics` (Prometheus text):
//! every AdmissionReview by what became of the pod, so a rollout that
//! suddenly refuses pods, or a namespace whose pods all opt out, shows on
//! a dashboard rather than in `kubectl get events`.
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What became of one review.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// The sidecar was added.
    Injected,
    /// Admitted as it was: opted out, host network, not a pod, already injected.
    Unchanged,
    /// Refused: the pod's injection failed (a malformed annotation or probe).
    Refused,
    /// Not an AdmissionReview this webhook can answer (HTTP 400).
    BadRequest,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

pub struct WebhookMetrics {
    registry: Registry,
    reviews: Family<OutcomeLabels, Counter>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade_webhook");
        let reviews = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by what became of the pod",
            reviews.clone(),
        );
        Self { registry, reviews }
    }
}

impl WebhookMetrics {
    pub fn review(&self, outcome: Outcome) {
        self.reviews.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
