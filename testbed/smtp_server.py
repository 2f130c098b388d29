"""An SMTP server for Renkei's tests (the testbed's OwnSmtp runs it): aiosmtpd on 127.0.0.1.

    python3 smtp_server.py --dir DIR [--port PORT] [--refuse ADDRESS]...

Listens on PORT (0, the default: a free one), then prints "READY <port>" on stdout. Each
message accepted becomes DIR/<n>.json, n counting from 1 in arrival order, written under a
temporary name and renamed, so a reader never sees half a file: the envelope, the raw
message, and what Python's email package decodes of it (subject and other headers from
RFC 2047, the text and HTML bodies from base64 or quoted-printable and their charset), with
every defect it found. RCPT TO an address given with --refuse (case-insensitive) is answered
550 5.1.1. Exits when its stdin closes, so it never outlives the test that started it.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys
import threading

from aiosmtpd.smtp import SMTP


def describe(envelope):
    raw = envelope.original_content or envelope.content or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    defects = []
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for part in message.walk():
        defects += [f"{type(d).__name__}: {d}" for d in part.defects]

    def decoded(what, get):
        try:
            return get()
        except Exception as e:  # A broken charset or header is a finding, not a crash.
            defects.append(f"{what}: {type(e).__name__}: {e}")
            return None

    headers = []
    for name in message.keys():
        for value in message.get_all(name, []):
            text = decoded(name, lambda: str(value))
            headers.append([name, text if text is not None else ""])
            defects += [f"{name}: {type(d).__name__}: {d}" for d in getattr(value, "defects", ())]

    def body(kind):
        part = message.get_body(preferencelist=(kind,))
        if part is None:
            return None
        text = decoded(f"the text/{kind} body", part.get_content)
        return None if text is None else text.replace("\r\n", "\n")

    subject = decoded("Subject", lambda: str(message.get("subject", "")))
    return {
        "from": envelope.mail_from or "",
        "to": list(envelope.rcpt_tos),
        "subject": subject or "",
        "body": body("plain") or "",
        "html": body("html"),
        "headers": headers,
        "defects": defects,
        "raw": raw.decode("utf-8", "replace"),
    }


class Handler:
    def __init__(self, directory, refused):
        self.directory = directory
        self.refused = {address.lower() for address in refused}
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = f"{self.count:08d}.json"
        temporary = os.path.join(self.directory, f".{name}.tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(describe(envelope), out, ensure_ascii=False)
        os.replace(temporary, os.path.join(self.directory, name))
        return "250 2.0.0 OK: queued"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--refuse", action="append", default=[])
    args = parser.parse_args()

    loop = asyncio.get_running_loop()
    handler = Handler(args.dir, args.refuse)
    # A hostname given: aiosmtpd would otherwise ask DNS for this machine's FQDN.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="renkei-testbed", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=args.port,
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)

    stdin_closed = loop.create_future()

    def wait_for_eof():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(lambda: stdin_closed.done() or stdin_closed.set_result(None))

    threading.Thread(target=wait_for_eof, daemon=True).start()
    await stdin_closed
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
