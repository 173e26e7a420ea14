// Unit tests of the pages' JavaScript, run by Node (tests/web_js.rs): the same modules the
// browser loads, checked against the Rust side's published vectors.
//   node tests/js/web.test.mjs REPO_ROOT
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

const root = process.argv[2] || process.cwd();
const web = `${root}/merchant-terminal/web`;
const { asciiDigits, canonical, formatMinor, parseMinor, base64url, fromBase64url, utf8, intentId } = await import(`${web}/common.js`);
const emv = await import(`${web}/emv.js`);

/** An Ed25519 key from a 32-byte seed (PKCS #8 wrapping), as WebCrypto imports it. */
async function keyFromSeed(seed) {
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed]);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
}
const sign = async (key, bytes) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, bytes));
const hex = (text) => Uint8Array.from(text.match(/../g), (pair) => parseInt(pair, 16));

const vectors = JSON.parse(readFileSync(`${root}/ledger/tests/vectors/intents.json`, "utf8")).vectors;

test("canonical JSON and signatures match every published intent vector", async () => {
  for (const vector of vectors) {
    assert.equal(canonical(vector.intent), vector.canonical, vector.name);
    if (vector.expect !== "ok") continue;
    const key = await keyFromSeed(hex(vector.secret_seed_hex));
    const signature = await sign(key, utf8(`coledger/v1\n${canonical(vector.intent)}`));
    assert.equal(base64url(signature), vector.signature, vector.name);
  }
});

test("canonical JSON refuses what intents may not hold", () => {
  assert.throws(() => canonical({ amount_minor: 12.5 }));
  assert.throws(() => canonical({ amount_minor: 2 ** 53 }));
  assert.equal(canonical({ b: 1, a: [true, null, "é\u2028"], undefinedIsLeftOut: undefined }), '{"a":[true,null,"é\u2028"],"b":1}');
});

test("intent ids are version 7 UUIDs that sort in time order", () => {
  const at = Date.UTC(2026, 10, 23, 12, 0, 0, 5);
  const id = intentId(at);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // The first 48 bits are the milliseconds, big-endian.
  assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at);
  const ids = [at - 1, at, at + 1, at + 1000].map((ms) => intentId(ms));
  assert.deepEqual([...ids].sort(), ids);
  assert.notEqual(intentId(at), intentId(at), "the random part differs within a millisecond");
});

test("money at scales 0, 2 and 3 is exact", () => {
  assert.equal(formatMinor(0, 2), "0.00");
  assert.equal(formatMinor(5, 2), "0.05");
  assert.equal(formatMinor(-250, 2), "-2.50");
  assert.equal(formatMinor(7, 0), "7");
  assert.equal(formatMinor(12500, 3), "12.500");
  assert.equal(formatMinor(9007199254740991, 2), "90071992547409.91");
  assert.equal(parseMinor("12.5", 2), 1250);
  assert.equal(parseMinor("12,50", 2), 1250);
  assert.equal(parseMinor("7", 0), 7);
  assert.equal(parseMinor("7.0", 0), null);
  assert.equal(parseMinor("1.234", 3), 1234);
  assert.equal(parseMinor("1.2345", 3), null);
  assert.equal(parseMinor("-1", 2), null);
  assert.equal(parseMinor("abc", 2), null);
  // Typed on an Arabic keyboard: Arabic-Indic digits, their Persian forms, the Arabic
  // decimal separator; an amount with its thousands separator is refused, not guessed at.
  assert.equal(parseMinor("١٢٫٥٠٠", 3), 12500);
  assert.equal(parseMinor("١٢.٥", 2), 1250);
  assert.equal(parseMinor("۷۵", 0), 75);
  assert.equal(parseMinor("١٬٥٠٠", 3), null);
  assert.equal(parseMinor("١٢٫٥٠٠٠", 3), null);
  // A card number or PIN typed in Arabic digits reaches the service as the same digits.
  assert.equal(asciiDigits("٩٩٠٠٠١ ۲۵۸۰"), "990001 2580");
  assert.equal(asciiDigits("coledger:card:12"), "coledger:card:12");
});

// merchant-terminal/src/emv/tests.rs `fixture_encodes_to_the_published_vector`.
const RUST_VECTOR =
  "00020101021226680012org.coledger0136018f3a2b-7c4d-7e5f-8a6b-9c0d1e2f3a4b" +
  "0208SFAX-TND520454115303788540512.505802TN5918Epicerie Ben Salah6004Sfax" +
  "62380522AY86K3xNfl-KawAAAAAAQg0708caisse-164320002ar0113بقالة بن صالح" +
  "0205صفاقس80630012org.coledger0143yLUmKsAVCbBBVViZmbqpVJgRnNLuimBvtmMAgfX2QtS" +
  "81630012org.coledger0143zcCw8e9opCHeaDSZzn1LSvdc19DbXkh9QLHvlgFNjCA6304D395";
const RUST_FIELDS = {
  amount: "12.50",
  account: "018f3a2b-7c4d-7e5f-8a6b-9c0d1e2f3a4b",
  unit: "SFAX-TND",
  category: "5411",
  currency: 788,
  country: "TN",
  name: "Epicerie Ben Salah",
  city: "Sfax",
  reference: "018f3a2b-7c4d-7e5f-8a6b-000000000042",
  terminal: "caisse-1",
  alternate: { language: "ar", name: "بقالة بن صالح", city: "صفاقس" },
};

test("the page writes the Rust encoder's published vector byte for byte", async () => {
  const key = await keyFromSeed(new Uint8Array(32).fill(1));
  const part = emv.signedPart(RUST_FIELDS);
  assert.equal(emv.finish(part, await sign(key, emv.signedBytes(part))), RUST_VECTOR);
});

test("the page reads the Rust encoder's vector and its signature verifies", async () => {
  const decoded = emv.decode(RUST_VECTOR);
  assert.equal(decoded.account, RUST_FIELDS.account);
  assert.equal(decoded.amount, "12.50");
  assert.equal(decoded.reference, RUST_FIELDS.reference);
  assert.deepEqual(decoded.alternate, RUST_FIELDS.alternate);
  const publicKey = await crypto.subtle.importKey("raw", fromBase64url("iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w"), { name: "Ed25519" }, false, ["verify"]);
  assert.ok(await crypto.subtle.verify({ name: "Ed25519" }, publicKey, decoded.signature, emv.signedBytes(decoded.signedPart)));
});

/** The vector with its data objects changed, and the CRC recomputed so only the change is judged. */
function altered(change) {
  const body = RUST_VECTOR.slice(0, -8);
  const objects = [];
  const letters = [...body];
  for (let at = 0; at < letters.length; ) {
    const length = Number(letters.slice(at + 2, at + 4).join(""));
    objects.push([letters.slice(at, at + 2).join(""), letters.slice(at + 4, at + 4 + length).join("")]);
    at += 4 + length;
  }
  change(objects);
  const text = objects.map(([id, value]) => id + String([...value].length).padStart(2, "0") + value).join("") + "6304";
  return text + emv.crc16(utf8(text));
}

test("the page refuses what the service's decoder refuses", () => {
  const refused = {
    "bad CRC": RUST_VECTOR.slice(0, -1) + "0",
    "unknown data object": altered((o) => o.splice(10, 0, ["55", "01"])),
    "duplicate": altered((o) => o.splice(4, 0, ["52", "5411"])),
    "out of order": altered((o) => { [o[3], o[4]] = [o[4], o[3]]; }),
    "static with an amount": altered((o) => { o[1][1] = "11"; }),
    "dynamic without an amount": altered((o) => o.splice(o.findIndex(([id]) => id === "54"), 1)),
    "amount with a leading zero": altered((o) => { o.find(([id]) => id === "54")[1] = "012.50"; }),
    "zero amount": altered((o) => { o.find(([id]) => id === "54")[1] = "0.00"; }),
    "accent in 59": altered((o) => { o.find(([id]) => id === "59")[1] = "Épicerie"; }),
    "upper-case account id": altered((o) => { o[2][1] = o[2][1].toUpperCase().replace("ORG.COLEDGER", "org.coledger"); }),
    "another network's template": altered((o) => { o[2][1] = o[2][1].replace("org.coledger", "com.example."); }),
    "short signature half": altered((o) => { o[o.length - 1][1] = o[o.length - 1][1].slice(0, -1); }),
    "unsigned data after the signature": altered((o) => o.push(["62", "0703abc"])),
  };
  for (const [name, text] of Object.entries(refused)) {
    assert.throws(() => emv.decode(text), emv.PayloadError, name);
  }
});
