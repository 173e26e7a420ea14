// What the terminal and wallet pages share: calling the API, the page language, ed25519
// keys kept in the browser (WebCrypto, stored in IndexedDB), RFC 8785 canonical JSON for
// signed intents, and money as exact integers of minor units.

import { MESSAGES, LANGUAGES } from "./i18n.js";

// ---- language -------------------------------------------------------------------------

const LANGUAGE_KEY = "coledger.language";
let language = "en";

/** The page's language: the one chosen before, else the browser's, else English. */
export function initialLanguage() {
  const chosen = localStorage.getItem(LANGUAGE_KEY);
  if (chosen && MESSAGES[chosen]) return chosen;
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked && MESSAGES[asked]) return asked;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const short = tag.slice(0, 2).toLowerCase();
    if (MESSAGES[short]) return short;
  }
  return "en";
}

/** A message in the page's language, with `{name}` placeholders filled from `values`. */
export function t(key, values = {}) {
  const text = MESSAGES[language][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** Sets the language: direction, `lang`, and every element marked `data-i18n`. */
export function setLanguage(next) {
  language = MESSAGES[next] ? next : "en";
  localStorage.setItem(LANGUAGE_KEY, language);
  document.documentElement.lang = language;
  document.documentElement.dir = LANGUAGES[language].dir;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-placeholder]")) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  document.dispatchEvent(new CustomEvent("languagechange"));
}

export function currentLanguage() {
  return language;
}

/** Fills the language picker and follows it. */
export function languagePicker(select) {
  for (const [code, { name }] of Object.entries(LANGUAGES)) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = name;
    select.append(option);
  }
  setLanguage(initialLanguage());
  select.value = language;
  select.addEventListener("change", () => setLanguage(select.value));
}

/** Shows one section of the page and hides the others of the same group. */
export function show(id) {
  for (const section of document.querySelectorAll("section[data-screen]")) {
    section.hidden = section.id !== id;
  }
}

/** A message for the user in the page's alert line (empty clears it). */
export function say(text, kind = "error") {
  const line = document.getElementById("message");
  line.textContent = text;
  line.dataset.kind = kind;
}

// ---- the API --------------------------------------------------------------------------

/** An error answer from the API: RFC 9457 problem details. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.type = problem.type || "";
  }
}

/** How far the service's clock is ahead of this device's, from the last `Date` header. A
 * phone's clock may be minutes off; intents expire by the service's. */
let clockOffsetMs = 0;

/** Now, by the service's clock as last seen (milliseconds). */
export const serviceNow = () => Date.now() + clockOffsetMs;

/**
 * Calls the API. Resolves with the JSON answer; rejects with an ApiError. `idempotencyKey`:
 * make one per user action and pass the same one again when retrying that action, so the
 * service does it once.
 */
export async function api(method, path, { body, token, idempotencyKey } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { type: "/problems/offline", detail: t("error.offline") });
  }
  const served = Date.parse(response.headers.get("Date") || "");
  if (Number.isFinite(served)) clockOffsetMs = served - Date.now();
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, json || {});
  return json;
}

/** The user-facing text for an API error: a translation for the problem types a person
 * can act on; the service's own (English) detail only for the others. */
export function problemText(error) {
  if (!(error instanceof ApiError)) return t("error.generic", { detail: String(error?.message || error) });
  if (error.type === "/problems/wrong-pin") {
    return t("error.wrong_pin", { n: error.problem.attempts_left ?? "?" });
  }
  const known = {
    "/problems/insufficient-funds": "error.funds",
    "/problems/card-locked": "error.card_locked",
    "/problems/spending-rule": "error.spending_rule",
    "/problems/payment-request-expired": "error.request_expired",
    "/problems/payment-request-cancelled": "error.request_cancelled",
    "/problems/request-already-paid": "error.already_paid",
    "/problems/unauthenticated": "error.token",
    "/problems/rate-limited": "error.rate_limited",
    "/problems/bad-activation-code": "error.activation",
    "/problems/intent-expired": "error.intent_expired",
    "/problems/refund-mismatch": "error.refund_mismatch",
    "/problems/offline": "error.offline",
  };
  const key = known[error.type];
  return key ? t(key) : t("error.generic", { detail: error.problem.detail || error.problem.title || error.status });
}

/** Whether an error leaves the outcome unknown (no answer), so the same request must be
 * sent again rather than a new one. */
export const outcomeUnknown = (error) => error instanceof ApiError && (error.status === 0 || error.status >= 500);

// ---- encodings ------------------------------------------------------------------------

export function base64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

export const utf8 = (text) => new TextEncoder().encode(text);

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * RFC 8785 canonical JSON, for the values intents hold: objects (members sorted by their
 * names' UTF-16 code units, which is what Array.prototype.sort compares), arrays, strings,
 * safe integers, booleans and null. JSON.stringify already writes strings and integers the
 * way RFC 8785 asks.
 */
export function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error(`not a safe integer: ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const names = Object.keys(value).filter((k) => value[k] !== undefined).sort();
  return `{${names.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
}

// ---- money ----------------------------------------------------------------------------

/** "12.50" for 1250 at scale 2; exact, whatever the size. */
export function formatMinor(minor, scale) {
  const negative = minor < 0;
  const digits = String(Math.abs(minor)).padStart(scale + 1, "0");
  const whole = scale ? digits.slice(0, -scale) : digits;
  const fraction = scale ? `.${digits.slice(-scale)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

/**
 * Arabic-Indic digits (٠-٩, as typed in Palestine and Jordan), their Persian forms (۰-۹) and
 * the Arabic decimal separator (٫) as ASCII, so an amount typed on an Arabic keyboard reads as
 * the same amount (and a card number or PIN as the same digits). The Arabic thousands
 * separator (٬) is left alone, so an amount written with it is refused rather than guessed at.
 */
export function asciiDigits(text) {
  return text.replace(/[\u0660-\u0669\u06F0-\u06F9\u066B]/g, (c) => {
    const code = c.charCodeAt(0);
    if (code === 0x066b) return ".";
    return String(code >= 0x06f0 ? code - 0x06f0 : code - 0x0660);
  });
}

/** 1250 for "12.50" (or "١٢٫٥٠") at scale 2, or null when the text is not such an amount. */
export function parseMinor(text, scale) {
  const match = /^\s*(\d{1,13})(?:[.,](\d+))?\s*$/.exec(asciiDigits(text));
  if (!match || (match[2] || "").length > scale) return null;
  const minor = Number(match[1] + (match[2] || "").padEnd(scale, "0"));
  return Number.isSafeInteger(minor) ? minor : null;
}

// ---- keys -----------------------------------------------------------------------------

/** Whether this browser can make and use ed25519 keys (WebCrypto needs https or localhost). */
export async function ed25519Available() {
  if (!globalThis.crypto?.subtle) return false;
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch {
    return false;
  }
}

/** A new key pair whose private half can never leave this browser. */
export function generateKey() {
  return crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
}

export async function publicKeyText(pair) {
  return base64url(await crypto.subtle.exportKey("raw", pair.publicKey));
}

export async function sign(pair, bytes) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, bytes));
}

/** Whether `signature` is `publicKey`'s over `bytes` (both base64url / bytes). */
export async function verify(publicKey, signature, bytes) {
  try {
    const key = await crypto.subtle.importKey("raw", fromBase64url(publicKey), { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, bytes);
  } catch {
    return false;
  }
}

/** The proof that registers a key for an account (docs/wire-format.md). */
export async function keyProof(pair, account) {
  const publicKey = await publicKeyText(pair);
  const proof = await sign(pair, utf8(`coledger/v1/key\n${account}\n${publicKey}`));
  return { public_key: publicKey, proof: base64url(proof) };
}

/**
 * A new intent id: a time-ordered (version 7) UUID, milliseconds then 74 random bits. The
 * ledger indexes intent ids; ids that arrive in time order land on the index's last page,
 * where random (version 4) ones would each dirty a page of their own, about halving what
 * SQLite can commit per second (BENCHMARKS.md, "What storage alone allows").
 */
export function intentId(nowMs = serviceNow()) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let ms = Math.max(0, Math.floor(nowMs));
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A signed intent ready for `POST /v1/intents`. */
export async function signedIntent(pair, action, validForSeconds = 300) {
  const intent = {
    intent_id: intentId(),
    not_after: Math.floor(serviceNow() / 1000) + validForSeconds,
    signer: await publicKeyText(pair),
    action,
  };
  const signature = await sign(pair, utf8(`coledger/v1\n${canonical(intent)}`));
  return { intent, signature: base64url(signature) };
}

// IndexedDB, because a non-extractable CryptoKey can be stored there (not in localStorage).
function keyStore(mode, run) {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open("coledger", 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore("keys");
    opening.onerror = () => reject(opening.error);
    opening.onsuccess = () => {
      const transaction = opening.result.transaction("keys", mode);
      const request = run(transaction.objectStore("keys"));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
    };
  });
}

export const loadKey = (name) => keyStore("readonly", (store) => store.get(name));
export const saveKey = (name, record) => keyStore("readwrite", (store) => store.put(record, name));
export const forgetKey = (name) => keyStore("readwrite", (store) => store.delete(name));

// ---- the camera -----------------------------------------------------------------------

/** Whether QR codes can be read from the camera here (the BarcodeDetector API). */
export function cameraScanAvailable() {
  return "BarcodeDetector" in globalThis && !!navigator.mediaDevices?.getUserMedia;
}

/**
 * Reads one QR code from the camera into `video`; resolves with its text. `stop()` on the
 * returned object ends it early (resolving with null).
 */
export function scanQr(video) {
  let stopped = false;
  let stream = null;
  const done = (async () => {
    const detector = new BarcodeDetector({ formats: ["qr_code"] });
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    try {
      while (!stopped) {
        const codes = await detector.detect(video);
        if (codes.length) return codes[0].rawValue;
        await new Promise((r) => setTimeout(r, 200));
      }
      return null;
    } finally {
      for (const track of stream.getTracks()) track.stop();
      video.hidden = true;
    }
  })();
  return { done, stop: () => (stopped = true) };
}
