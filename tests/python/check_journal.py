"""An auditor's checker of a coledger journal export, written from docs/wire-format.md alone
(PyNaCl for ed25519, the `rfc8785` package for canonical JSON, hashlib for SHA-256).

  python3 check_journal.py journal.jsonl [--checkpoints saved.json]

Checks the format, positions, that every entry and intent is in RFC 8785 form, each unit's
hash chain from zero, every signature and digest, that no intent is applied twice, and that
the file holds what its header says. (It leaves out what `coledger verify` adds: that each entry is exactly what its intent
asks for, and the per-unit totals.) Prints "N entries: chains and signatures verify", or
"line N: problem" and exits 1. With --checkpoints (a saved GET /v1/journal/checkpoints), it
also checks every signed checkpoint's signature and that the export has, at the checkpoint's
link, its hash and its totals; then it prints "N checkpoints hold".
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


KINDS = ["issue", "payment", "redeem", "fee", "expire", "demurrage", "time_exchange",
         "waste_reward", "reversal", "convert", "card_replacement"]


def checkpoint_totals(cp):
    return ({k["kind"]: (k["entries"], int(k["amount_minor"])) for k in cp["kinds"]},
            int(cp["positive_balances"]))


def load_checkpoints(path):
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    wanted = {}
    for cp in saved["checkpoints"]:
        unsigned = {k: v for k, v in cp.items() if k != "signature"}
        signed = b"coledger/checkpoint/v1\n" + rfc8785.dumps(unsigned)
        try:
            VerifyKey(b64(cp["key"])).verify(signed, b64(cp["signature"]))
        except BadSignatureError:
            raise Bad(f"checkpoint of {cp['unit']} at {cp['seq']}: bad signature") from None
        wanted[(cp["unit"], cp["seq"])] = cp
    return wanted


class Totals:
    """Per unit, as the checkpoints count: entries and amounts per kind, and positive balances."""

    def __init__(self):
        self.kinds, self.balances, self.positive = {}, {}, {}

    def add(self, entry):
        kind = entry["kind"]
        for unit in {p["unit"] for p in entry["postings"]}:
            n, amount = self.kinds.setdefault(unit, {}).get(kind, (0, 0))
            self.kinds[unit][kind] = (n + 1, amount)
        for p in entry["postings"]:
            unit, amount = p["unit"], p["amount"]
            n, total = self.kinds[unit][kind]
            self.kinds[unit][kind] = (n, total + amount)
            for account, delta in ((p["debit"], -amount), (p["credit"], amount)):
                before = self.balances.get(account, 0)
                self.balances[account] = before + delta
                self.positive[unit] = (self.positive.get(unit, 0)
                                       + max(before + delta, 0) - max(before, 0))

    def of(self, unit):
        return dict(self.kinds.get(unit, {})), self.positive.get(unit, 0)


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
    return entry


def main(path, checkpoints_path=None):
    heads, intents, n = {}, set(), 1
    try:
        wanted = load_checkpoints(checkpoints_path) if checkpoints_path else {}
    except (Bad, KeyError, TypeError, ValueError) as problem:
        print(f"{checkpoints_path}: {problem}")
        sys.exit(1)
    held, totals = len(wanted), Totals()
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
            if (header["format"], header["version"]) != ("coledger-journal", 1):
                raise Bad("not a coledger-journal v1 export")
            for n, text in enumerate(f, start=2):
                line = json.loads(text)
                entry = check_entry(line, n - 1, heads, intents)
                totals.add(entry)
                for link in line["links"]:
                    cp = wanted.pop((link["unit"], link["seq"]), None)
                    if cp is None:
                        continue
                    if cp["hash"] != link["hash"]:
                        raise Bad(f"checkpoint of {link['unit']} at {link['seq']}: another hash")
                    if checkpoint_totals(cp) != totals.of(link["unit"]):
                        raise Bad(f"checkpoint of {link['unit']} at {link['seq']}: other totals")
            n += 1
            if wanted:
                raise Bad(f"{len(wanted)} checkpoint(s) beyond the end of the chains")
            if n - 2 != header["count"]:
                raise Bad(f"the header promises {header['count']} entries, the file holds {n - 2}")
            stated = {h["unit"]: (h["seq"], h["hash"]) for h in header["heads"]}
            if stated != {u: (s, d.hex()) for u, (s, d) in heads.items()}:
                raise Bad("the chains end elsewhere than the header says")
        except (Bad, KeyError, TypeError, ValueError) as problem:
            print(f"line {n}: {problem}")
            sys.exit(1)
    print(f"{n - 2} entries: chains and signatures verify")
    if checkpoints_path:
        print(f"{held} checkpoints hold")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--checkpoints":
        main(sys.argv[1], sys.argv[3])
    else:
        main(sys.argv[1])
