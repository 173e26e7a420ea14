// The shop's terminal: sign in with the merchant's token, type an amount, show a signed EMV
// QR code and see it paid the moment the payment commits (server-sent events), take a card
// and PIN instead, list today's sales and refund one.

import {
  ApiError, api, asciiDigits, cameraScanAvailable, ed25519Available, formatMinor, generateKey, intentId,
  keyProof, languagePicker, loadKey, outcomeUnknown, parseMinor, problemText, publicKeyText, saveKey, say,
  scanQr, show, sign, signedIntent, t,
} from "./common.js";
import { finish, signedBytes, signedPart } from "./emv.js";

const TOKEN_KEY = "coledger.terminal.token";
const ACCOUNT_KEY = "coledger.terminal.account";
const SETTINGS_KEY = "coledger.terminal.settings";
/** How long a QR code stays payable: long enough to pay, short enough that an abandoned one
 * cannot be paid much later without the shop seeing it. */
const REQUEST_SECONDS = 180;
/** Pages of today's sales read at most (200 lines each): a bound, not a real limit. */
const MAX_SALES_PAGES = 50;
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  participant: null,
  accounts: [],
  account: null,
  unit: null,
  key: null,
  digits: "",
  request: null,
  events: null,
  countdown: null,
  cardIntent: null,
  scanning: null,
  busy: false,
  currencies: {},
};

const settings = () => ({ label: "web", country: "ES", city: "", ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") });

function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({ label: $("label").value.trim(), country: $("country").value.trim().toUpperCase(), city: $("city").value.trim() }));
}

async function start() {
  languagePicker($("language"));
  const current = settings();
  $("label").value = current.label;
  $("country").value = current.country;
  $("city").value = current.city;
  for (const id of ["label", "country", "city"]) $(id).addEventListener("change", saveSettings);
  $("scan-card").hidden = !cameraScanAvailable();
  state.currencies = await api("GET", "/assets/currencies.json");
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) await signIn(token);
  else show("login");
}

async function signIn(token) {
  try {
    const me = await api("GET", "/v1/me", { token });
    if (me.kind !== "operator" || !me.participant_id || !me.accounts.length) {
      throw new Error("this token belongs to no shop with an account");
    }
    state.token = token;
    state.accounts = me.accounts;
    state.participant = await api("GET", `/v1/participants/${me.participant_id}`, { token });
    localStorage.setItem(TOKEN_KEY, token);
    const select = $("account");
    select.replaceChildren(...state.accounts.map((a) => new Option(`${a.unit} · ${a.id.slice(0, 8)}`, a.id)));
    const remembered = localStorage.getItem(ACCOUNT_KEY);
    select.value = state.accounts.some((a) => a.id === remembered) ? remembered : state.accounts[0].id;
    $("shop-name").textContent = state.participant.name;
    $("tabs").hidden = false;
    $("account-bar").hidden = false;
    say("");
    await selectAccount(select.value);
  } catch (error) {
    // Only a refused token is forgotten: being offline at opening time must not lose it.
    if (!(error instanceof ApiError) || error.status === 401) localStorage.removeItem(TOKEN_KEY);
    show("login");
    say(problemText(error));
  }
}

async function selectAccount(id) {
  state.account = state.accounts.find((a) => a.id === id);
  localStorage.setItem(ACCOUNT_KEY, id);
  state.unit = await api("GET", `/v1/units/${state.account.unit}`, { token: state.token });
  state.key = await loadKey(`terminal:${id}`);
  state.digits = "";
  render();
  if (!state.key || state.key.publicKey !== state.account.public_key) show("setup");
  else show("sale");
}

/** Makes this browser's key the account's signing key (replacing any other terminal's). */
async function useDevice() {
  if (state.busy) return;
  if (!(await ed25519Available())) return say(t("error.no_crypto"));
  state.busy = true;
  try {
    const pair = state.key?.pair || (await generateKey());
    const account = await api("PUT", `/v1/accounts/${state.account.id}/key`, {
      token: state.token,
      body: await keyProof(pair, state.account.id),
    });
    state.key = { pair, publicKey: await publicKeyText(pair) };
    await saveKey(`terminal:${state.account.id}`, state.key);
    state.account.public_key = account.public_key;
    say("");
    show("sale");
  } catch (error) {
    say(problemText(error));
  } finally {
    state.busy = false;
  }
}

const minor = () => Number(state.digits || "0");

function render() {
  $("display").textContent = `${formatMinor(minor(), state.unit.scale)} ${state.unit.code}`;
}

function press(key) {
  if (key === "C") state.digits = "";
  else if (key === "B") state.digits = state.digits.slice(0, -1);
  else if (state.digits.length < 12) state.digits = (state.digits + key).replace(/^0+/, "");
  render();
}

/** Latin letters only, as EMV's `59` and `60` allow: accents dropped, other scripts left out. */
function ascii(text, max) {
  return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/[^\x20-\x7e]/g, "").trim().slice(0, max);
}

function scriptLanguage(text) {
  if (/[\u0600-\u06ff]/.test(text)) return "ar";
  if (/[\u0370-\u03ff]/.test(text)) return "el";
  return "es";
}

async function charge() {
  if (minor() === 0) return say(t("error.amount"));
  if (state.busy || state.request) return;
  state.busy = true;
  const amount = formatMinor(minor(), state.unit.scale);
  // One key for this charge: a retry after a lost answer gets the same request back.
  state.chargeKey ??= crypto.randomUUID();
  try {
    const request = await api("POST", "/v1/payment-requests", {
      token: state.token,
      body: { account_id: state.account.id, amount, expires_in_s: REQUEST_SECONDS },
      idempotencyKey: state.chargeKey,
    });
    state.chargeKey = null;
    const shop = state.participant;
    const own = shop.name;
    const latin = ascii(own, 25);
    const current = settings();
    const part = signedPart({
      amount,
      account: state.account.id,
      unit: state.unit.code,
      category: shop.category_code || "0000",
      currency: state.unit.peg ? state.currencies[state.unit.peg] ?? 999 : 999,
      country: /^[A-Z]{2}$/.test(current.country) ? current.country : "ES",
      name: latin || "Shop",
      city: ascii(current.city || shop.area || "", 15) || "-",
      reference: request.id,
      terminal: ascii(current.label, 25) || "web",
      alternate: latin === own ? null : { language: scriptLanguage(own), name: [...own].slice(0, 25).join("") },
    });
    const payload = finish(part, await sign(state.key.pair, signedBytes(part)));
    state.request = { ...request, payload };
    // The request is this account's: another account waits until it is paid or let go.
    $("account").disabled = true;
    state.cardIntent = intentId();
    $("request-amount").textContent = `${amount} ${state.unit.code}`;
    $("qr").src = `/qr.svg?data=${encodeURIComponent(payload)}`;
    $("payload").value = payload;
    $("pay-link").href = `${location.origin}/pay/${request.id}#${encodeURIComponent(payload)}`;
    $("card-number").value = "";
    $("pin").value = "";
    say("");
    show("request");
    watch(request);
  } catch (error) {
    if (!outcomeUnknown(error)) state.chargeKey = null;
    say(problemText(error));
  } finally {
    state.busy = false;
  }
}

function stopWatching() {
  state.events?.close();
  state.events = null;
  clearInterval(state.countdown);
  state.scanning?.stop();
}

/** Lets go of the open request (paid, cancelled or no longer payable): a new charge may start. */
function release() {
  stopWatching();
  state.request = null;
  $("account").disabled = false;
}

/** Follows the request: a countdown to its expiry and the service's word that it is paid. */
function watch(request) {
  stopWatching();
  const deadline = Date.now() + (request.expires_at_ms - request.created_at_ms);
  const tick = () => {
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    $("countdown").textContent = t("terminal.expires_in", { s: left });
    // At zero, or every few seconds while the event stream is down, ask the service.
    if (left === 0 || (state.events?.readyState === EventSource.CONNECTING && left % 3 === 0)) settle(request.id);
  };
  tick();
  state.countdown = setInterval(tick, 1000);
  const events = new EventSource(`/v1/payment-requests/${request.id}/events`);
  events.addEventListener("settled", () => paid());
  // "expired" or "cancelled" is the stream's last word, but a payment may have committed at
  // the last moment: the request's own status decides what the shop is told.
  events.addEventListener("expired", () => settle(request.id));
  events.addEventListener("cancelled", () => settle(request.id));
  state.events = events;
}

/** Shows what the service says of the request now: paid, or no longer payable. */
async function settle(id) {
  let request;
  try {
    request = await api("GET", `/v1/payment-requests/${id}`);
  } catch {
    return; // Offline: the countdown asks again.
  }
  if (state.request?.id !== id) return;
  if (request.status === "paid") return paid();
  if (request.status === "open") return;
  release();
  $("qr").removeAttribute("src");
  $("countdown").textContent = t("terminal.expired");
}

/** Cancels the request at the service before letting go of it: a customer who scanned it
 * must not be able to pay it unseen. If the payment won the race, the sale is paid. */
async function cancel() {
  const request = state.request;
  if (state.busy) return;
  // Already over (it expired): nothing to cancel, back to the keypad.
  if (!request) return show("sale");
  state.busy = true;
  try {
    await api("POST", `/v1/payment-requests/${request.id}/cancel`, { token: state.token });
    release();
    say("");
    show("sale");
  } catch (error) {
    if (error.type === "/problems/request-already-paid") paid();
    else say(problemText(error));
  } finally {
    state.busy = false;
  }
}

function paid() {
  if (!state.request) return;
  release();
  say("");
  $("pin").value = "";
  state.digits = "";
  render();
  show("paid");
  // Filled once shown: the <output> is a live region, so a screen reader says the amount.
  $("paid-amount").textContent = $("request-amount").textContent;
}

async function payByCard(event) {
  event.preventDefault();
  const number = asciiDigits($("card-number").value.replace(/^coledger:card:/, "").replace(/\s+/g, ""));
  const pin = asciiDigits($("pin").value);
  $("pin").value = "";
  if (state.busy) return;
  if (!state.request) return say(t("terminal.expired"));
  state.busy = true;
  try {
    // The same intent id for every try at this request: a retry after a lost answer pays once.
    await api("POST", `/v1/cards/${encodeURIComponent(number)}/payments`, {
      token: state.token,
      body: {
        intent_id: state.cardIntent,
        pin,
        to: state.account.id,
        amount: formatMinor(state.request.amount_minor, state.unit.scale),
        request: state.request.id,
      },
    });
    paid();
  } catch (error) {
    say(problemText(error));
  } finally {
    state.busy = false;
  }
}

async function scanCard() {
  if (state.scanning) return;
  state.scanning = scanQr($("camera"));
  try {
    const text = await state.scanning.done;
    if (text) $("card-number").value = text.replace(/^coledger:card:/, "");
  } catch (error) {
    say(t("error.generic", { detail: error.message }));
  } finally {
    state.scanning = null;
  }
}

function midnight() {
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  return today.getTime();
}

/** Today's payments in and refunds out, with their totals. */
async function loadSales() {
  show("sales");
  const list = $("sales-list");
  list.replaceChildren();
  const items = [];
  let cursor = null;
  let pages = 0;
  try {
    do {
      const query = new URLSearchParams({ since_ms: midnight(), limit: 200 });
      if (cursor) query.set("cursor", cursor);
      const page = await api("GET", `/v1/accounts/${state.account.id}/entries?${query}`, { token: state.token });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && ++pages < MAX_SALES_PAGES);
  } catch (error) {
    return say(problemText(error));
  }
  const scale = state.unit.scale;
  const money = (m) => `${formatMinor(m, scale)} ${state.unit.code}`;
  const sales = items.filter((i) => i.kind === "payment" && i.amount_minor > 0);
  // A refund is a reversal linked to the sale it gives back; a reversal without the link is
  // an operator's correction, which the shop did not make: listed, but not a refund.
  const refunds = items.filter((i) => i.kind === "reversal" && i.reverses && i.amount_minor < 0);
  const corrections = items.filter((i) => i.kind === "reversal" && !i.reverses);
  const sum = (lines) => lines.reduce((n, i) => n + i.amount_minor, 0);
  const totals = [
    t("terminal.sales_total", { n: sales.length, total: money(sum(sales)) }),
    t("terminal.refunds_total", { total: money(-sum(refunds)) }),
    t("terminal.net", { total: money(sum(sales) + sum(refunds)) }),
  ];
  if (corrections.length) totals.push(t("terminal.corrections_total", { total: money(sum(corrections)) }));
  $("totals").textContent = totals.join(" · ");
  const lines = [...sales, ...refunds, ...corrections];
  if (!lines.length) {
    const empty = document.createElement("li");
    empty.textContent = t("terminal.no_sales");
    list.append(empty);
  }
  for (const item of lines.sort((a, b) => b.position - a.position)) {
    list.append(saleLine(item, money));
  }
}

function lineLabel(item) {
  if (item.kind === "payment") return item.memo || t("terminal.sale");
  return item.reverses ? t("terminal.refund_line") : t("terminal.correction_line");
}

function saleLine(item, money) {
  const line = document.createElement("li");
  line.dataset.entry = item.entry_id;
  const time = new Date(item.created_at_ms).toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
  const what = document.createElement("span");
  what.textContent = `${time} · ${lineLabel(item)}`;
  const amount = document.createElement("bdi");
  amount.className = "money";
  amount.textContent = money(item.amount_minor);
  line.append(what, amount);
  // The service says what is left to refund of each sale it can refund (null: one it cannot,
  // such as a payment of several legs); a sale refunded in full says so instead of a button.
  if (item.kind === "payment" && item.refundable_minor > 0) {
    const button = document.createElement("button");
    button.textContent = t("terminal.refund");
    button.className = "refund";
    button.addEventListener("click", () => refundForm(line, item));
    line.append(button);
  } else if (item.kind === "payment" && item.refundable_minor === 0) {
    const note = document.createElement("span");
    note.className = "note refunded";
    note.textContent = t("terminal.refunded_in_full");
    line.append(note);
  }
  return line;
}

function refundForm(line, item) {
  if (line.querySelector("form")) return;
  const form = document.createElement("form");
  const input = document.createElement("input");
  input.inputMode = "decimal";
  // What is left of the sale, not the sale: earlier partial refunds count.
  input.value = formatMinor(item.refundable_minor, state.unit.scale);
  input.setAttribute("aria-label", t("terminal.refund_amount"));
  const confirm = document.createElement("button");
  confirm.className = "primary";
  confirm.textContent = t("terminal.refund_confirm");
  form.append(input, confirm);
  // One signed refund per amount typed: resending after a lost answer repeats the same
  // intent (the service answers it once), never a second refund.
  let signed = null;
  input.addEventListener("input", () => (signed = null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (confirm.disabled) return;
    const amount = parseMinor(input.value, state.unit.scale);
    if (!amount) return say(t("error.refund_amount"));
    confirm.disabled = true;
    try {
      signed ??= await signedIntent(state.key.pair, {
        type: "refund",
        payment: item.entry_id,
        from: state.account.id,
        to: item.counterparties[0],
        unit: state.unit.code,
        amount_minor: amount,
      });
      await refund(signed, amount);
    } finally {
      confirm.disabled = false;
    }
  });
  line.append(form);
  input.focus();
}

async function refund(intent, amount) {
  const money = (m) => `${formatMinor(m, state.unit.scale)} ${state.unit.code}`;
  try {
    await api("POST", "/v1/intents", { body: intent });
    await loadSales();
    say(t("terminal.refunded", { amount: money(amount) }), "ok");
  } catch (error) {
    if (error.type === "/problems/refund-exceeds-payment") {
      say(t("error.refund_exceeds", { left: money(error.problem.refundable_minor ?? 0) }));
    } else {
      say(problemText(error));
    }
  }
}

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value.trim());
  });
  $("use-device").addEventListener("click", useDevice);
  $("account").addEventListener("change", (event) => selectAccount(event.target.value));
  $("keypad").addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button?.dataset.key) press(button.dataset.key);
    // A tapped key lets go of the focus, so typed digits and Enter reach the sale again
    // (with the focus on it, Enter would press the key once more).
    if (event.detail > 0) button?.blur();
  });
  document.addEventListener("keydown", (event) => {
    if ($("sale").hidden || event.target.closest("input, select, textarea, button, summary")) return;
    const key = asciiDigits(event.key);
    if (/^\d$/.test(key)) press(key);
    else if (event.key === "Backspace") press("B");
    else if (event.key === "Enter") charge();
  });
  $("charge").addEventListener("click", charge);
  $("card-form").addEventListener("submit", payByCard);
  $("scan-card").addEventListener("click", scanCard);
  $("cancel").addEventListener("click", cancel);
  $("new-sale").addEventListener("click", () => show("sale"));
  // With a request open, "Sale" goes back to its code: the keypad would start no new charge.
  $("tab-sale").addEventListener("click", () => {
    if (state.token) state.request ? show("request") : selectAccount(state.account.id);
  });
  $("tab-sales").addEventListener("click", () => state.token && loadSales());
  $("sign-out").addEventListener("click", async () => {
    // An open request is cancelled first, so nobody can pay it unseen; if that fails, or the
    // payment won the race and the sale is shown paid, the terminal stays signed in.
    if (state.request) {
      await cancel();
      if (state.request || !$("paid").hidden) return;
    }
    stopWatching();
    localStorage.removeItem(TOKEN_KEY);
    state.token = null;
    $("tabs").hidden = true;
    $("account-bar").hidden = true;
    $("token").value = "";
    show("login");
  });
  document.addEventListener("languagechange", () => state.unit && render());
}

wire();
start().catch((error) => say(problemText(error)));
