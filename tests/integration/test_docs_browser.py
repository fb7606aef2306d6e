"""/docs in a real headless Chromium: it renders, authorises and runs a request.

The browser is Debian's chromium with its chromium-driver
(scripts/system-deps.sh installs both). Its resolver can reach nothing but
127.0.0.1, and every request the page made is checked afterwards, so a
reference that quietly needs a CDN fails here, as it would on a network
without outbound access.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.support.api import PASSWORD, unique_email
from tests.support.http import request

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30  # seconds; a 2-core CI box renders the 1.7 MB bundle slowly


@pytest.fixture
def browser(monkeypatch):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run scripts/system-deps.sh "
                    "(it installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # The driver path is given, so selenium has nothing to look up or download.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1280,2000", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps",
        # Any host but loopback fails to resolve: nothing can leave the machine.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def access_token_for_new_user(base_url: str) -> tuple[str, str]:
    email = unique_email("docs")
    registered = request(f"{base_url}/v1/auth/register", "POST",
                         {"email": email, "password": PASSWORD, "name": "Docs Reader"})
    assert registered.status == 201, registered.body
    logged_in = request(f"{base_url}/v1/auth/login", "POST",
                        {"email": email, "password": PASSWORD})
    assert logged_in.status == 200, logged_in.body
    return email, logged_in.json["access_token"]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for, from the DevTools network events."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_docs_page_authorises_and_runs_a_request(live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    email, token = access_token_for_new_user(live_server.url)
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{live_server.url}/docs")

    # The operations render from /openapi.json.
    me = wait.until(until.presence_of_element_located(
        (By.ID, "operations-users-get_v1_users_me")))
    assert len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= 20

    # Authorize with the access token.
    browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
    field = wait.until(until.visibility_of_element_located(
        (By.CSS_SELECTOR, ".modal-ux input")))
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.authorize").click()
    wait.until(until.text_to_be_present_in_element((By.CSS_SELECTOR, ".modal-ux"), "Authorized"))
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button.close-modal").click()
    wait.until(until.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))

    # Try it out: GET /v1/users/me answers 200 with the caller's account.
    me.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait.until(lambda _: me.find_elements(By.CSS_SELECTOR, ".try-out__btn"))[0].click()
    wait.until(lambda _: me.find_elements(By.CSS_SELECTOR, "button.execute"))[0].click()
    status = wait.until(until.visibility_of_element_located((
        By.CSS_SELECTOR,
        "#operations-users-get_v1_users_me .live-responses-table .response .response-col_status",
    )))
    assert status.text.strip() == "200"
    shown = me.find_element(By.CSS_SELECTOR,
                            ".live-responses-table .response .response-col_description")
    assert email in shown.text
    curl = me.find_element(By.CSS_SELECTOR, ".curl-command").text
    assert f"Authorization: Bearer {token}" in curl

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors
    urls = requested_urls(browser)
    assert f"{live_server.url}/v1/users/me" in urls
    outside = [url for url in urls
               if not url.startswith((f"{live_server.url}/", "data:"))]
    assert outside == [], outside


# The page and its assets, without a browser.

def test_docs_page_allows_only_its_own_origin(client):
    page = client.simulate_get("/docs")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe" not in csp and "http" not in csp
    assert page.headers["Cache-Control"] == "no-cache"
    assert not re.search(r'(?:src|href)="(?!/)', page.text)  # nothing from another origin


def asset_urls(client) -> dict[str, str]:
    page = client.simulate_get("/docs").text
    return {re.sub(r"\.[0-9a-f]{16}\.", ".", url.rsplit("/", 1)[1]): url
            for url in re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', page)}


@pytest.mark.parametrize(("name", "content_type"), [
    ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("swagger-ui.css", "text/css; charset=utf-8"),
    ("docs.js", "text/javascript; charset=utf-8"),
    ("favicon-32x32.png", "image/png"),
])
def test_assets_are_served_with_their_type_and_cached_for_a_year(client, name, content_type):
    url = asset_urls(client)[name]
    got = client.simulate_get(url)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == content_type
    assert got.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    again = client.simulate_get(url, headers={"If-None-Match": got.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


def test_unknown_assets_are_404(client):
    assert client.simulate_get("/docs/assets/swagger-ui-bundle.js").status_code == 404
    assert client.simulate_get("/docs/assets/..%2Fdocs.html").status_code == 404


def test_vendored_swagger_ui_version_is_written_down():
    from importlib import resources

    static = resources.files("app").joinpath("static")
    bundle = static.joinpath("swagger-ui-bundle.js").read_text("utf-8")
    version = re.search(r"\| `swagger-ui-bundle.js` \| npm `swagger-ui-dist` \| ([\d.]+) \|",
                        static.joinpath("VENDORED.md").read_text("utf-8")).group(1)
    assert f'PACKAGE_VERSION:"{version}"' in bundle
    assert "Apache License" in static.joinpath("swagger-ui.LICENSE").read_text("utf-8")
