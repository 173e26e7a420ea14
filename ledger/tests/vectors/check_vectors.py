"""Checks coledger's published intent vectors with libraries we did not write.

Usage: python3 check_vectors.py intents.json   (or checkpoints.json)
Requires PyNaCl (ed25519) and rfc8785 (JSON canonicalization), see requirements.txt.
"""
import json
import sys
import base64

import nacl.signing
import nacl.exceptions
import rfc8785

CONTEXT = b"coledger/v1\n"


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


CHECKPOINT_CONTEXT = b"coledger/checkpoint/v1\n"


def check_checkpoints(document):
    """The checkpoint vectors: signed bytes and verdicts, from the wire form alone."""
    failures = 0
    signing_key = nacl.signing.SigningKey(bytes.fromhex(document["secret_seed_hex"]))
    for vector in document["vectors"]:
        checkpoint = vector["checkpoint"]
        unsigned = {k: v for k, v in checkpoint.items() if k != "signature"}
        message = CHECKPOINT_CONTEXT + rfc8785.dumps(unsigned)
        problems = []
        if "signed_bytes_hex" in vector and message.hex() != vector["signed_bytes_hex"]:
            problems.append("signed bytes differ")
        try:
            nacl.signing.VerifyKey(b64url(checkpoint["key"])).verify(message, b64url(checkpoint["signature"]))
            verdict = "ok"
        except nacl.exceptions.BadSignatureError:
            verdict = "bad_signature"
        if verdict != vector["expect"]:
            problems.append(f"verdict {verdict}, expected {vector['expect']}")
        if vector["expect"] == "ok":
            ours = signing_key.sign(message).signature
            if base64.urlsafe_b64encode(ours).rstrip(b"=").decode() != checkpoint["signature"]:
                problems.append("our signature differs")
        status = "ok  " if not problems else "FAIL"
        print(f"{status} {vector['name']}" + ("" if not problems else ": " + "; ".join(problems)))
        failures += bool(problems)
    print(f"{len(document['vectors']) - failures} passed, {failures} failed")
    return 1 if failures else 0


def main(path):
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if document["format"] == "coledger signed journal checkpoints v1":
        return check_checkpoints(document)
    failures = 0
    for vector in document["vectors"]:
        canonical = rfc8785.dumps(vector["intent"])
        message = CONTEXT + canonical
        problems = []
        if canonical != vector["canonical"].encode("utf-8"):
            problems.append("canonical bytes differ")
        if message.hex() != vector["signed_bytes_hex"]:
            problems.append("signed bytes differ")
        signing_key = nacl.signing.SigningKey(bytes.fromhex(vector["secret_seed_hex"]))
        public = base64.urlsafe_b64encode(bytes(signing_key.verify_key)).rstrip(b"=").decode()
        if public != vector["public_key"]:
            problems.append("public key differs")
        signer = nacl.signing.VerifyKey(b64url(vector["intent"]["signer"]))
        try:
            signer.verify(message, b64url(vector["signature"]))
            verdict = "ok"
        except nacl.exceptions.BadSignatureError:
            verdict = "bad_signature"
        if verdict == "ok" and vector["checked_at_unix_s"] > vector["intent"]["not_after"]:
            verdict = "expired"
        if verdict != vector["expect"]:
            problems.append(f"verdict {verdict}, expected {vector['expect']}")
        if vector["expect"] != "bad_signature":
            ours = signing_key.sign(message).signature
            if base64.urlsafe_b64encode(ours).rstrip(b"=").decode() != vector["signature"]:
                problems.append("our signature differs")
        status = "ok  " if not problems else "FAIL"
        print(f"{status} {vector['name']}" + ("" if not problems else ": " + "; ".join(problems)))
        failures += bool(problems)
    print(f"{len(document['vectors']) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
