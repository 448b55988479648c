//! Logging and tracing. JSON lines on stdout carry the request id, tenant id and user id from the
//! request span; never a patient's name, resident ID, phone or clinical text (callers log ids
//! only). With `OTEL_EXPORTER_OTLP_ENDPOINT`, spans are also exported over OTLP/gRPC; an
//! unreachable collector only logs export errors.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

use crate::platform::config::LogFormat;

/// Keeps the trace exporter alive; flushes it on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// the tests rely on.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> TelemetryGuard {
    let env = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn"));
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_target(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_target(false).boxed(),
    };
    let mut provider = None;
    let otel_layer = otlp_endpoint.and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| eprintln!("OTLP exporter not started: {e}"))
            .ok()?;
        let p = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("cloudhis").build())
            .build();
        let tracer = p.tracer("cloudhis");
        provider = Some(p);
        // The exporter's own transport must not trace itself.
        let quiet = filter::filter_fn(|meta| {
            let t = meta.target();
            !(t.starts_with("h2") || t.starts_with("tonic") || t.starts_with("opentelemetry") || t.starts_with("hyper"))
        });
        Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(quiet))
    });
    let _ = tracing_subscriber::registry().with(fmt_layer.with_filter(env())).with(otel_layer).try_init();
    TelemetryGuard { provider }
}
