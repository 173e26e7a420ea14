"""An auditor's checker of a coledger journal export, written from docs/wire-format.md alone
(PyNaCl for ed25519, the `rfc8785` package for canonical JSON, hashlib for SHA-256).

  python3 check_journal.py journal.jsonl

Checks the format, positions, that every entry and intent is in RFC 8785 form, each unit's
hash chain from zero, every signature and digest, that no intent is applied twice, and that
the file holds what its header says. (It leaves out what `coledger verify` adds: that each entry is exactly what its intent
asks for, and the per-unit totals.) Prints "N entries: chains and signatures verify", or
"line N: problem" and exits 1.
"""
import base64
import hashlib
import json
import sys
import uuid

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


class Bad(Exception):
    pass


def b64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(text, what):
    data = text.encode("utf-8")
    if rfc8785.dumps(json.loads(data)) != data:
        raise Bad(f"{what} is not in RFC 8785 form")
    return data


def check_entry(line, position, heads, intents):
    if line["position"] != position:
        raise Bad(f"position {line['position']} where {position} was expected")
    entry_bytes = canonical(line["entry"], "the entry")
    entry = json.loads(entry_bytes)
    units = sorted({p["unit"] for p in entry["postings"]})
    if [link["unit"] for link in line["links"]] != units:
        raise Bad("the links do not name the entry's units")
    for link in line["links"]:
        seq, prev = heads.get(link["unit"], (0, bytes(32)))
        if link["seq"] != seq + 1:
            raise Bad(f"unit {link['unit']}: sequence {link['seq']} after {seq}")
        digest = hashlib.sha256(prev + entry_bytes).digest()
        if digest.hex() != link["hash"]:
            raise Bad(f"chain break in unit {link['unit']} at sequence {link['seq']}")
        heads[link["unit"]] = (seq + 1, digest)
    intent = line["intent"]
    signed = b"coledger/v1\n" + canonical(intent["body"], "the intent")
    auth = entry["authorisation"]
    if not intent["signer"] == auth["signer"] == json.loads(intent["body"])["signer"]:
        raise Bad("signers differ")
    try:
        VerifyKey(b64(intent["signer"])).verify(signed, b64(intent["signature"]))
    except BadSignatureError:
        raise Bad("bad signature") from None
    if auth["signature"] != intent["signature"]:
        raise Bad("the entry carries another signature")
    if auth["digest"] != hashlib.sha256(signed).hexdigest():
        raise Bad("digest mismatch")
    intent_id = uuid.UUID(json.loads(intent["body"])["intent_id"])
    if uuid.UUID(auth["intent_id"]) != intent_id:
        raise Bad("the entry names another intent")
    if intent_id in intents:
        raise Bad(f"intent {intent_id} applied twice")
    intents.add(intent_id)


def main(path):
    heads, intents, n = {}, set(), 1
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
            if (header["format"], header["version"]) != ("coledger-journal", 1):
                raise Bad("not a coledger-journal v1 export")
            for n, text in enumerate(f, start=2):
                check_entry(json.loads(text), n - 1, heads, intents)
            n += 1
            if n - 2 != header["count"]:
                raise Bad(f"the header promises {header['count']} entries, the file holds {n - 2}")
            stated = {h["unit"]: (h["seq"], h["hash"]) for h in header["heads"]}
            if stated != {u: (s, d.hex()) for u, (s, d) in heads.items()}:
                raise Bad("the chains end elsewhere than the header says")
        except (Bad, KeyError, TypeError, ValueError) as problem:
            print(f"line {n}: {problem}")
            sys.exit(1)
    print(f"{n - 2} entries: chains and signatures verify")


if __name__ == "__main__":
    main(sys.argv[1])
