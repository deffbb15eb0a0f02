"""A person's motions in the MLflow 3 registry UI, as Playwright steps (clicks and typing, no REST).

Learned from MLflow 3.17's UI: the model page lists versions in a table; the Aliases cell of a
version holds "Add" (no alias yet) or a pencil button; it opens the modal "Add/Edit alias for
model version N" with a combobox where a person types an alias and presses Enter, then clicks
"Save aliases"; an alias chip (title = the alias) has an x button that removes it. Each helper records the motions it made in `clicks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TIMEOUT_MS = 20_000


def open_model(page: Any, base_url: str, model: str, clicks: list[str]) -> None:
    """Registered Models -> the model, by clicking (the way a newcomer finds it)."""
    promo = page.get_by_role("button", name="Try it now")  # first visit: "the new Model Registry UI" promo

    def accept_promo() -> None:
        promo.click()
        clicks.append("click 'Try it now' on the new-registry-UI welcome dialog")

    page.add_locator_handler(promo, accept_promo)
    page.goto(f"{base_url}/#/models")
    clicks.append("open the MLflow UI at /#/models (Registered Models)")
    page.get_by_role("link", name=model, exact=True).click(timeout=TIMEOUT_MS)
    clicks.append(f"click the model '{model}'")
    page.get_by_role("heading", name=model).wait_for(timeout=TIMEOUT_MS)


def version_row(page: Any, version: str | int) -> Any:
    """The versions-table row of one version."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Version {version}", exact=True))


def edit_aliases(page: Any, version: str | int, clicks: list[str]) -> Any:
    """Open the alias modal of `version` from its row; returns the dialog."""
    row = version_row(page, version)
    add = row.get_by_text("Add", exact=True)
    if add.count():
        add.click()
        clicks.append(f"click 'Add' in the Aliases column of Version {version}")
    else:
        row.locator("button[data-component-id*='aliasescell']").first.click()
        clicks.append(f"click the pencil in the Aliases column of Version {version}")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"model version {version}").wait_for(timeout=TIMEOUT_MS)
    return dialog


def set_alias(page: Any, version: str | int, alias: str, clicks: list[str], shot: Path | None = None) -> None:
    """Give `version` the alias `alias` (moving it from whichever version had it) and save."""
    dialog = edit_aliases(page, version, clicks)
    box = dialog.get_by_role("combobox")
    box.click()
    box.press_sequentially(alias)
    box.press("Enter")
    clicks.append(f"type '{alias}' in the alias box and press Enter")
    dialog.get_by_text(f"@ {alias}").first.wait_for(timeout=TIMEOUT_MS)
    if shot is not None:
        page.screenshot(path=str(shot))
    dialog.get_by_role("button", name="Save aliases").click()
    clicks.append("click 'Save aliases'")
    dialog.wait_for(state="hidden", timeout=TIMEOUT_MS)


def remove_alias(page: Any, version: str | int, alias: str, clicks: list[str]) -> None:
    """Take `alias` off `version` (the x on its chip in the alias modal) and save."""
    dialog = edit_aliases(page, version, clicks)
    dialog.get_by_title(alias, exact=True).get_by_role("button").click()  # the x on the alias chip
    clicks.append(f"click the x on the '{alias}' chip")
    dialog.get_by_role("button", name="Save aliases").click()
    clicks.append("click 'Save aliases'")
    dialog.wait_for(state="hidden", timeout=TIMEOUT_MS)


def aliases_shown(page: Any, version: str | int) -> str:
    """The text of the version's row after a reload (what a person sees on the page)."""
    return version_row(page, version).inner_text()
