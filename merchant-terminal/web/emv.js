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

/** The data objects of `text` in order: [{id, value, start}], lengths in characters. */
function objects(text, where) {
  const found = [];
  const letters = [...text];
  let at = 0;
  while (at < letters.length) {
    const head = letters.slice(at, at + 4).join("");
    if (!/^\d{4}$/.test(head)) throw new PayloadError("payload.malformed", `${where}: bad header at character ${at}`);
    const id = head.slice(0, 2);
    const length = Number(head.slice(2));
    if (length < 1 || at + 4 + length > letters.length) throw new PayloadError("payload.malformed", `${where}: object ${id} has a bad length`);
    found.push({ id, value: letters.slice(at + 4, at + 4 + length).join(""), start: at });
    at += 4 + length;
  }
  return found;
}

/**
 * Checks that `list` holds exactly the ids `allowed` admits, in that order, each at most
 * once, and returns them by id. `allowed`: [id, required] pairs in the order they are written.
 */
function exactly(list, allowed, where) {
  const byId = new Map();
  let next = 0;
  for (const { id, value, start } of list) {
    while (next < allowed.length && allowed[next][0] !== id) {
      if (allowed[next][1]) throw new PayloadError("payload.malformed", `${where}: ${allowed[next][0]} missing or out of order`);
      next++;
    }
    if (next === allowed.length) throw new PayloadError("payload.malformed", `${where}: ${id} is not allowed here (unknown, repeated or out of order)`);
    byId.set(id, { value, start });
    next++;
  }
  for (const [id, required] of allowed.slice(next)) {
    if (required) throw new PayloadError("payload.malformed", `${where}: ${id} missing`);
  }
  return byId;
}

const PRINTABLE = /^[\x20-\x7e]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function field(map, id, pattern, where) {
  const entry = map.get(id);
  if (!entry) return null;
  if (!pattern.test(entry.value)) throw new PayloadError("payload.malformed", `${where}${id}: ${JSON.stringify(entry.value)} is not allowed`);
  return entry.value;
}

function readTemplate(map, id, allowed, where) {
  const entry = map.get(id);
  return entry ? exactly(objects(entry.value, `template ${id}`), allowed, `${where}${id}/`) : null;
}

/**
 * Reads a payload as strictly as the service's own decoder (docs/wire-format.md): data
 * objects only in the order written, none unknown or repeated, values in their character
 * sets, the CRC right. Returns its fields with the signed part and the signature, which the
 * caller checks against the merchant's key.
 */
export function decode(text) {
  text = text.trim();
  if (!text.startsWith("000201")) throw new PayloadError("payload.not_emv", "does not start with 000201");
  const crcAt = text.lastIndexOf("6304");
  if (crcAt < 0 || text.length - crcAt !== 8) throw new PayloadError("payload.malformed", "no CRC (6304) at the end");
  if (crc16(utf8(text.slice(0, crcAt + 4))) !== text.slice(crcAt + 4)) throw new PayloadError("payload.crc", "the CRC does not match");
  const top = exactly(
    objects(text, "payload"),
    [["00", true], ["01", true], ["26", true], ["52", true], ["53", true], ["54", false], ["58", true], ["59", true], ["60", true], ["62", false], ["64", false], ["80", true], ["81", true], ["63", true]],
    "",
  );
  const initiation = field(top, "01", /^1[12]$/, "");
  const amount = field(top, "54", /^(0|[1-9]\d*)(\.\d+)?$/, "");
  if ((initiation === "12") !== (amount !== null)) {
    throw new PayloadError(initiation === "11" ? "payload.static" : "payload.malformed", "a dynamic code needs an amount; a static one has none");
  }
  if (amount !== null && (amount.length > 13 || !/[1-9]/.test(amount))) throw new PayloadError("payload.malformed", "54: bad amount");
  const merchant = readTemplate(top, "26", [["00", true], ["01", true], ["02", true]], "");
  if (merchant.get("00").value !== GUID) throw new PayloadError("payload.not_ours", "26/00 is not org.coledger");
  const additional = readTemplate(top, "62", [["05", false], ["07", false]], "");
  if (additional && additional.size === 0) throw new PayloadError("payload.malformed", "62 is empty");
  const alternate = readTemplate(top, "64", [["00", true], ["01", true], ["02", false]], "");
  const halves = ["80", "81"].map((id) => {
    const half = readTemplate(top, id, [["00", true], ["01", true]], "");
    if (half.get("00").value !== GUID) throw new PayloadError("payload.unsigned", `${id}/00 is not org.coledger`);
    return field(half, "01", /^[A-Za-z0-9_-]{43}$/, `${id}/`);
  });
  const signature = fromBase64url(halves.join(""));
  if (signature.length !== 64) throw new PayloadError("payload.unsigned", "the signature is not 64 bytes");
  const noControls = /^[^\u0000-\u001f\u007f-\u009f]+$/;
  const reference = additional && field(additional, "05", /^[A-Za-z0-9_-]{22}$/, "62/");
  return {
    dynamic: initiation === "12",
    account: field(merchant, "01", UUID, "26/"),
    unit: field(merchant, "02", PRINTABLE, "26/"),
    category: field(top, "52", /^\d{4}$/, ""),
    currency: field(top, "53", /^\d{3}$/, ""),
    amount,
    country: field(top, "58", /^[A-Z]{2}$/, ""),
    name: field(top, "59", PRINTABLE, ""),
    city: field(top, "60", PRINTABLE, ""),
    reference: reference ? referenceUuid(reference) : null,
    terminal: additional ? field(additional, "07", PRINTABLE, "62/") : null,
    alternate: alternate
      ? {
          language: field(alternate, "00", /^[a-z]{2}$/, "64/"),
          name: field(alternate, "01", noControls, "64/"),
          city: field(alternate, "02", noControls, "64/"),
        }
      : null,
    signedPart: [...text].slice(0, top.get("80").start).join(""),
    signature,
  };
}
