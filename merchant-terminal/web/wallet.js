// A beneficiary's phone wallet. The ed25519 key is made in this browser and never leaves it
// (WebCrypto, kept in IndexedDB); the account is activated with the one-time code from the
// office. It shows the balance and history, reads a shop's QR code (camera or pasted text),
// checks the shop's signature and the service's copy of the request, then signs the payment.

import {
  ApiError, api, cameraScanAvailable, ed25519Available, forgetKey, formatMinor, generateKey,
  keyProof, languagePicker, loadKey, outcomeUnknown, problemText, publicKeyText, saveKey, say,
  scanQr, show, sign, signedIntent, t, utf8, verify, base64url,
} from "./common.js";
import { PayloadError, decode, signedBytes } from "./emv.js";

const WALLET = "wallet";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const $ = (id) => document.getElementById(id);

const state = { wallet: null, session: null, account: null, unit: null, pending: null, scanning: null, link: null, busy: false };

async function start() {
  languagePicker($("language"));
  $("scan-camera").hidden = !cameraScanAvailable();
  let fragment = "";
  try {
    fragment = decodeURIComponent(location.hash.slice(1));
  } catch {
    // A link cut or mangled in transit (a stray '%'): open the wallet without it.
  }
  const activation = /^activate=([0-9a-f-]{36}):(.+)$/.exec(fragment);
  if (activation) {
    $("account-id").value = activation[1];
    $("code").value = activation[2];
  }
  const link = /^\/pay\/([0-9a-f-]{36})$/.exec(location.pathname);
  // Kept across activation, so a pay link opened first is still paid after it.
  if (link) state.link = { id: link[1], payload: activation ? "" : fragment };
  state.wallet = await loadKey(WALLET);
  if (!state.wallet || state.wallet.pending) {
    if (state.wallet?.pending) {
      $("account-id").value = state.wallet.account;
      $("code").value = state.wallet.code;
    }
    if (!(await ed25519Available())) say(t("error.no_crypto"));
    return show("activate");
  }
  await home();
  await openPendingLink();
}

async function openPendingLink() {
  const link = state.link;
  state.link = null;
  if (link) await openLink(link.id, link.payload);
}

/**
 * Registers a new key with the office's one-time code. The key and the exact request are
 * saved before sending, so if the answer is lost the retry repeats the same request under
 * the same Idempotency-Key (the service replays its answer) instead of spending the code on
 * a second key.
 */
async function activate(event) {
  event.preventDefault();
  if (state.busy) return;
  const account = $("account-id").value.trim().toLowerCase();
  const code = $("code").value.trim();
  if (!UUID.test(account)) return say(t("error.bad_account"));
  state.busy = true;
  try {
    let pending = state.wallet?.pending && state.wallet.account === account && state.wallet.code === code ? state.wallet : null;
    if (!pending) {
      const pair = await generateKey();
      pending = { account, code, pair, publicKey: await publicKeyText(pair), pending: true, idempotencyKey: crypto.randomUUID() };
      pending.body = { ...(await keyProof(pair, account)), activation_code: code };
      await saveKey(WALLET, pending);
    }
    state.wallet = pending;
    await api("PUT", `/v1/accounts/${account}/key`, { body: pending.body, idempotencyKey: pending.idempotencyKey });
    state.wallet = { account, pair: pending.pair, publicKey: pending.publicKey };
    await saveKey(WALLET, state.wallet);
    // Ask the browser not to clear this site's storage when the phone runs short of space:
    // the key cannot be recovered.
    await navigator.storage?.persist?.();
    history.replaceState(null, "", location.pathname);
    say("");
    await home();
    await openPendingLink();
  } catch (error) {
    if (!outcomeUnknown(error)) {
      // Refused: this key will never be registered with this code; start afresh next time.
      await forgetKey(WALLET);
      state.wallet = null;
    }
    say(problemText(error));
  } finally {
    state.busy = false;
  }
}

/** A session token for reading the account, from a signed challenge; renewed when old. */
async function session() {
  if (state.session && state.session.until > Date.now()) return state.session.token;
  const account = state.wallet.account;
  const { challenge } = await api("POST", "/v1/sessions/challenge", { body: { account_id: account } });
  const signature = await sign(state.wallet.pair, utf8(`coledger/v1/session\n${account}\n${challenge}`));
  const login = await api("POST", "/v1/sessions", { body: { account_id: account, challenge, signature: base64url(signature) } });
  // Renew a minute early rather than trust that this phone's clock agrees with the service's.
  state.session = { token: login.token, until: Date.now() + 14 * 60 * 1000 };
  return login.token;
}

async function home() {
  show("home");
  try {
    const token = await session();
    const id = state.wallet.account;
    state.account = await api("GET", `/v1/accounts/${id}`, { token });
    state.unit = await api("GET", `/v1/units/${state.account.unit}`, { token });
    $("balance").textContent = money(state.account.balance_minor);
    $("account-line").textContent = `${id} · ${state.unit.code}`;
    const page = await api("GET", `/v1/accounts/${id}/entries?limit=20`, { token });
    const list = $("history");
    list.replaceChildren();
    if (!page.items.length) {
      const empty = document.createElement("li");
      empty.textContent = t("wallet.no_entries");
      list.append(empty);
    }
    for (const item of page.items) {
      const line = document.createElement("li");
      const what = document.createElement("span");
      const when = new Date(item.created_at_ms).toLocaleString(document.documentElement.lang, { dateStyle: "short", timeStyle: "short" });
      what.textContent = `${when} · ${t(`kind.${item.kind}`)}${item.memo ? ` · ${item.memo}` : ""}`;
      const amount = document.createElement("bdi");
      amount.className = "money";
      amount.textContent = money(item.amount_minor);
      line.append(what, amount);
      list.append(line);
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) state.session = null;
    say(problemText(error));
  }
}

const money = (minor) => `${formatMinor(minor, state.unit?.scale ?? 0)} ${state.unit?.code ?? ""}`;

function stopScanning() {
  state.scanning?.stop();
  state.scanning = null;
}

/**
 * Reads a shop's code, then shows what paying it means. The service's copy of the request
 * decides what is paid (payee, amount); the code must agree with it, and its signature must
 * be the shop's: a code whose signature fails was altered or forged, and cannot be paid.
 * `expected`: the request id a pay link names, which the code must be for.
 */
async function check(text, expected = null) {
  stopScanning();
  if (!state.unit) return;
  let payload;
  try {
    payload = decode(text);
  } catch (error) {
    return say(error instanceof PayloadError ? t(error.key) : t("payload.malformed"));
  }
  if (payload.unit !== state.unit.code) return say(t("wallet.other_unit", { unit: payload.unit, mine: state.unit.code }));
  if (!payload.reference || (expected && payload.reference !== expected)) return say(t("wallet.mismatch"));
  try {
    const request = await api("GET", `/v1/payment-requests/${payload.reference}`);
    const agrees = request.account_id === payload.account && request.unit === payload.unit && request.amount === payload.amount;
    if (!agrees) return say(t("wallet.mismatch"));
    const signed = request.payee.public_key && (await verify(request.payee.public_key, payload.signature, signedBytes(payload.signedPart)));
    confirm(request, signed ? "ok" : "bad");
  } catch (error) {
    say(problemText(error));
  }
}

/** A pay link: with the QR payload after `#` it is checked like a scan; without, the
 * service's copy alone is shown, marked as such. */
async function openLink(id, payload) {
  if (payload) return check(payload, id);
  try {
    const request = await api("GET", `/v1/payment-requests/${id}`);
    if (request.unit !== state.unit.code) return say(t("wallet.other_unit", { unit: request.unit, mine: state.unit.code }));
    confirm(request, "link");
  } catch (error) {
    say(problemText(error));
  }
}

/** Shows the request as the service has it: the payee's registered name (never a name the
 * code itself carries, which the shop wrote) and the amount. */
function confirm(request, verdict) {
  if (request.status !== "open") return say(t("wallet.not_open", { status: t(`wallet.status.${request.status}`) }));
  state.pending = { request, signed: null };
  $("merchant").textContent = request.payee.name || request.account_id;
  $("confirm-amount").textContent = `${request.amount} ${request.unit}`;
  const line = $("verdict");
  line.textContent = t({ ok: "wallet.signature_ok", bad: "wallet.signature_bad", link: "wallet.from_link" }[verdict]);
  line.dataset.kind = verdict;
  $("confirm-pay").textContent = t("wallet.confirm", { amount: `${request.amount} ${request.unit}` });
  $("confirm-pay").disabled = verdict === "bad";
  say("");
  show("confirm");
}

/** Pays the shown request. The intent is signed once; a retry after a lost answer sends the
 * same one, which the service answers as a duplicate of the payment it made, never twice. */
async function pay() {
  const pending = state.pending;
  if (!pending || $("confirm-pay").disabled) return;
  const request = pending.request;
  $("confirm-pay").disabled = true;
  try {
    pending.signed ??= await signedIntent(state.wallet.pair, {
      type: "payment",
      from: state.wallet.account,
      to: request.account_id,
      unit: request.unit,
      amount_minor: request.amount_minor,
      request: request.id,
    });
    const committed = await api("POST", "/v1/intents", { body: pending.signed });
    state.pending = null;
    $("receipt-text").textContent = t("wallet.paid_to", { amount: `${request.amount} ${request.unit}`, name: $("merchant").textContent });
    $("receipt-when").textContent = new Date().toLocaleString(document.documentElement.lang);
    $("receipt-entry").textContent = committed.entry_id;
    history.replaceState(null, "", "/wallet");
    show("receipt");
  } catch (error) {
    $("confirm-pay").disabled = false;
    say(problemText(error));
  }
}

async function scanCamera() {
  if (state.scanning) return;
  const scanning = scanQr($("camera"));
  state.scanning = scanning;
  try {
    const text = await scanning.done;
    // Only a scan still wanted on the scan screen counts; a late one never replaces what
    // the confirm screen shows.
    if (text && state.scanning === scanning && !$("scan").hidden) await check(text);
  } catch (error) {
    say(t("error.generic", { detail: error.message }));
  } finally {
    if (state.scanning === scanning) state.scanning = null;
  }
}

function wire() {
  $("activate-form").addEventListener("submit", activate);
  $("pay").addEventListener("click", () => {
    $("paste").value = "";
    say("");
    show("scan");
  });
  $("scan-camera").addEventListener("click", scanCamera);
  $("paste-form").addEventListener("submit", (event) => {
    event.preventDefault();
    check($("paste").value);
  });
  $("confirm-pay").addEventListener("click", pay);
  $("refresh").addEventListener("click", home);
  for (const back of document.querySelectorAll("button.back")) {
    back.addEventListener("click", () => {
      stopScanning();
      state.pending = null;
      say("");
      home();
    });
  }
  $("forget").addEventListener("click", async () => {
    if (!window.confirm(t("wallet.forget_confirm"))) return;
    await forgetKey(WALLET);
    state.wallet = null;
    state.session = null;
    show("activate");
  });
  document.addEventListener("languagechange", () => state.wallet && !$("home").hidden && home());
}

wire();
start().catch((error) => say(problemText(error)));
