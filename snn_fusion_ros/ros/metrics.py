"""Optional Prometheus endpoint (prometheus-client), off by default, bound to localhost by default."""

from __future__ import annotations


class Metrics:
    """Gauges and counters mirroring the fusion node's diagnostics, served over HTTP."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.windows = Counter("snn_fusion_windows", "fused windows classified", registry=self.registry)
        self.rejected = Gauge("snn_fusion_rejected", "rejected inputs since start", ["reason"], registry=self.registry)
        self.latency_p50 = Gauge("snn_fusion_latency_ms_p50", "sensor stamp to publish, p50", registry=self.registry)
        self.latency_p99 = Gauge("snn_fusion_latency_ms_p99", "sensor stamp to publish, p99", registry=self.registry)
        self.fallback = Gauge("snn_fusion_fallback_active", "1 while a fallback backend runs", registry=self.registry)
        self.alive = Gauge("snn_fusion_modality_alive", "1 while the modality is fused", ["modality"],
                           registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        self.server.shutdown()
