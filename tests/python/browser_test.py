"""Drives the /terminal and /wallet pages of a `coledger serve --demo` service in headless
Chromium (Selenium with Debian's chromium and chromedriver), as a shop and a customer on two
devices: a QR sale paid from the phone wallet, a partial refund then the rest (the terminal
offers what is left, then no refund at all), a card sale with a wrong PIN first, both pages
in Arabic (right to left), and the public transparency page in Arabic and English. Screenshots of each screen go to --screenshots.

  python3 browser_test.py BASE_URL --token MERCHANT_TOKEN --wallet-link URL \
      --card NUMBER --pin PIN --screenshots DIR

Prints a JSON summary; exits non-zero with the reason on the first failure.
"""
import argparse
import json
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_S = 20


class Device:
    """One browser, as one phone or laptop: its own profile, storage and keys."""

    def __init__(self, name, shots):
        self.name = name
        self.shots = shots
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        self.profile = tempfile.TemporaryDirectory(prefix="coledger-chromium-")
        for flag in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--lang=en-GB",
            "--user-data-dir=" + self.profile.name,
        ]:
            options.add_argument(flag)
        # A cheap phone's screen: 360 CSS pixels wide.
        options.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 2.0}}
        )
        service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)

    def open(self, url):
        self.driver.get(url)

    def el(self, element_id):
        return self.driver.find_element(By.ID, element_id)

    def visible(self, element_id):
        WebDriverWait(self.driver, WAIT_S).until(
            lambda d: d.find_element(By.ID, element_id).is_displayed(),
            "%s: #%s never showed" % (self.name, element_id),
        )
        return self.el(element_id)

    def wait(self, what, condition):
        return WebDriverWait(self.driver, WAIT_S).until(lambda d: condition(), "%s: %s" % (self.name, what))

    def click(self, element_id):
        self.visible(element_id).click()

    def type(self, element_id, text):
        field = self.visible(element_id)
        field.clear()
        field.send_keys(text)

    def message(self):
        return self.el("message").text

    def shot(self, name):
        """A screenshot, after checking that nothing sticks out sideways at phone width."""
        width, inner = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        check(inner == 360, "%s: the page is %d px wide, not a 360 px phone" % (name, inner))
        check(width <= inner, "%s: %d px of content on a %d px screen" % (name, width, inner))
        if self.shots:
            self.driver.save_screenshot(os.path.join(self.shots, name + ".png"))

    def errors(self):
        """Script errors the page logged. Failed requests are left out: the API answering
        422 to a wrong PIN is part of the test, and the page shows it."""
        try:
            return [
                e["message"]
                for e in self.driver.get_log("browser")
                if e["level"] == "SEVERE" and e.get("source") != "network"
            ]
        except Exception as error:  # the check must not pass for want of a log
            return ["the browser log could not be read: %s" % error]

    def close(self):
        self.driver.quit()
        self.profile.cleanup()


def with_crc(text):
    """`text` (up to and including "6304") with its CRC-16/CCITT-FALSE appended."""
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return text + "%04X" % crc


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def choose_account(terminal, unit):
    select = Select(terminal.visible("account"))
    for option in select.options:
        if option.text.startswith(unit):
            select.select_by_value(option.get_attribute("value"))
            break
    else:
        raise AssertionError("the terminal offers no %s account" % unit)
    # A new account needs this device's key registered first.
    terminal.wait(
        "setup or sale after choosing " + unit,
        lambda: terminal.el("setup").is_displayed() or terminal.el("sale").is_displayed(),
    )
    if terminal.el("setup").is_displayed():
        terminal.click("use-device")
    terminal.visible("sale")
    terminal.wait("the keypad shows " + unit, lambda: unit in terminal.el("display").text)


def key_in(terminal, digits):
    terminal.driver.find_element(By.CSS_SELECTOR, '#keypad button[data-key="C"]').click()
    for digit in digits:
        terminal.driver.find_element(By.CSS_SELECTOR, '#keypad button[data-key="%s"]' % digit).click()


def balance(wallet):
    return wallet.visible("balance").text


def run(args):
    summary = {}
    terminal = Device("terminal", args.screenshots)
    wallet = Device("wallet", args.screenshots)
    try:
        # The shop signs in and makes this laptop its terminal.
        terminal.open(args.base_url + "/terminal")
        terminal.visible("login")
        terminal.shot("terminal-login")
        terminal.type("token", args.token)
        terminal.driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        choose_account(terminal, "DEMO-EUR")

        # 12.50 on the big keypad, then the signed QR code.
        key_in(terminal, "1250")
        check(terminal.el("display").text == "12.50 DEMO-EUR", "display: " + terminal.el("display").text)
        terminal.shot("terminal-keypad")
        terminal.click("charge")
        terminal.visible("request")
        terminal.wait("the QR image loaded", lambda: terminal.driver.execute_script(
            "const i = document.getElementById('qr'); return i.complete && i.naturalWidth > 0"))
        payload = terminal.el("payload").get_attribute("value")
        check(payload.startswith("000201010212"), "payload: " + payload)
        check("Expires in" in terminal.el("countdown").text, "countdown: " + terminal.el("countdown").text)
        summary["payload"] = payload
        terminal.shot("terminal-qr")

        # The customer's phone activates its wallet from the office's link.
        wallet.open(args.wallet_link)
        wallet.visible("activate")
        check(wallet.el("code").get_attribute("value"), "the activation code was not filled in from the link")
        wallet.shot("wallet-activate")
        wallet.driver.find_element(By.CSS_SELECTOR, "#activate-form button").click()
        wallet.wait("the balance", lambda: wallet.el("home").is_displayed() and "DEMO-EUR" in wallet.el("balance").text)
        before = balance(wallet)
        check(before == "80.00 DEMO-EUR", "starting balance: " + before)
        wallet.shot("wallet-home")

        # A damaged code is refused before anything is shown.
        wallet.click("pay")
        damaged = payload[:40] + ("X" if payload[40] != "X" else "Y") + payload[41:]
        wallet.type("paste", damaged)
        wallet.driver.find_element(By.CSS_SELECTOR, "#paste-form button").click()
        wallet.wait("the damaged-code message", lambda: "damaged" in wallet.message())

        # A code whose CRC is right but whose amount differs from the service's copy.
        wallet.type("paste", with_crc(payload[:-4].replace("540512.50", "540513.50")))
        wallet.driver.find_element(By.CSS_SELECTOR, "#paste-form button").click()
        wallet.wait("the disagreement message", lambda: "disagree" in wallet.message())

        # A code agreeing with the service but not signed by the shop's key: shown as such,
        # and it cannot be paid.
        start = payload.index("80630012org.coledger0143") + 24
        forged = payload[:start] + payload[start + 10:start + 20] + payload[start:start + 10] + payload[start + 20:-4]
        wallet.type("paste", with_crc(forged))
        wallet.driver.find_element(By.CSS_SELECTOR, "#paste-form button").click()
        wallet.visible("confirm")
        check(wallet.el("verdict").get_attribute("data-kind") == "bad", "forged verdict: " + wallet.el("verdict").text)
        check(not wallet.el("confirm-pay").is_enabled(), "a forged code can be paid")
        wallet.driver.find_element(By.CSS_SELECTOR, "#confirm button.back").click()
        wallet.wait("home after the forged code", lambda: wallet.el("home").is_displayed())
        wallet.click("pay")

        # The real code: merchant, amount and a verified signature, then pay.
        wallet.type("paste", payload)
        wallet.driver.find_element(By.CSS_SELECTOR, "#paste-form button").click()
        wallet.visible("confirm")
        check(wallet.el("merchant").text == "Ultramarinos Centro", "merchant: " + wallet.el("merchant").text)
        check(wallet.el("confirm-amount").text == "12.50 DEMO-EUR", "amount: " + wallet.el("confirm-amount").text)
        check(wallet.el("verdict").get_attribute("data-kind") == "ok", "signature verdict: " + wallet.el("verdict").text)
        wallet.shot("wallet-confirm")
        started = time.monotonic()
        wallet.click("confirm-pay")
        terminal.visible("paid")
        summary["terminal_saw_paid_s"] = round(time.monotonic() - started, 3)
        check(terminal.el("paid-amount").text == "12.50 DEMO-EUR", "paid: " + terminal.el("paid-amount").text)
        terminal.shot("terminal-paid")
        wallet.visible("receipt")
        check("12.50 DEMO-EUR" in wallet.el("receipt-text").text, "receipt: " + wallet.el("receipt-text").text)
        wallet.shot("wallet-receipt")
        wallet.driver.find_element(By.CSS_SELECTOR, "#receipt button.back").click()
        wallet.wait("the balance after paying", lambda: balance(wallet) == "67.50 DEMO-EUR")

        # Today's sales; refund 2.50 of the sale.
        terminal.click("tab-sales")
        terminal.wait("the sale in today's list", lambda: len(terminal.driver.find_elements(By.CSS_SELECTOR, "#sales-list button.refund")) == 1)
        check("Sales: 1, 12.50 DEMO-EUR" in terminal.el("totals").text, "totals: " + terminal.el("totals").text)
        terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list button.refund").click()
        amount = terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list form input")
        check(amount.get_attribute("value") == "12.50", "refund default: " + amount.get_attribute("value"))
        amount.clear()
        amount.send_keys("2.50")
        terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list form button").click()
        terminal.wait("the refund confirmation", lambda: "Refunded 2.50" in terminal.message())
        terminal.wait("the refund in the totals", lambda: "Refunds 2.50 DEMO-EUR" in terminal.el("totals").text)
        wallet.click("refresh")
        wallet.wait("the refunded balance", lambda: balance(wallet) == "70.00 DEMO-EUR")

        # Refunding again offers what is left of the sale, not the whole sale; once the rest
        # is refunded the sale says so and offers no refund.
        terminal.wait("the sale still refundable", lambda: len(terminal.driver.find_elements(By.CSS_SELECTOR, "#sales-list button.refund")) == 1)
        terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list button.refund").click()
        amount = terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list form input")
        check(amount.get_attribute("value") == "10.00", "refund default after a partial refund: " + amount.get_attribute("value"))
        terminal.driver.find_element(By.CSS_SELECTOR, "#sales-list form button").click()
        terminal.wait("the second refund's confirmation", lambda: "Refunded 10.00" in terminal.message())
        terminal.wait("the refunds in the totals", lambda: "Refunds 12.50 DEMO-EUR" in terminal.el("totals").text)
        check(not terminal.driver.find_elements(By.CSS_SELECTOR, "#sales-list button.refund"),
              "a sale refunded in full still offers a refund")
        notes = [n.text for n in terminal.driver.find_elements(By.CSS_SELECTOR, "#sales-list .note.refunded")]
        check(notes == ["Refunded in full"], "the refunded sale's note: %r" % notes)
        terminal.shot("terminal-sales")
        wallet.click("refresh")
        wallet.wait("the balance refunded in full", lambda: balance(wallet) == "80.00 DEMO-EUR")

        # The same kind of sale through the https pay link (sent by message, say): the link
        # carries the signed code after '#', so the wallet checks the signature as for a scan.
        terminal.click("tab-sale")
        terminal.visible("sale")
        key_in(terminal, "300")
        terminal.click("charge")
        terminal.visible("request")
        link = terminal.el("pay-link").get_attribute("href")
        check("/pay/" in link and "#000201" in link, "pay link: " + link)
        wallet.open(link)
        wallet.visible("confirm")
        check(wallet.el("confirm-amount").text == "3.00 DEMO-EUR", "pay link amount: " + wallet.el("confirm-amount").text)
        check(wallet.el("verdict").get_attribute("data-kind") == "ok", "pay link verdict: " + wallet.el("verdict").text)
        wallet.click("confirm-pay")
        terminal.visible("paid")
        wallet.visible("receipt")
        wallet.driver.find_element(By.CSS_SELECTOR, "#receipt button.back").click()
        wallet.wait("the balance after the pay link", lambda: balance(wallet) == "77.00 DEMO-EUR")

        # The shop cancels a charge; the customer who scanned it can no longer pay it.
        terminal.click("tab-sale")
        terminal.visible("sale")
        key_in(terminal, "100")
        terminal.click("charge")
        terminal.visible("request")
        cancelled = terminal.el("payload").get_attribute("value")
        # While it is open the shop may look at its sales and come back to the same code;
        # the account cannot change under it.
        check(not terminal.el("account").is_enabled(), "account picker enabled with a request open")
        terminal.click("tab-sales")
        terminal.visible("sales")
        terminal.click("tab-sale")
        terminal.visible("request")
        check(terminal.el("payload").get_attribute("value") == cancelled, "another code after coming back")
        terminal.click("cancel")
        terminal.visible("sale")
        check(terminal.el("account").is_enabled(), "account picker still disabled after cancelling")
        wallet.click("pay")
        wallet.type("paste", cancelled)
        wallet.driver.find_element(By.CSS_SELECTOR, "#paste-form button").click()
        wallet.wait("the cancelled message", lambda: "cancelled" in wallet.message())
        wallet.driver.find_element(By.CSS_SELECTOR, "#scan button.back").click()
        wallet.wait("the balance untouched by the cancelled charge", lambda: balance(wallet) == "77.00 DEMO-EUR")

        # A card sale in the programme's unit: a wrong PIN first, then the right one.
        terminal.click("tab-sale")
        choose_account(terminal, "DEMO-PGI")
        key_in(terminal, "500")
        terminal.click("charge")
        terminal.visible("request")
        terminal.driver.find_element(By.CSS_SELECTOR, "#card-box summary").click()
        terminal.type("card-number", args.card)
        wrong = "0000" if args.pin != "0000" else "1111"
        terminal.type("pin", wrong)
        terminal.click("pay-card")
        terminal.wait("the wrong-PIN message", lambda: "Wrong PIN" in terminal.message())
        check("attempts left" in terminal.message(), "wrong PIN message: " + terminal.message())
        terminal.shot("terminal-wrong-pin")
        terminal.type("pin", args.pin)
        terminal.click("pay-card")
        terminal.visible("paid")
        check(terminal.el("paid-amount").text == "5.00 DEMO-PGI", "card sale: " + terminal.el("paid-amount").text)

        # Arabic: the whole page turns right to left.
        for device, screen in [(terminal, "terminal-ar"), (wallet, "wallet-ar")]:
            Select(device.el("language")).select_by_value("ar")
            device.wait("Arabic", lambda: device.driver.execute_script(
                "return document.documentElement.dir === 'rtl' && document.documentElement.lang === 'ar'"
                " && getComputedStyle(document.body).direction === 'rtl'"))
            device.shot(screen)
        check(terminal.el("new-sale").text == "بيع جديد", "Arabic button: " + terminal.el("new-sale").text)
        header = terminal.driver.execute_script(
            "const h = document.querySelector('header h1').getBoundingClientRect();"
            "return [h.left, h.right, window.innerWidth]")
        # The title starts on the right in a right-to-left page.
        check(header[1] > header[2] / 2 and header[0] > 0, "Arabic header position: %r" % header)

        # The public transparency page, still in Arabic (the choice is remembered), then in
        # English: the demo's units with their figures, nothing wider than the phone.
        wallet.open(args.base_url + "/transparency")
        wallet.wait("the transparency report", lambda: wallet.driver.execute_script(
            "return document.querySelectorAll('section.report[data-unit] td').length > 0"))
        check(wallet.driver.execute_script("return document.documentElement.dir") == "rtl",
              "the transparency page is not right to left in Arabic")
        check(wallet.driver.find_element(By.CSS_SELECTOR, "header h1").text == "المال العام",
              "Arabic title: " + wallet.driver.find_element(By.CSS_SELECTOR, "header h1").text)
        wallet.shot("transparency-ar")
        Select(wallet.el("language")).select_by_value("en")
        wallet.wait("English", lambda: "Issued" in wallet.driver.find_element(By.ID, "units").text)
        units = wallet.driver.execute_script(
            "return [...document.querySelectorAll('section.report[data-unit]')].map(s => s.dataset.unit)")
        check("DEMO-EUR" in units, "transparency units: %r" % units)
        summary["transparency_units"] = units
        wallet.shot("transparency-en")
        for device in (terminal, wallet):
            errors = device.errors()
            check(not errors, "%s page errors: %r" % (device.name, errors))
        return summary
    except Exception:
        for device in (terminal, wallet):
            try:
                device.driver.save_screenshot(os.path.join(args.failures, device.name + "-failure.png"))
                sys.stderr.write("%s message line: %r\n" % (device.name, device.message()))
            except Exception:
                pass
        raise
    finally:
        terminal.close()
        wallet.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--token", required=True)
    parser.add_argument("--wallet-link", required=True)
    parser.add_argument("--card", required=True)
    parser.add_argument("--pin", required=True)
    parser.add_argument("--screenshots", default="")
    parser.add_argument("--failures", default=tempfile.gettempdir())
    args = parser.parse_args()
    try:
        summary = run(args)
    except AssertionError as error:
        print("FAILED: %s" % error, file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
