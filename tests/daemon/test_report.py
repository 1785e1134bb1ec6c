"""`labelsync report`: the numbers it prints, agreement, escaping, and the page in a browser
with the network off."""

from __future__ import annotations

import pytest

from labelsync.report_agreement import Alpha
from tests.daemon.conftest import run
from tests.daemon.test_annotations import rating, text
from tests.daemon.test_export import rated, synced
from tests.support.browser import ARTIFACTS, chromium


def test_krippendorffs_alpha_matches_the_published_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": four coders,
    twelve units, missing values; alpha 0.743 nominal, 0.815 ordinal."""
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    for ordinal, expected in ((False, 0.743), (True, 0.815)):
        alpha = Alpha(ordinal=ordinal)
        for unit in range(12):
            alpha.add([c[unit] for c in coders if c[unit] is not None])
        assert round(alpha.value() or 0, 3) == expected
        assert alpha.units == 11  # the unit with one value says nothing about agreement
    same = Alpha(ordinal=True)
    same.add([4, 4])
    assert same.value() is None  # undefined: no disagreement was possible to observe


@pytest.mark.labelstudio
@pytest.mark.browser
def test_report_numbers_agreement_escaping_and_the_page_offline(env, tmp_path):
    from playwright.sync_api import sync_playwright

    project = rated(synced(env))
    project.annotate(  # a reply comment that is markup: shown in the worst replies, as text
        "exp-7-000001",
        [
            rating("rating", "chat", 3),
            rating("clarity_1", "msg_1", 1),
            text("comment_1", "msg_1", "<script>alert(1)</script>"),
        ],
        by=project.second,
    )
    out = tmp_path / "report.html"
    result = run(["report", "--out", str(out)], {**project.env, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    said = result.stdout
    # 5 annotated tasks: reset-token (2 annotations), exp-0, exp-1 (2), exp-2 (2), exp-4.
    assert "5 annotated tasks, 8 annotations by 2 annotators" in said
    # llama3.2:latest: reset-token only, ratings 4 and 5; its replies #6 (4, 3 / 2, 1) and
    # #8 (5, 5 / 5, 4): clarity (4+3+5+5)/4 = 4.25, accuracy (2+1+5+4)/4 = 3.00.
    line = next(x for x in said.splitlines() if "llama3.2:latest" in x)
    cells = [c.strip() for c in line.split("│")[1:-1]]
    # model, tasks, mean rating, Yes, Partly, No, clarity, accuracy
    assert cells == ["llama3.2:latest", "1", "4.50", "0", "1", "0", "4.25", "3.00"]
    # Agreement: ratings on 3 tasks with two annotations (4/5, 3/3, 2/4).
    assert "conversation rating (Krippendorff's alpha, ordinal)" in said
    assert "on 3 tasks with two or more annotations" in said
    assert "reply accuracy (Krippendorff's alpha, ordinal)" in said
    assert "on 2 replies with two or more annotations" in said
    worst = project.tasks["reset-token"]["id"]
    assert f"worst: 1.5 reset-token v1 #6 (llama3.2:latest): {project.url}/projects/" in said
    assert f"data?task={worst}" in said

    page = out.read_text()
    assert "<script" not in page  # the comment is shown as text, never run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page.replace(project.url, "")  # no remote resource anywhere
    assert f'href="{project.url}/projects/{project.id}/data?task={worst}"' in page
    assert "Step 3 names a menu that does not exist." in page

    with sync_playwright() as playwright:
        browser = chromium(playwright)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            context.on("request", lambda r: requests.append(r.url))
            view = context.new_page()
            view.goto(out.as_uri())
            charts = view.locator("img.chart")
            assert charts.count() == 5  # per model, per week, replies, tone, thumbs
            for chart in charts.all():
                size = chart.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
                assert size[0] and size[1] > 300 and size[2] > 100, size
            assert view.get_by_role("heading", name="Worst-rated replies").is_visible()
            assert view.locator("table").filter(has_text="reply accuracy").count() == 1
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            view.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
        finally:
            browser.close()
