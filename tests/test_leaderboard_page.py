"""The leaderboard page in a real browser: headless Chromium sorts, filters, shows details, works
without JavaScript and at phone width, logs no error; and the committed board renders.

Needs the distribution's ``chromium`` (``.ci/run`` installs it); skipped with the install command
when it is missing. ``MTLUE_SCREENSHOT_TO=docs/leaderboard.png`` also saves the committed board's
screenshot there (how the README's picture is made).
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
from pathlib import Path

import pytest
from chromium import INSTALL_HINT, Browser, find_chromium

from mtlue.leaderboard import Leaderboard, build_entries, group_boards, validate_entry
from mtlue.leaderboard.protocol import Protocol
from mtlue.leaderboard.render import board_figures
from mtlue.report import collect_victims

REPOSITORY = Path(__file__).resolve().parent.parent
COMMITTED = REPOSITORY / "results" / "leaderboard"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(find_chromium() is None, reason=f"chromium is not installed: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def board_folder(seeded_victim_results, tmp_path_factory):
    """A leaderboard of two datasets (the second a renamed copy) and, on the first, two protocols:
    ``default`` (defenses none and bdr, 3 seeds, with ties) and ``undefended`` (none only)."""
    records = collect_victims(seeded_victim_results, "shapes")
    grid = {"mode": "mtl", "backbones": ("test_resnet",), "weightings": ("ew",), "seeds": (0, 1, 2)}
    entries = []
    for protocol in (Protocol("default", defenses=("none", "bdr"), **grid), Protocol("undefended", defenses=("none",), **grid)):
        found, skipped = build_entries(seeded_victim_results, records, protocol)
        assert skipped == []
        entries += found
    for entry in [e for e in entries if e["protocol"]["name"] == "default"]:
        renamed = copy.deepcopy(entry)
        renamed["dataset"]["name"] = "shapes-copy"
        validate_entry(renamed)
        entries.append(renamed)
    boards = group_boards(entries)
    figures = {}
    for board in boards:
        figures.update(board_figures(board))
    out = tmp_path_factory.mktemp("page") / "leaderboard"
    Leaderboard(entries, [], boards, figures).write(out)
    return out


def run(scenario, tmp_path, width=1280, height=900):
    async def main():
        async with Browser(tmp_path / "profile", width, height) as page:
            return await scenario(page)

    return asyncio.run(main())


ROWS = "Array.from(document.querySelectorAll('#board-{} table.ranking tbody tr')).map(r => r.dataset.method)"
VISIBLE_BOARDS = "Array.from(document.querySelectorAll('section.board')).filter(s => !s.hidden).map(s => s.id)"


def test_sorting_filtering_and_details_in_chromium(board_folder, tmp_path):
    async def scenario(page):
        await page.open((board_folder / "index.html").as_uri())
        rows = ROWS.format("shapes--default")
        assert await page.evaluate(rows) == ["clean", "flip", "strong", "twin", "close", "middle", "weak"]  # the ranking
        assert await page.evaluate("document.getElementById('filters').hidden") is False

        # Sorting: a click on a header sorts by it, a second click reverses; clean stays first, ties keep their order.
        await page.click("#board-shapes--default th[data-key=undefended] button")
        assert await page.evaluate(rows) == ["clean", "close", "middle", "strong", "twin", "flip", "weak"]
        assert await page.evaluate("document.querySelector('#board-shapes--default th[data-key=undefended]').getAttribute('aria-sort')") == "ascending"
        await page.click("#board-shapes--default th[data-key=undefended] button")
        assert await page.evaluate(rows) == ["clean", "weak", "flip", "strong", "twin", "middle", "close"]
        await page.click("#board-shapes--default th[data-key=method] button")
        assert await page.evaluate(rows) == ["clean", "close", "flip", "middle", "strong", "twin", "weak"]
        # Ties are shown as ties, mean ± std, whatever the order.
        cells = await page.evaluate(
            "Array.from(document.querySelector('#board-shapes--default tr[data-method=strong]').cells).map(c => c.textContent)"
        )
        assert cells[:3] == ["=1", "strong", "70.50 ± 0.50"] and cells[7] == "close, flip, twin"

        # Filters: by dataset, by protocol, by defense (which scores the chosen defense alone, unranked).
        all_boards = ["board-shapes--default", "board-shapes--undefended", "board-shapes-copy--default"]
        assert await page.evaluate(VISIBLE_BOARDS) == all_boards
        await page.choose("#filters select[name=dataset]", "shapes-copy")
        assert await page.evaluate(VISIBLE_BOARDS) == ["board-shapes-copy--default"]
        await page.choose("#filters select[name=dataset]", "")
        await page.choose("#filters select[name=protocol]", "undefended")
        assert await page.evaluate(VISIBLE_BOARDS) == ["board-shapes--undefended"]
        await page.choose("#filters select[name=protocol]", "")
        await page.choose("#filters select[name=defense]", "bdr")
        assert await page.evaluate(VISIBLE_BOARDS) == ["board-shapes--default", "board-shapes-copy--default"]
        shown = await page.evaluate(
            "Array.from(document.querySelectorAll('#board-shapes--default table.ranking thead th')).filter(th => !th.hidden).map(th => th.dataset.key)"
        )
        assert "defense:none" not in shown and "defense:bdr" in shown and shown[-1] == "selected", shown
        assert await page.evaluate(
            "document.querySelector('#board-shapes--default tr[data-method=close] td.selected-col').textContent"
        ) == "71.50 (bdr)"
        await page.click("#board-shapes--default th[data-key=selected] button")
        assert (await page.evaluate(rows))[:2] == ["clean", "flip"]  # 70.17 under bdr, the lowest
        await page.choose("#filters select[name=backbone]", "test_resnet")
        await page.choose("#filters select[name=defense]", "")
        assert await page.evaluate(
            "document.querySelector('#board-shapes--default tr[data-method=strong] td.selected-col').textContent"
        ) == "70.50 (bdr)"  # the attacker's best of none (61) and bdr
        assert "3 of 3 board(s) shown" in await page.evaluate("document.getElementById('filter-status').textContent")
        await page.choose("#filters select[name=backbone]", "")
        assert await page.evaluate(
            "Array.from(document.querySelectorAll('.selected-col')).every(c => c.hidden)"
        ) is True

        # Details: the method's link opens its detail view, which links the entry JSON.
        await page.click("#board-shapes--default tr[data-method=close] td:nth-child(2) a")
        detail = "document.getElementById('detail-shapes--default--close')"
        assert await page.wait_for(f"{detail}.open"), "the method's link did not open its detail view"
        text = await page.evaluate(f"{detail}.textContent")
        for part in ("Per task", "Attack x defense", "Undefended vs best defense", "Converged", "Budget", "linf ≤ 8/255", "Config sha256"):
            assert part in text
        href = await page.evaluate(f"{detail}.querySelector('a').getAttribute('href')")
        assert (board_folder / href).is_file()
        assert await page.images_loaded() is True
        await page.screenshot(tmp_path / "sorted.png")
        return page.errors

    assert run(scenario, tmp_path) == []
    assert (tmp_path / "sorted.png").read_bytes().startswith(PNG_SIGNATURE)


def test_page_without_javascript_and_at_phone_width(board_folder, tmp_path):
    async def scenario(page):
        await page.set_viewport(390, 844, mobile=True)
        await page.open((board_folder / "index.html").as_uri())
        # No horizontal scrolling of the page itself: wide tables scroll inside their own box.
        widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        await page.send("Emulation.setScriptExecutionDisabled", value=True)
        await page.reload()
        assert await page.evaluate("getComputedStyle(document.getElementById('filters')).display") == "none"
        assert await page.evaluate("document.querySelectorAll('table.ranking tbody tr').length") == 7 + 7 + 7
        assert await page.evaluate(ROWS.format("shapes--default")) == ["clean", "flip", "strong", "twin", "close", "middle", "weak"]
        assert await page.evaluate("document.querySelectorAll('details.detail').length") == 21
        return page.errors

    assert run(scenario, tmp_path, 390, 844) == []


def test_the_committed_board_renders_without_errors(tmp_path):
    page_file = COMMITTED / "index.html"
    assert page_file.is_file(), f"{page_file} is missing: build it with `mtlue leaderboard` (see README)"

    async def scenario(page):
        await page.open(page_file.as_uri())
        assert await page.evaluate("document.querySelectorAll('table.ranking tbody tr').length") >= 2
        assert await page.images_loaded() is True
        await page.screenshot(tmp_path / "leaderboard.png", full_page=False)
        return page.errors

    assert run(scenario, tmp_path, 1280, 1400) == []
    assert (tmp_path / "leaderboard.png").read_bytes().startswith(PNG_SIGNATURE)
    target = os.environ.get("MTLUE_SCREENSHOT_TO")
    if target:
        shutil.copyfile(tmp_path / "leaderboard.png", REPOSITORY / target)
