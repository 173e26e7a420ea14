#!/usr/bin/env python3
"""Reads coledger payment-request QR codes with tools we did not write.

Written from the spec in docs/wire-format.md ("Payment-request QR codes"), not from the Rust
code: each PNG is decoded by zxing-cpp (through Pillow), its bytes are read as UTF-8, and the
text is parsed as an EMV merchant-presented payload by the parser below, which checks the
order and character sets of the data objects, the CRC-16/CCITT-FALSE and the merchant's
Ed25519 signature (PyNaCl) against the public key given on the command line.

    python3 emv_interop.py PUBLIC_KEY_BASE64URL QR.png [QR.png ...]

Prints a JSON list, one report per file, with the decoded text and the parsed fields.
Exit status: 0 when every file passed every check; 1 when a file failed one (each failure is
named on stderr, and in the report's "errors"); 2 when the arguments are wrong or an image
holds no readable QR code.
"""

import base64
import json
import sys
import unicodedata
import uuid

import nacl.exceptions
import nacl.signing
import zxingcpp
from PIL import Image

GUID = "org.coledger"
SIGNED_PREFIX = b"coledger/v1/payment-request\n"

# Top-level data objects in the only order the spec allows; templates hold sub-objects.
ORDER = ["00", "01", "26", "52", "53", "54", "58", "59", "60", "62", "64", "80", "81", "63"]
TEMPLATES = {
    "26": ["00", "01", "02"],
    "62": ["05", "07"],
    "64": ["00", "01", "02"],
    "80": ["00", "01"],
    "81": ["00", "01"],
}
REQUIRED = ["00", "01", "26", "52", "53", "58", "59", "60", "80", "81", "63"]
# The only values that may leave printable ASCII: the name and city in the merchant's script.
UNICODE_ALLOWED = {("64", "01"), ("64", "02")}
MAX_NAME = 25
MAX_CITY = 15
HALF_SIGNATURE = 43


class Bad(Exception):
    """A payload the spec does not allow; the message says which rule it breaks."""


def give_up(message: str):
    """Wrong arguments or an unreadable image: no payload to judge, exit status 2."""
    print(message, file=sys.stderr)
    sys.exit(2)


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def tlv(text: str, where: str):
    """Splits text into (id, value, start) triples; lengths count Unicode characters, which
    is what indexing a Python str counts."""
    objects = []
    at = 0
    while at < len(text):
        head = text[at : at + 4]
        if len(head) < 4 or not head.isascii() or not head.isdigit():
            raise Bad(f"{where}: no ID and length at character {at}: {head!r}")
        ident, length = head[:2], int(head[2:])
        if length == 0:
            raise Bad(f"{where}: data object {ident} has length 00")
        value = text[at + 4 : at + 4 + length]
        if len(value) != length:
            raise Bad(f"{where}: data object {ident} says {length} characters, {len(value)} remain")
        objects.append((ident, value, at))
        at += 4 + length
    return objects


def printable_ascii(value: str) -> bool:
    return all(0x20 <= ord(c) <= 0x7E for c in value)


def check_charset(outer: str, inner, value: str):
    if (outer, inner) in UNICODE_ALLOWED:
        if any(unicodedata.category(c) == "Cc" for c in value):
            raise Bad(f"{outer}/{inner} holds a control character")
    elif not printable_ascii(value):
        where = outer if inner is None else f"{outer}/{inner}"
        raise Bad(f"{where} holds characters outside printable ASCII: {value!r}")


def sub_objects(ident: str, value: str) -> dict:
    allowed = TEMPLATES[ident]
    subs = {}
    last = -1
    for sub, sub_value, _ in tlv(value, f"template {ident}"):
        if sub not in allowed:
            raise Bad(f"template {ident} holds sub-ID {sub}, which the spec does not define")
        if sub in subs:
            raise Bad(f"template {ident} holds sub-ID {sub} twice")
        if allowed.index(sub) < last:
            raise Bad(f"template {ident}: sub-ID {sub} is out of order")
        last = allowed.index(sub)
        check_charset(ident, sub, sub_value)
        subs[sub] = sub_value
    return subs


def walk(text: str):
    """The top-level objects as {id: value}, templates as {id: {sub: value}}, and where the
    `80` object starts (the end of the signed text)."""
    objects = tlv(text, "payload")
    if not objects:
        raise Bad("the payload is empty")
    seen = {}
    starts = {}
    position = -1
    for ident, value, start in objects:
        if ident not in ORDER:
            raise Bad(f"data object {ident} is not one the spec defines")
        if ident in seen:
            raise Bad(f"data object {ident} appears twice")
        if ORDER.index(ident) < position:
            raise Bad(f"data object {ident} is out of order")
        position = ORDER.index(ident)
        if ident in TEMPLATES:
            seen[ident] = sub_objects(ident, value)
        else:
            check_charset(ident, None, value)
            seen[ident] = value
        starts[ident] = start
    if objects[0][0] != "00" or seen["00"] != "01":
        raise Bad("the payload does not open with 000201")
    if objects[-1][0] != "63":
        raise Bad("the CRC (63) is not the last data object")
    missing = [i for i in REQUIRED if i not in seen]
    if missing:
        raise Bad(f"required data objects missing: {', '.join(missing)}")
    if [o[0] for o in objects[-3:]] != ["80", "81", "63"]:
        raise Bad("80 and 81 are not the last data objects before the CRC")
    return seen, starts["80"]


def check_crc(text: str) -> dict:
    """The CRC report; the payload must end in 6304 and four upper-case hex digits."""
    if len(text) < 8 or text[-8:-4] != "6304":
        return {"stated": None, "computed": None, "ok": False}
    computed = f"{crc16_ccitt_false(text[:-4].encode('utf-8')):04X}"
    stated = text[-4:]
    return {"stated": stated, "computed": computed, "ok": stated == computed}


def b64url_decode(text: str) -> bytes:
    if "=" in text or not all(c.isalnum() or c in "-_" for c in text):
        raise Bad(f"not unpadded base64url: {text!r}")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_fields(objects: dict) -> dict:
    """The fields, each checked against the spec's rules, flattened for comparison."""
    if objects["01"] not in ("11", "12"):
        raise Bad(f"point of initiation {objects['01']!r} is neither 11 nor 12")
    dynamic = objects["01"] == "12"
    if dynamic != ("54" in objects):
        raise Bad("an amount (54) belongs in dynamic requests (12) and only there")
    account = objects["26"]
    if account.get("00") != GUID:
        raise Bad(f"26/00 is {account.get('00')!r}, not {GUID}")
    merchant = account.get("01", "")
    if len(merchant) != 36 or str(uuid.UUID(merchant)) != merchant:
        raise Bad(f"26/01 is not a lower-case hyphenated UUID: {merchant!r}")
    if "02" not in account:
        raise Bad("26/02 (the unit) is missing")
    for ident, length in (("52", 4), ("53", 3)):
        if len(objects[ident]) != length or not objects[ident].isdigit():
            raise Bad(f"{ident} is not {length} digits: {objects[ident]!r}")
    amount = objects.get("54")
    if amount is not None:
        whole, _, decimals = amount.partition(".")
        if not whole.isdigit() or (("." in amount) and not decimals.isdigit()):
            raise Bad(f"amount {amount!r} is not digits with an optional decimal part")
    country = objects["58"]
    if len(country) != 2 or not (country.isascii() and country.isupper()):
        raise Bad(f"country {country!r} is not two upper-case letters")
    if len(objects["59"]) > MAX_NAME or len(objects["60"]) > MAX_CITY:
        raise Bad("the name (59) or the city (60) is too long")
    extra = objects.get("62", {})
    reference = None
    if "05" in extra:
        raw = b64url_decode(extra["05"])
        if len(raw) != 16 or len(extra["05"]) != 22:
            raise Bad(f"62/05 is not 16 bytes as 22 base64url characters: {extra['05']!r}")
        reference = str(uuid.UUID(bytes=raw))
    alternate = None
    if "64" in objects:
        alt = objects["64"]
        if "00" not in alt or "01" not in alt:
            raise Bad("64 needs a language (00) and a name (01)")
        if len(alt["00"]) != 2 or not (alt["00"].isascii() and alt["00"].isalpha()):
            raise Bad(f"64/00 is not an ISO 639-1 code: {alt['00']!r}")
        if len(alt["01"]) > MAX_NAME or len(alt.get("02", "")) > MAX_CITY:
            raise Bad("the alternate name (64/01) or city (64/02) is too long")
        alternate = {"language": alt["00"], "name": alt["01"], "city": alt.get("02")}
    return {
        "initiation": "dynamic" if dynamic else "static",
        "merchant_account": merchant,
        "unit": account["02"],
        "category": objects["52"],
        "currency": objects["53"],
        "amount": amount,
        "country": country,
        "name": objects["59"],
        "city": objects["60"],
        "reference_label": extra.get("05"),
        "reference": reference,
        "terminal": extra.get("07"),
        "alternate": alternate,
    }


def verify_signature(text: str, objects: dict, signed_end: int, public_key: bytes) -> bool:
    halves = []
    for ident in ("80", "81"):
        template = objects[ident]
        if template.get("00") != GUID:
            raise Bad(f"{ident}/00 is {template.get('00')!r}, not {GUID}")
        if len(template.get("01", "")) != HALF_SIGNATURE:
            raise Bad(f"{ident}/01 does not hold {HALF_SIGNATURE} characters")
        halves.append(template["01"])
    signature = b64url_decode("".join(halves))
    if len(signature) != 64:
        raise Bad(f"the signature has {len(signature)} bytes, not 64")
    message = SIGNED_PREFIX + text[:signed_end].encode("utf-8")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def read_qr(path: str):
    """(UTF-8 text, error correction level) of the one QR code in the image."""
    try:
        image = Image.open(path).convert("L")
    except OSError as error:
        give_up(f"{path}: not an image Pillow reads: {error}")
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    if len(found) != 1:
        give_up(f"{path}: expected one QR code, zxing-cpp found {len(found)}")
    # The raw bytes, not zxing's guess at a character set: the spec says the code carries UTF-8.
    try:
        text = found[0].bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        give_up(f"{path}: the QR code's bytes are not UTF-8: {error}")
    return text, found[0].ec_level


def report(path: str, public_key: bytes) -> dict:
    text, ec_level = read_qr(path)
    result = {"file": path, "text": text, "ec_level": ec_level, "errors": []}
    result["crc"] = check_crc(text)
    if not result["crc"]["ok"]:
        result["errors"].append(
            f"CRC mismatch: the payload states {result['crc']['stated']}, "
            f"CRC-16/CCITT-FALSE of its bytes is {result['crc']['computed']}"
        )
    # A payload with a bad CRC is still parsed, so the report says everything that is wrong.
    try:
        objects, signed_end = walk(text)
        result["templates"] = {i: v for i, v in objects.items() if isinstance(v, dict)}
        result["fields"] = check_fields(objects)
        result["signature_verified"] = verify_signature(text, objects, signed_end, public_key)
        if not result["signature_verified"]:
            result["errors"].append("signature mismatch: Ed25519 verification failed")
    except (Bad, ValueError) as error:
        result["errors"].append(f"malformed payload: {error}")
    return result


def main(argv) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        public_key = b64url_decode(argv[1])
    except (Bad, ValueError) as error:
        give_up(f"the public key is not base64url: {error}")
    if len(public_key) != 32:
        give_up(f"the public key has {len(public_key)} bytes, not 32")
    reports = [report(path, public_key) for path in argv[2:]]
    json.dump(reports, sys.stdout, indent=1)
    print()
    failed = False
    for each in reports:
        for error in each["errors"]:
            print(f"{each['file']}: {error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
