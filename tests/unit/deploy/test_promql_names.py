"""The reader of metric names in PromQL that the dashboard and alert checks rely on."""

from tests.promql import exported_names, metric_names


def test_functions_matchers_ranges_and_label_lists_are_not_metric_names() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, stage) (rate(segflow_segmenter_stage_seconds_bucket"
        '{job="segmenter", stage!~"fetch|decode"}[$__rate_interval])))'
    )
    assert metric_names(expr) == {"segflow_segmenter_stage_seconds_bucket"}


def test_both_sides_of_binary_operators_and_sets_are_read() -> None:
    expr = (
        "sum(rate(a_total[5m])) / sum(rate(b_total[5m])) > 0.05 and on (job) "
        'max_over_time(c[1h:1m]) or vector(0) unless d{x="y(z)"} offset 5m > 1e3'
    )
    assert metric_names(expr) == {"a_total", "b_total", "c", "d"}


def test_a_bare_selector_and_a_ratio_of_gauges() -> None:
    assert metric_names("up == 0") == {"up"}
    expr = "min by (shop) (segflow_shopify_bucket_available / segflow_shopify_bucket_maximum)"
    assert metric_names(expr) == {
        "segflow_shopify_bucket_available",
        "segflow_shopify_bucket_maximum",
    }


def test_exported_names_cover_families_with_no_sample_yet() -> None:
    exposition = "\n".join(
        [
            "# HELP things_total Things.",
            "# TYPE things_total counter",
            "# HELP wait_seconds Waits.",
            "# TYPE wait_seconds histogram",
            "# HELP level Level.",
            "# TYPE level gauge",
            'level{lane="live"} 3.0',
            "",
        ]
    )
    names = exported_names(exposition)
    assert {
        "things_total",
        "wait_seconds_bucket",
        "wait_seconds_sum",
        "wait_seconds_count",
    } <= names
    assert "level" in names
    assert "things" not in names and "wait_seconds" not in names
