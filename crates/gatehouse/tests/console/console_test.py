"""The web console in Debian's Chromium, driven by Selenium through Debian's
ChromeDriver (no browser download), against a real Gatehouse and a real
upstream that `tests/it/console.rs` started.

What people do, in order: an admin adds an endpoint, syncs and enables its
models and restricts one; a new person registers, makes an API key (and uses
it with the `openai` SDK), chats in the playground and watches the answer
stream in, sees the calls in their usage, and asks for the restricted model;
the admin approves and reads the request logs; the person adds a passkey
through Chromium's virtual authenticator, signs out and back in with it; and
someone signs in through the real OpenID Provider.

On every page: axe-core finds no serious or critical violation, and the
page is photographed at 1280 px and at phone width. At the end, the
DevTools network log shows that no page asked anything of another origin.

Environment: GATEHOUSE_URL, ADMIN_EMAIL, ADMIN_PASSWORD, AXE_JS (axe.min.js),
SHOTS (a folder), SSO_LOGIN (an account of the provider, or empty), and
CHROMIUM / CHROMEDRIVER (default /usr/bin/...).
"""

import base64
import hashlib
import hmac
import json
import struct
import os
import sys
import time
import traceback

import openai
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Protocol,
    Transport,
    VirtualAuthenticatorOptions,
)
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["GATEHOUSE_URL"].rstrip("/")
ADMIN_EMAIL = os.environ["ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["ADMIN_PASSWORD"]
AXE = open(os.environ["AXE_JS"], encoding="utf-8").read()
SHOTS = os.environ["SHOTS"]
SSO_LOGIN = os.environ.get("SSO_LOGIN", "")
WIDTHS = {"desktop": 1280, "phone": 390}

PERSON_EMAIL = "grace@example.com"
PERSON_PASSWORD = "a long and unusual passphrase 42"

checked_pages = []
violations = []


def log(*parts):
    print(*parts, flush=True)


def browser(name):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        # Nothing resolves but this machine: a request elsewhere would fail
        # (and still show in the network log, which is checked).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        "--window-size=1280,900",
        f"--user-data-dir={os.path.join(SHOTS, '.profile-' + name)}",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    driver.label = name
    driver.requests = []
    return driver


def wait(driver, condition, what, seconds=15):
    try:
        # A page reloading under the check: look again.
        ignored = [StaleElementReferenceException, NoSuchElementException]
        return WebDriverWait(driver, seconds, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        raise AssertionError(f"{driver.label}: timed out waiting for {what} on {driver.current_url}")


def find(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def loaded(driver):
    return driver.execute_script("return document.readyState") == "complete"


def go(driver, path):
    driver.get(BASE + path)
    wait(driver, loaded, "the page to load")


def fill(driver, css, text):
    field = find(driver, css)
    field.clear()
    field.send_keys(text)


def accept_confirm(driver):
    try:
        WebDriverWait(driver, 3).until(lambda d: d.switch_to.alert)
        driver.switch_to.alert.accept()
    except (TimeoutException, NoAlertPresentException):
        pass


def totp(secret, at):
    """RFC 6238 with SHA-1, six digits, 30-second steps, for `at` (seconds)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 15
    number = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{number:06d}"


def collect_requests(driver):
    """The URLs every page of this browser asked for, from the DevTools log."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            driver.requests.append(message["params"]["request"]["url"])


def screenshot(driver, path):
    """The whole page, not only the window."""
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    with open(path, "wb") as out:
        out.write(base64.b64decode(shot["data"]))


def check_page(driver, name):
    """axe-core on the page, and a picture at each width."""
    wait(driver, loaded, "the page to load")
    driver.execute_script(AXE)
    found = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(
          r => done(r.violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))),
          e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));
        """
    )
    for violation in found:
        violations.append({"page": name, **violation})
    for label, width in WIDTHS.items():
        driver.set_window_size(width, 900)
        time.sleep(0.2)
        screenshot(driver, os.path.join(SHOTS, f"{name}-{label}.png"))
    driver.set_window_size(1280, 900)
    checked_pages.append(name)
    collect_requests(driver)


def sign_in(driver, login, password, next_path="/"):
    go(driver, next_path)
    wait(driver, lambda d: "/sign-in" in d.current_url, "the sign-in page")
    fill(driver, "#login", login)
    fill(driver, "#password", password)
    find(driver, "#sign-in [type=submit]").click()
    wait(driver, lambda d: "/sign-in" not in d.current_url, "signing in")


def row(driver, css):
    return find(driver, css)


def click_in(driver, row_css, button_text, confirm=False, reload=True):
    """Clicks the button saying `button_text` in the row, then waits for the reload."""
    marker = driver.execute_script("window.__before = Math.random(); return window.__before;")
    target = row(driver, row_css)
    buttons = [b for b in target.find_elements(By.TAG_NAME, "button") if b.text.strip() == button_text]
    assert buttons, f"a {button_text!r} button in {row_css}: {target.text}"
    buttons[0].click()
    if confirm:
        accept_confirm(driver)
    if not reload:
        return
    wait(
        driver,
        lambda d: d.execute_script("return window.__before") != marker and loaded(d),
        f"the page to reload after {button_text}",
    )


def submit_and_reload(driver, form_css):
    marker = driver.execute_script("window.__before = Math.random(); return window.__before;")
    find(driver, form_css + " [type=submit]").click()

    def reloaded(d):
        if d.execute_script("return window.__before") != marker:
            return loaded(d)
        error = d.find_elements(By.CSS_SELECTOR, form_css + " [data-error]")
        if error and error[0].text.strip():
            raise AssertionError(f"{form_css}: {error[0].text}")
        return False

    wait(driver, reloaded, f"{form_css} to be saved")


# ---- the admin sets up the catalogue ------------------------------------------

def admin_sets_up_models(admin, upstream):
    go(admin, "/")
    assert "/sign-in" in admin.current_url, admin.current_url
    check_page(admin, "sign-in")
    sign_in(admin, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert find(admin, "h1").text.startswith("Welcome"), find(admin, "h1").text

    go(admin, "/catalog/endpoints")
    find(admin, "#create-endpoint").find_element(By.XPATH, "..").find_element(By.TAG_NAME, "summary").click()
    fill(admin, "#ep-name", "upstream")
    fill(admin, "#ep-url", upstream)
    submit_and_reload(admin, "#create-endpoint")
    row(admin, "tr[data-endpoint=upstream]")
    find(admin, "tr[data-endpoint=upstream] [data-sync]").click()
    wait(admin, lambda d: "Synced: 2 added" in find(d, "[data-page-message]").text, "the sync's answer")
    check_page(admin, "endpoints")

    go(admin, "/catalog")
    click_in(admin, "tr[data-model=console-gpt]", "Enable")
    click_in(admin, "tr[data-model=console-pro]", "Enable")
    click_in(admin, "tr[data-model=console-pro]", "Restrict")
    # A price, so that spend shows.
    model_row = row(admin, "tr[data-model=console-gpt]")
    model_row.find_element(By.TAG_NAME, "summary").click()
    form = model_row.find_element(By.TAG_NAME, "form")
    price = form.find_element(By.NAME, "input_cost_per_token")
    price.clear()
    price.send_keys("0.00001")
    form_id = admin.execute_script("arguments[0].id = 'edit-gpt'; return arguments[0].id;", form)
    submit_and_reload(admin, "#" + form_id)
    text = row(admin, "tr[data-model=console-gpt]").text
    assert "$10.00 in" in text, text
    assert "restricted" in row(admin, "tr[data-model=console-pro]").text
    check_page(admin, "models-admin")


# ---- a new person ---------------------------------------------------------------

def person_registers_and_makes_a_key(person):
    # The pages emails lead to, signed out.
    for path, name in [
        ("/reset", "reset"),
        ("/reset?token=abc", "reset-confirm"),
        ("/verify?token=abc", "verify"),
        ("/invitation?token=abc", "invitation"),
    ]:
        go(person, path)
        check_page(person, name)
    go(person, "/sign-in")
    find(person, "a[href='/register']").click()
    wait(person, lambda d: "/register" in d.current_url, "the registration page")
    check_page(person, "register")
    fill(person, "#email", PERSON_EMAIL)
    fill(person, "#display_name", "Grace Hopper")
    fill(person, "#new-password", PERSON_PASSWORD)
    find(person, "#register [type=submit]").click()
    wait(person, lambda d: d.current_url.rstrip("/") == BASE, "home after registering")
    assert "Welcome, Grace Hopper" in find(person, "h1").text
    assert "console-gpt" in find(person, ".models").text
    check_page(person, "home-new")

    go(person, "/keys")
    fill(person, "#key-label", "laptop")
    find(person, "#create-key [type=submit]").click()
    wait(person, lambda d: find(d, "#new-key").text.startswith("ak_"), "the new key")
    key = find(person, "#new-key").text
    check_page(person, "keys-created")
    go(person, "/keys")
    shown = find(person, "#keys tbody tr code").text.rstrip("…")
    assert "laptop" in find(person, "#keys").text and len(shown) >= 6 and key.startswith(shown), shown
    assert key not in person.page_source, "the key is shown once only"
    check_page(person, "keys")
    return key


def key_works_with_the_openai_sdk(key):
    client = openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="console-gpt", messages=[{"role": "user", "content": "Hello?"}]
    )
    assert answer.choices[0].message.content == "Hello from the upstream", answer
    try:
        client.chat.completions.create(model="console-pro", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a restricted model answered without a subscription")
    except openai.PermissionDeniedError:
        pass


def person_chats_in_the_playground(person):
    go(person, "/playground")
    Select(find(person, "#chat-model")).select_by_visible_text("console-gpt")
    fill(person, "#chat-name", "First chat")
    find(person, "#new-chat [type=submit]").click()
    wait(person, lambda d: "/playground/" in d.current_url, "the new chat")
    assert find(person, "h1").text == "First chat"
    fill(person, "#message", "Tell me about compilers.")
    find(person, "#send [type=submit]").click()
    seen = set()

    def finished(d):
        answers = d.find_elements(By.CSS_SELECTOR, "li.message.assistant")
        if not answers:
            return False
        text = answers[-1].find_element(By.CSS_SELECTOR, ".content").text
        seen.add(text)
        return answers[-1].get_attribute("data-done") == "true"

    wait(person, finished, "the streamed answer", seconds=20)
    final = person.find_elements(By.CSS_SELECTOR, "li.message.assistant .content")[-1].text
    assert final == "Compilers turn source into machine code.", final
    partial = [t for t in seen if t and t != final]
    assert partial, f"the answer came in pieces (seen: {sorted(seen)})"
    check_page(person, "playground-chat")
    # Stored: the chat reads back after a reload.
    go(person, person.current_url.replace(BASE, ""))
    texts = [e.text for e in person.find_elements(By.CSS_SELECTOR, "li.message .content")]
    assert texts == ["Tell me about compilers.", final], texts
    go(person, "/playground")
    find(person, "#new-project").find_element(By.XPATH, "..").find_element(By.TAG_NAME, "summary").click()
    fill(person, "#project-name", "Research notes")
    submit_and_reload(person, "#new-project")
    assert "Research notes" in find(person, ".chats").text, find(person, ".chats").text
    check_page(person, "playground")


def person_sees_usage_and_asks_for_a_model(person):
    # One SDK call and one playground call; the usage flush runs every 200 ms.
    for _ in range(50):
        go(person, "/")
        if find(person, "[data-total=requests]").text == "2":
            break
        time.sleep(0.2)
    assert find(person, "[data-total=requests]").text == "2", find(person, ".totals").text
    assert find(person, "[data-total=spend]").text != "$0.00", find(person, ".totals").text
    check_page(person, "home")

    go(person, "/catalog")
    click_in(person, "tr[data-model=console-pro]", "Request access")
    assert "pending" in row(person, "tr[data-model=console-pro]").text
    check_page(person, "models")
    go(person, "/catalog/subscriptions")
    check_page(person, "subscriptions-own")
    go(person, "/catalog/aliases")
    check_page(person, "aliases-own")
    # What a person may not open: a page that says so, not the admin's.
    go(person, "/admin/users")
    assert find(person, "h1").text == "Not found", find(person, "h1").text
    check_page(person, "not-found")


def admin_approves_and_reads_logs(admin):
    go(admin, "/catalog/subscriptions")
    subscription = row(admin, "#subscriptions tbody tr")
    assert PERSON_EMAIL in subscription.text and "pending" in subscription.text, subscription.text
    check_page(admin, "subscriptions")
    click_in(admin, "#subscriptions tbody tr", "Approve")
    assert "active" in row(admin, "#subscriptions tbody tr").text

    go(admin, "/admin/request-logs")
    logs = admin.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
    assert len(logs) >= 2 and all("console-gpt" in r.text for r in logs), [r.text for r in logs]
    check_page(admin, "request-logs")
    logs[0].find_element(By.TAG_NAME, "a").click()
    wait(admin, lambda d: "/admin/request-logs/" in d.current_url, "a request log")
    assert "console-gpt" in find(admin, ".fields").text
    check_page(admin, "request-log")

    for path, name in [
        ("/admin/users", "users"),
        ("/admin/usage", "usage"),
        ("/admin/audit", "audit"),
        ("/admin/system", "system"),
        ("/catalog/credentials", "credentials"),
        ("/catalog/aliases", "aliases"),
        ("/organizations", "organizations"),
        ("/account", "account-admin"),
    ]:
        go(admin, path)
        check_page(admin, name)
    go(admin, "/admin/users?q=grace")
    assert PERSON_EMAIL in find(admin, "#users").text
    go(admin, "/admin/usage?group_by=user")
    assert find(admin, "#usage tbody").text.strip(), "everyone's usage has rows"


def person_uses_the_approved_model(key):
    client = openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="console-pro", messages=[{"role": "user", "content": "Hello?"}]
    )
    assert answer.choices[0].message.content == "Hello from the upstream"


def person_works_with_organizations(person):
    go(person, "/organizations")
    find(person, "#create-org").find_element(By.XPATH, "..").find_element(By.TAG_NAME, "summary").click()
    fill(person, "#org-name", "Analytical Engines")
    find(person, "#create-org [type=submit]").click()
    wait(person, lambda d: "/organizations/" in d.current_url, "the new organization")
    assert find(person, "h1").text == "Analytical Engines"
    fill(person, "#team-name", "Research")
    submit_and_reload(person, "#create-team")
    assert "Research" in find(person, "#teams").text
    fill(person, "#client-name", "ingest")
    submit_and_reload(person, "#create-client")
    click_in(person, "#clients tbody tr", "New certificate", reload=False)
    # The private key is shown once, in the page.
    wait(person, lambda d: "PRIVATE KEY" in find(d, "#new-secret").text, "the private key")
    check_page(person, "organization")


def person_adds_a_passkey_and_signs_in_with_it(person):
    person.add_virtual_authenticator(
        VirtualAuthenticatorOptions(
            protocol=Protocol.CTAP2,
            transport=Transport.INTERNAL,
            has_resident_key=True,
            has_user_verification=True,
            is_user_verified=True,
        )
    )
    go(person, "/account")
    check_page(person, "account")
    fill(person, "#pk-name", "this laptop")
    fill(person, "#pk-password", PERSON_PASSWORD)
    marker = person.execute_script("window.__before = 1; return 1;")
    find(person, "#add-passkey [type=submit]").click()

    def added(d):
        if d.execute_script("return window.__before") == marker:
            error = find(d, "#add-passkey [data-error]").text
            if error:
                raise AssertionError(f"the passkey was not added: {error}")
            return False
        return loaded(d)

    wait(person, added, "the passkey to be added")
    assert "this laptop" in find(person, "#passkeys").text
    find(person, "[data-sign-out]").click()
    wait(person, lambda d: "/sign-in" in d.current_url, "signing out")
    go(person, "/keys")
    assert "/sign-in" in person.current_url, "signed out for real"
    find(person, "[data-passkey-sign-in]").click()
    wait(person, lambda d: "/sign-in" not in d.current_url, "the passkey sign-in")
    assert person.current_url == BASE + "/keys", person.current_url
    assert "Grace Hopper" in find(person, ".who").text


def person_turns_on_an_authenticator_app(person):
    go(person, "/account")
    fill(person, "#totp-pw", PERSON_PASSWORD)
    find(person, "#totp-start [type=submit]").click()
    wait(person, lambda d: find(d, "[data-totp-secret]").text, "the authenticator secret")
    secret = find(person, "[data-totp-secret]").text
    assert find(person, "[data-totp-qr]").get_attribute("src").startswith("data:image/svg+xml;base64,")
    fill(person, "#totp-code", totp(secret, time.time()))
    find(person, "#totp-confirm [type=submit]").click()
    wait(person, lambda d: len(find(d, "[data-recovery-codes]").text.split()) == 10, "the recovery codes")
    check_page(person, "account-recovery-codes")
    find(person, "[data-sign-out]").click()
    wait(person, lambda d: "/sign-in" in d.current_url, "signing out")
    # Password, then the app's code (the next step's: the current one is spent).
    fill(person, "#login", PERSON_EMAIL)
    fill(person, "#password", PERSON_PASSWORD)
    find(person, "#sign-in [type=submit]").click()
    wait(person, lambda d: find(d, "#second-factor").is_displayed(), "the second-factor step")
    check_page(person, "sign-in-second-factor")
    fill(person, "#code", totp(secret, time.time() + 30))
    find(person, "#second-factor [type=submit]").click()
    wait(person, lambda d: d.current_url.rstrip("/") == BASE, "home after the second factor")
    go(person, "/account")
    assert "On." in find(person, "section[aria-labelledby=totp-title]").text


def admin_creates_someone_who_sets_their_password(admin):
    go(admin, "/admin/users")
    find(admin, "#create-user").find_element(By.XPATH, "..").find_element(By.TAG_NAME, "summary").click()
    fill(admin, "#new-email", "ken@example.com")
    fill(admin, "#new-name", "Ken")
    find(admin, "#create-user [type=submit]").click()
    wait(admin, lambda d: len(find(d, "#new-secret").text) >= 12, "the generated password")
    generated = find(admin, "#new-secret").text
    driver = browser("newcomer")
    try:
        sign_in(driver, "ken@example.com", generated)
        wait(driver, lambda d: "/password" in d.current_url, "the forced password change")
        check_page(driver, "password")
        fill(driver, "#current-password", generated)
        fill(driver, "#new-password", "kens own long passphrase")
        find(driver, "#change-password [type=submit]").click()
        wait(driver, lambda d: d.current_url.rstrip("/") == BASE, "home after the change")
        assert "Welcome, Ken" in find(driver, "h1").text
        collect_requests(driver)
        return driver.requests
    finally:
        driver.quit()


def someone_signs_in_through_sso():
    if not SSO_LOGIN:
        log("sso: skipped (no provider)")
        return
    # Its own browser: the provider's pages are another origin, on purpose.
    driver = browser("sso")
    try:
        go(driver, "/sign-in")
        find(driver, "a.button[href*='/api/v1/auth/sso/corp/start']").click()
        for _ in range(4):
            wait(driver, loaded, "the provider's page")
            if driver.current_url.startswith(BASE):
                break
            forms = driver.find_elements(By.CSS_SELECTOR, "form")
            logins = driver.find_elements(By.NAME, "login")
            if logins:
                logins[0].send_keys(SSO_LOGIN)
                driver.find_element(By.NAME, "password").send_keys("any")
            current = driver.current_url
            forms[0].submit()
            wait(driver, lambda d: d.current_url != current, "the provider's next step")
        wait(driver, lambda d: d.current_url.rstrip("/") == BASE, "home after single sign-on", seconds=20)
        assert "Welcome" in find(driver, "h1").text, find(driver, "body").text
    finally:
        driver.quit()


def main(upstream):
    os.makedirs(SHOTS, exist_ok=True)
    admin = browser("admin")
    person = browser("person")
    try:
        log("step: admin sets up models")
        admin_sets_up_models(admin, upstream)
        log("step: person registers and makes a key")
        newcomer_requests = []
        key = person_registers_and_makes_a_key(person)
        log("step: the key works with the openai SDK")
        key_works_with_the_openai_sdk(key)
        log("step: playground")
        person_chats_in_the_playground(person)
        log("step: usage and a subscription request")
        person_sees_usage_and_asks_for_a_model(person)
        log("step: admin approves and reads logs")
        admin_approves_and_reads_logs(admin)
        person_uses_the_approved_model(key)
        log("step: organizations")
        person_works_with_organizations(person)
        log("step: passkey")
        person_adds_a_passkey_and_signs_in_with_it(person)
        log("step: authenticator app")
        person_turns_on_an_authenticator_app(person)
        log("step: a created account changes its generated password")
        newcomer_requests = admin_creates_someone_who_sets_their_password(admin)
        log("step: single sign-on")
        someone_signs_in_through_sso()
        collect_requests(admin)
        collect_requests(person)
    except Exception:
        for driver in (admin, person):
            try:
                screenshot(driver, os.path.join(SHOTS, f"failure-{driver.label}.png"))
                log(f"{driver.label} was at {driver.current_url}")
                for entry in driver.get_log("browser")[-20:]:
                    log(f"{driver.label} console: {entry['message']}")
            except Exception:
                pass
        traceback.print_exc()
        return 1
    finally:
        admin.quit()
        person.quit()
    # Requests that left the browser (http, https, ws): all to Gatehouse. The
    # browser's own pages (chrome://, its first new tab) are not the web.
    requests = admin.requests + person.requests + newcomer_requests
    network = [u for u in requests if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
    assert network, "the network log was read"
    elsewhere = sorted({u for u in network if not u.startswith(BASE + "/")})
    report = {
        "pages": checked_pages,
        "violations": violations,
        "elsewhere": elsewhere,
        "requests": len(network),
    }
    print("REPORT " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
