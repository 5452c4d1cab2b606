"""The histograms a service exports on /metrics, as the benchmarks read them: scraped before
and after a paced run, and what the run added, per histogram, as count and quantiles (the
stream scorer's stages, the scoring API's, the fresh-stream pipeline's steps)."""

from __future__ import annotations


def scrape_histograms(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[float, float]]:
    """Every `*_seconds` histogram of a /metrics page: (name, labels) -> {le: cumulative count}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram" or not family.name.endswith("_seconds"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                out.setdefault((family.name, labels), {})[float(sample.labels["le"])] = sample.value
    return out


def stage_breakdown(before: dict, after: dict) -> dict[str, dict[str, float | None]]:
    """Per histogram, what the paced run added: count and p50/p99 (upper bucket bounds, in ms,
    as Prometheus' histogram_quantile interpolates them linearly within a bucket)."""
    out: dict[str, dict[str, float | None]] = {}
    for key, buckets in after.items():
        name, labels = key
        if "end_to_end" in name and dict(labels).get("clock") == "event_time":
            continue  # replays carry historical event times
        old = before.get(key, {})
        bounds = sorted(buckets)
        counts = [buckets[b] - old.get(b, 0.0) for b in bounds]
        total = counts[-1]
        if total <= 0:
            continue
        label = name.removeprefix("cardscore_stream_").removeprefix("cardscore_serve_") + "".join(
            f"{{{k}={v}}}" for k, v in labels)
        out[label] = {"count": total, **{f"p{q}_ms": bucket_quantile(bounds, counts, q / 100) for q in (50, 99)}}
    return out


def bucket_quantile(bounds: list[float], cumulative: list[float], q: float) -> float | None:
    """The q-quantile in ms of cumulative bucket counts (upper bounds in seconds), interpolated
    linearly within its bucket as Prometheus' histogram_quantile does; None in the +Inf bucket."""
    rank = q * cumulative[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return None
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return round((lower_bound + share * (bound - lower_bound)) * 1000, 3)
        lower_bound, lower_count = bound, count
    return None
