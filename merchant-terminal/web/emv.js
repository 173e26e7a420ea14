// EMVCo merchant-presented QR payloads as docs/wire-format.md describes them: the terminal
// page writes them, the wallet page reads them. Lengths count Unicode scalar values; the CRC
// is CRC-16/CCITT-FALSE over the UTF-8 bytes up to and including "6304".

import { base64url, fromBase64url, utf8 } from "./common.js";

export const GUID = "org.coledger";
export const SIGNED_PREFIX = "coledger/v1/payment-request\n";
const HALF = 43;

const chars = (text) => [...text].length;

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) as 4 upper-case hex digits. */
export function crc16(bytes) {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc.toString(16).toUpperCase().padStart(4, "0");
}

function object(id, value) {
  const length = chars(value);
  if (length < 1 || length > 99) throw new Error(`data object ${id}: ${length} characters (1-99 allowed)`);
  return id + String(length).padStart(2, "0") + value;
}

const template = (id, members) => object(id, members.map(([sub, value]) => object(sub, value)).join(""));

/** The 16 bytes of a hyphenated UUID as unpadded base64url (22 characters). */
export function referenceLabel(uuid) {
  const hex = uuid.replace(/-/g, "");
  return base64url(Uint8Array.from(hex.match(/../g), (pair) => parseInt(pair, 16)));
}

/** The hyphenated UUID a reference label holds. */
export function referenceUuid(label) {
  const bytes = fromBase64url(label);
  if (bytes.length !== 16) throw new Error("reference: not 16 bytes");
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The signed part of a payload: every data object before the signature templates.
 * `p`: { amount (decimal text, or null for a static sticker), account, unit, category,
 * currency (numeric), country, name, city, reference (request id), terminal, alternate
 * ({language, name, city}) }.
 */
export function signedPart(p) {
  const parts = [object("00", "01"), object("01", p.amount ? "12" : "11")];
  parts.push(template("26", [["00", GUID], ["01", p.account], ["02", p.unit]]));
  parts.push(object("52", p.category), object("53", String(p.currency).padStart(3, "0")));
  if (p.amount) parts.push(object("54", p.amount));
  parts.push(object("58", p.country), object("59", p.name), object("60", p.city));
  const additional = [];
  if (p.reference) additional.push(["05", referenceLabel(p.reference)]);
  if (p.terminal) additional.push(["07", p.terminal]);
  if (additional.length) parts.push(template("62", additional));
  if (p.alternate) {
    const members = [["00", p.alternate.language], ["01", p.alternate.name]];
    if (p.alternate.city) members.push(["02", p.alternate.city]);
    parts.push(template("64", members));
  }
  return parts.join("");
}

/** The bytes the merchant signs. */
export const signedBytes = (part) => utf8(SIGNED_PREFIX + part);

/** The whole payload: the signed part, the signature in `80` and `81`, and the CRC. */
export function finish(part, signature) {
  const text = base64url(signature);
  const body =
    part + template("80", [["00", GUID], ["01", text.slice(0, HALF)]]) + template("81", [["00", GUID], ["01", text.slice(HALF)]]) + "6304";
  return body + crc16(utf8(body));
}

/** A payload that cannot be trusted, with the reason (an i18n key and detail). */
export class PayloadError extends Error {
  constructor(key, detail) {
    super(detail);
    this.key = key;
  }
}

function objects(text, where) {
  const found = new Map();
  const order = [];
  const letters = [...text];
  let at = 0;
  while (at < letters.length) {
    const head = letters.slice(at, at + 4).join("");
    if (!/^\d{4}$/.test(head)) throw new PayloadError("payload.malformed", `${where}: bad header at character ${at}`);
    const id = head.slice(0, 2);
    const length = Number(head.slice(2));
    if (length < 1 || at + 4 + length > letters.length) throw new PayloadError("payload.malformed", `${where}: object ${id} has a bad length`);
    if (found.has(id)) throw new PayloadError("payload.malformed", `${where}: object ${id} twice`);
    found.set(id, { value: letters.slice(at + 4, at + 4 + length).join(""), start: at });
    order.push(id);
    at += 4 + length;
  }
  return { found, order };
}

function templateOf(value, id) {
  const { found } = objects(value, `template ${id}`);
  const member = (sub) => found.get(sub)?.value;
  return { found, member };
}

/**
 * Reads a payload: checks framing and the CRC and returns its fields with the signed part and
 * the signature (checked against the merchant's key by the caller, who must look it up).
 */
export function decode(text) {
  text = text.trim();
  if (!text.startsWith("000201")) throw new PayloadError("payload.not_emv", "does not start with 000201");
  const crcAt = text.lastIndexOf("6304");
  if (crcAt < 0 || text.length - crcAt !== 8) throw new PayloadError("payload.malformed", "no CRC (6304) at the end");
  if (crc16(utf8(text.slice(0, crcAt + 4))) !== text.slice(crcAt + 4)) throw new PayloadError("payload.crc", "the CRC does not match");
  const { found, order } = objects(text, "payload");
  if (order[order.length - 1] !== "63") throw new PayloadError("payload.malformed", "63 is not last");
  const value = (id) => found.get(id)?.value;
  const merchant = found.has("26") ? templateOf(value("26"), "26") : null;
  if (!merchant || merchant.member("00") !== GUID) throw new PayloadError("payload.not_ours", "no coledger merchant account (26)");
  const signatureHalves = ["80", "81"].map((id) => {
    if (!found.has(id)) throw new PayloadError("payload.unsigned", `no signature template ${id}`);
    const half = templateOf(value(id), id);
    if (half.member("00") !== GUID) throw new PayloadError("payload.unsigned", `template ${id} is not ours`);
    return half.member("01") || "";
  });
  if (order.indexOf("81") !== order.indexOf("80") + 1 || order.indexOf("63") !== order.indexOf("81") + 1) {
    throw new PayloadError("payload.malformed", "the signature must come just before the CRC");
  }
  let signature;
  try {
    signature = fromBase64url(signatureHalves.join(""));
  } catch {
    signature = new Uint8Array();
  }
  if (signature.length !== 64) throw new PayloadError("payload.unsigned", "the signature is not 64 bytes");
  const letters = [...text];
  const part = letters.slice(0, found.get("80").start).join("");
  const additional = found.has("62") ? templateOf(value("62"), "62") : null;
  const alternate = found.has("64") ? templateOf(value("64"), "64") : null;
  const reference = additional?.member("05");
  return {
    dynamic: value("01") === "12",
    account: merchant.member("01"),
    unit: merchant.member("02"),
    category: value("52"),
    currency: value("53"),
    amount: value("54") ?? null,
    country: value("58"),
    name: value("59"),
    city: value("60"),
    reference: reference ? referenceUuid(reference) : null,
    terminal: additional?.member("07") ?? null,
    alternate: alternate ? { language: alternate.member("00"), name: alternate.member("01"), city: alternate.member("02") ?? null } : null,
    signedPart: part,
    signature,
  };
}
