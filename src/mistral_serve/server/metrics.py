"""Prometheus metrics, in a registry of the app's own (no module-level globals)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine.async_engine import CacheStats, QueueStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mistral_serve_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.prompt_tokens = Counter("mistral_serve_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("mistral_serve_generation_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram("mistral_serve_time_to_first_token_seconds", "Time to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("mistral_serve_inter_token_latency_seconds", "Time between output tokens",
                             buckets=TOKEN_BUCKETS, registry=r)
        self.duration = Histogram("mistral_serve_request_duration_seconds", "Generation request duration",
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("mistral_serve_queue_depth", "Requests waiting for admission", registry=r)
        self.running = Gauge("mistral_serve_running_requests", "Requests being generated", registry=r)
        self.in_flight = Gauge("mistral_serve_requests_in_flight",
                               "Generation requests admitted and not yet finished (what --max-queue limits)",
                               registry=r)
        self.kv_blocks_used = Gauge("mistral_serve_kv_cache_blocks_used", "KV cache blocks in use", registry=r)
        self.kv_blocks_total = Gauge("mistral_serve_kv_cache_blocks_total", "KV cache blocks in all", registry=r)
        self.kv_usage = Gauge("mistral_serve_kv_cache_usage_ratio", "Fraction of KV cache blocks in use", registry=r)
        self.prefix_hit_rate = Gauge("mistral_serve_prefix_cache_hit_rate",
                                     "Prompt tokens served from the prefix cache, as a fraction", registry=r)

    def bind(self, *, queue: Callable[[], QueueStats], cache: Callable[[], CacheStats]) -> None:
        """Gauges read the engine's state when scraped."""
        self.queue_depth.set_function(lambda: queue().waiting)
        self.running.set_function(lambda: queue().running)
        self.kv_blocks_used.set_function(lambda: cache().used)
        self.kv_blocks_total.set_function(lambda: cache().total)
        self.kv_usage.set_function(lambda: (c := cache()).used / max(c.total, 1))
        self.prefix_hit_rate.set_function(lambda: cache().hit_rate)

    def render(self) -> bytes:
        return generate_latest(self.registry)
