"""Journey 1: signed out, every page URL shows the sign-in form and nothing else (and the
Helpdesk stays an admin's page once signed in)."""

from __future__ import annotations

import re

from accessibility import assert_accessible
from browser_support import (APP_DIR, click, goto, heading, main_area, main_text, sign_in,
                             sign_in_form_visible)

PROTECTED_TEXTS = ("User MFA Settings", "Add TOTP MFA", "Verify TOTP", "Verification was a success!",
                   "Welcome", "Helpdesk", "Recent security activity", "Backup codes left",
                   "Two-step verification", "otpauth://")


def page_paths() -> list[str]:
    """Every URL path Streamlit serves a page at: the home page and one per file in pages/."""
    paths = [""]
    for file in sorted((APP_DIR / "pages").glob("*.py")):
        name = re.fullmatch(r"([0-9]*)[_ -]*(.*)\.py", file.name).group(2)
        paths.append(name.replace(" ", "_"))
    return paths


def test_every_page_url_shows_only_the_sign_in_form(portal, page, shots):
    paths = page_paths()
    assert {"Manage_MFA", "Add_TOTP"} <= set(paths), paths
    for path in paths:
        goto(page, portal.at(path))
        page.get_by_label("Username", exact=True).wait_for()
        shots(page, f"signed-out-{path or 'home'}")
        assert sign_in_form_visible(page), path
        text = main_text(page)
        for protected in PROTECTED_TEXTS:
            assert protected not in text, (path, protected, text)
        headings = [h.strip() for h in main_area(page).get_by_role("heading").all_inner_texts()]
        assert set(headings) <= {"MFA Portal", "Sign in"}, (path, headings)
        if path:
            assert "You must be logged in to access this page" in text, path
        # No page list, no links to protected pages, no sign-out: nothing but the form.
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0, path
        assert page.get_by_role("button", name=re.compile("Sign out")).count() == 0, path
        links = [a.get_attribute("href") or "" for a in page.locator("a").all()]
        for target in paths[1:]:
            assert not any(href.rstrip("/").endswith("/" + target) for href in links), (path, links)
        # Only these inputs exist: no code box, no button from a page leaked through.
        inputs = [i.get_attribute("aria-label") for i in main_area(page).locator("input").all()]
        assert inputs == ["Username", "Password"], (path, inputs)
        # (the password field's own show/hide toggle aside)
        buttons = main_area(page).locator('button:not([data-testid="stTextInput"] button)')
        assert [b.strip() for b in buttons.all_inner_texts()] == ["Login"], (path, buttons.all_inner_texts())


def test_only_a_helpdesk_admin_reaches_the_helpdesk(portal, new_page, shots):
    """Signed in without admin rights, the Helpdesk URL shows no Helpdesk; its link is only an admin's."""
    bob = new_page()
    sign_in(bob, portal.at("Helpdesk"), "bob", "bob-demo")
    bob.get_by_text("This page is for helpdesk admins.").wait_for()
    assert heading(bob, "Helpdesk").count() == 0
    assert page_link(bob, "Helpdesk").count() == 0
    shots(bob, "helpdesk-refused-for-bob")

    admin = new_page()
    sign_in(admin, portal.url, "admin", "admin-demo")
    heading(admin, "Welcome, Helpdesk Admin").wait_for()
    click(admin, page_link(admin, "Helpdesk"))
    heading(admin, "Helpdesk").wait_for()
    assert "This page is for helpdesk admins." not in main_text(admin)
    # An admin without two-step verification gets no list and no actions (see
    # test_browser_helpdesk.py for an admin with it).
    admin.get_by_text("The Helpdesk needs two-step verification on your own account").wait_for()
    assert admin.locator('[data-testid="stDataFrame"]').count() == 0
    assert main_area(admin).get_by_role("link", name=re.compile("Manage MFA")).count() == 1
    shots(admin, "helpdesk-admin-without-two-step")
    assert_accessible(admin, "helpdesk-admin-without-two-step")


def page_link(page, label: str):
    return page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile(label))
