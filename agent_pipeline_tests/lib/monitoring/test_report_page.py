"""The drift report names its day, its reference and the model version, in the page itself."""

from __future__ import annotations

from agent_pipeline.lib.monitoring import report_page

PAGE = (
    "<html><head><meta charset='utf-8'><title>Evidently</title></head><body class='x'><div>report</div></body></html>"
)


def context(**overrides):
    args = {
        "day": "2026-11-24",
        "reference_version": "3",
        "reference_rows": 1200,
        "served_versions": ["3", "4"],
        "n_records": 800,
        "drift_detected": True,
        "reasons": ["key signal 'route' drifted", "<script>"],
    }
    return report_page.describe(**{**args, **overrides})


def test_banner_and_title_name_day_reference_and_versions(tmp_path):
    path = tmp_path / "r.html"
    path.write_text(PAGE)
    report_page.annotate(path, context())
    page = path.read_text()
    assert "<title>Drift report 2026-11-24: traffic vs reference of model v3</title>" in page
    assert "Day: 2026-11-24 (800 production records, served by model version v3, v4)" in page
    assert "Reference: 1200 decisions of model version 3, captured when it was promoted to champion" in page
    assert "Verdict: DRIFT: key signal &#x27;route&#x27; drifted; &lt;script&gt;" in page  # escaped
    assert page.index(report_page.BANNER_ID) > page.index("<body class='x'>")
    assert page.index(report_page.BANNER_ID) < page.index("<div>report</div>")


def test_annotating_again_replaces_the_banner(tmp_path):
    path = tmp_path / "r.html"
    path.write_text(PAGE)
    report_page.annotate(path, context())
    report_page.annotate(path, context(drift_detected=False, reasons=[]))
    page = path.read_text()
    assert page.count(report_page.BANNER_ID) == 1
    assert "Verdict: no drift detected" in page
    assert "DRIFT" not in page
