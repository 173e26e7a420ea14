// A beneficiary's phone wallet. The ed25519 key is made in this browser and never leaves it
// (WebCrypto, kept in IndexedDB); the account is activated with the one-time code from the
// office. It shows the balance and history, reads a shop's QR code (camera or pasted text),
// checks the shop's signature and the service's copy of the request, then signs the payment.

import {
  ApiError, api, cameraScanAvailable, ed25519Available, forgetKey, formatMinor, generateKey,
  keyProof, languagePicker, loadKey, problemText, publicKeyText, saveKey, say, scanQr,
  show, sign, signedIntent, t, utf8, verify, base64url,
} from "./common.js";
import { PayloadError, decode, signedBytes } from "./emv.js";

const WALLET = "wallet";
const $ = (id) => document.getElementById(id);

const state = { wallet: null, session: null, account: null, unit: null, pending: null, scanning: null };

async function start() {
  languagePicker($("language"));
  $("scan-camera").hidden = !cameraScanAvailable();
  const fragment = decodeURIComponent(location.hash.slice(1));
  const activation = /^activate=([0-9a-f-]{36}):(.+)$/.exec(fragment);
  if (activation) {
    $("account-id").value = activation[1];
    $("code").value = activation[2];
  }
  state.wallet = await loadKey(WALLET);
  if (!state.wallet) {
    if (!(await ed25519Available())) say(t("error.no_crypto"));
    return show("activate");
  }
  await home();
  const link = /^\/pay\/([0-9a-f-]{36})$/.exec(location.pathname);
  if (link) await openLink(link[1], activation ? "" : fragment);
}

async function activate(event) {
  event.preventDefault();
  const account = $("account-id").value.trim().toLowerCase();
  try {
    const pair = await generateKey();
    await api("PUT", `/v1/accounts/${account}/key`, {
      body: { ...(await keyProof(pair, account)), activation_code: $("code").value.trim() },
    });
    state.wallet = { account, pair, publicKey: await publicKeyText(pair) };
    await saveKey(WALLET, state.wallet);
    history.replaceState(null, "", location.pathname);
    say("");
    await home();
  } catch (error) {
    say(problemText(error));
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

/** Reads a shop's code, then shows what paying it means. */
async function check(text) {
  let payload;
  try {
    payload = decode(text);
  } catch (error) {
    return say(error instanceof PayloadError ? t(error.key) : t("payload.malformed"));
  }
  if (payload.unit !== state.unit.code) return say(t("wallet.other_unit", { unit: payload.unit, mine: state.unit.code }));
  if (!payload.reference) return say(t("payload.malformed"));
  try {
    const request = await api("GET", `/v1/payment-requests/${payload.reference}`);
    const agrees = request.account_id === payload.account && request.unit === payload.unit && request.amount === payload.amount;
    if (!agrees) return say(t("wallet.mismatch"));
    const signed = request.payee.public_key && (await verify(request.payee.public_key, payload.signature, signedBytes(payload.signedPart)));
    confirm(request, payload, signed ? "ok" : "bad");
  } catch (error) {
    say(problemText(error));
  }
}

/** A pay link: with the QR payload after `#` it is checked like a scan; without, the
 * service's copy alone is shown, marked as such. */
async function openLink(id, payload) {
  if (payload) return check(payload);
  try {
    const request = await api("GET", `/v1/payment-requests/${id}`);
    if (request.unit !== state.unit.code) return say(t("wallet.other_unit", { unit: request.unit, mine: state.unit.code }));
    confirm(request, null, "link");
  } catch (error) {
    say(problemText(error));
  }
}

function confirm(request, payload, verdict) {
  if (request.status !== "open") return say(t("wallet.not_open", { status: request.status }));
  state.pending = request;
  $("merchant").textContent = request.payee.name || payload?.name || request.account_id;
  $("merchant-local").textContent = payload?.alternate && payload.alternate.name !== request.payee.name ? payload.alternate.name : "";
  $("merchant-local").lang = payload?.alternate?.language || "";
  $("confirm-amount").textContent = `${request.amount} ${request.unit}`;
  const line = $("verdict");
  line.textContent = t({ ok: "wallet.signature_ok", bad: "wallet.signature_bad", link: "wallet.from_link" }[verdict]);
  line.dataset.kind = verdict;
  $("confirm-pay").textContent = t("wallet.confirm", { amount: `${request.amount} ${request.unit}` });
  $("confirm-pay").disabled = verdict === "bad";
  say("");
  show("confirm");
}

async function pay() {
  const request = state.pending;
  if (!request) return;
  $("confirm-pay").disabled = true;
  try {
    const intent = await signedIntent(state.wallet.pair, {
      type: "payment",
      from: state.wallet.account,
      to: request.account_id,
      unit: request.unit,
      amount_minor: request.amount_minor,
      request: request.id,
    });
    const committed = await api("POST", "/v1/intents", { body: intent });
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
  state.scanning = scanQr($("camera"));
  try {
    const text = await state.scanning.done;
    if (text) await check(text);
  } catch (error) {
    say(t("error.generic", { detail: error.message }));
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
      state.scanning?.stop();
      state.pending = null;
      say("");
      home();
    });
  }
  $("forget").addEventListener("click", async () => {
    await forgetKey(WALLET);
    state.wallet = null;
    state.session = null;
    show("activate");
  });
  document.addEventListener("languagechange", () => state.wallet && !$("home").hidden && home());
}

wire();
start().catch((error) => say(problemText(error)));
