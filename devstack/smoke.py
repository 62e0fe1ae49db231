"""`make smoke`: drive the running local backend the way the frontend does, and print each step.

Upload a file through the pre-signed POST, download it, share it and download it as another user,
send a mail and read it back through the mail API and the local SES, mail an address that bounces
and see the bounce recorded and the address suppressed, chat between two users on different chat
instances, and read the history. Exit code 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from devstack.backend import DEMO_PROJECT, STATE_FILE, BackendError, State
from devstack.identity import Issuer


class StepFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Smoke:
    state: State
    issuer: Issuer
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    context: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.alice = self.issuer.mint("smoke-alice", [DEMO_PROJECT], email="alice@motion.local")
        self.bob_outsider = self.issuer.mint("smoke-bob", [], email="bob@motion.local")
        self.bob_member = self.issuer.mint("smoke-bob", [DEMO_PROJECT], email="bob@motion.local")
        self.http = httpx.Client(timeout=10)

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # --- files --------------------------------------------------------------------------------------

    def upload_file(self) -> str:
        content = f"Motion smoke test {self.run_id}\n".encode()
        ticket = self.http.post(
            f"{self.state.urls['files']}/uploads",
            json={
                "project_id": DEMO_PROJECT,
                "file_name": f"smoke-{self.run_id}.txt",
                "content_type": "text/plain",
                "size_bytes": len(content),
            },
            headers=self.headers(self.alice),
        )
        check(ticket.status_code == 201, f"request upload: {ticket.status_code} {ticket.text}")
        upload = ticket.json()["upload"]
        posted = self.http.post(
            upload["url"], data=upload["fields"], files={"file": ("smoke.txt", content, "text/plain")}
        )
        check(
            posted.status_code in (200, 201, 204),
            f"pre-signed POST to S3: {posted.status_code} {posted.text}",
        )
        file_id = ticket.json()["file"]["id"]
        done = self.http.post(
            f"{self.state.urls['files']}/uploads/{file_id}/complete", headers=self.headers(self.alice)
        )
        check(
            done.status_code == 200 and done.json()["file"]["status"] == "available",
            f"complete upload: {done.status_code} {done.text}",
        )
        self.context.update(file_id=file_id, content=content)
        return f"file {file_id} uploaded ({len(content)} bytes) and completed"

    def _download(self, token: str) -> httpx.Response:
        return self.http.get(
            f"{self.state.urls['files']}/files/{self.context['file_id']}/download",
            headers=self.headers(token),
        )

    def download_file(self) -> str:
        ticket = self._download(self.alice)
        check(ticket.status_code == 200, f"download URL: {ticket.status_code} {ticket.text}")
        got = self.http.get(ticket.json()["url"])
        check(got.status_code == 200 and got.content == self.context["content"], "downloaded bytes differ")
        return "owner downloaded the same bytes through the pre-signed GET"

    def share_and_download_as_other_user(self) -> str:
        denied = self._download(self.bob_outsider)
        check(
            denied.status_code == 403,
            f"an outsider must be refused before the share, got {denied.status_code}",
        )
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        shared = self.http.put(
            f"{self.state.urls['files']}/files/{self.context['file_id']}/shares/smoke-bob",
            json={"expires_at": until},
            headers=self.headers(self.alice),
        )
        check(shared.status_code == 200, f"share: {shared.status_code} {shared.text}")
        ticket = self._download(self.bob_outsider)
        check(ticket.status_code == 200, f"grantee download URL: {ticket.status_code} {ticket.text}")
        got = self.http.get(ticket.json()["url"])
        check(got.content == self.context["content"], "grantee got other bytes")
        return "outsider refused (403), then shared with and downloaded by smoke-bob"

    # --- mail ---------------------------------------------------------------------------------------

    def send_and_read_mail(self) -> str:
        subject = f"Smoke {self.run_id}"
        # Signing up in Clerk sends webhooks; they put both users in the mail directory.
        clerk = self.state.clerk()
        clerk.create_user("smoke-alice", "alice@motion.local", [DEMO_PROJECT], name="Smoke Alice")
        clerk.create_user("smoke-bob", "bob@motion.local", [DEMO_PROJECT], name="Smoke Bob")
        sent = self.http.post(
            f"{self.state.urls['mail-api']}/mail/messages",
            json={
                "recipients": ["smoke-bob"],
                "subject": subject,
                "body": "Hello from the smoke test.",
            },
            headers=self.headers(self.alice),
        )
        check(sent.status_code == 202, f"send: {sent.status_code} {sent.text}")
        message_id = sent.json()["id"]
        deadline = time.monotonic() + 20
        emails: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not emails:
            emails = [m for m in self._ses_messages() if subject in m.get("subject", "")]
            time.sleep(0.2)
        check(len(emails) == 1, f"the local SES holds {len(emails)} e-mails for this message, expected 1")
        inbox = self.http.get(
            f"{self.state.urls['mail-api']}/mail/messages", headers=self.headers(self.bob_member)
        )
        check(inbox.status_code == 200, f"read: {inbox.status_code} {inbox.text}")
        ids = [m["id"] for m in inbox.json()["messages"]]
        check(message_id in ids, "the recipient's mailbox lacks the message")
        return (
            f"message {message_id}: users signed up by Clerk webhooks, queued, e-mailed once by the "
            "mailer, in bob's mailbox"
        )

    def bounce_is_recorded_and_suppressed(self) -> str:
        """A recipient whose address bounces (SES's mailbox simulator): the sender sees the bounce,
        SES puts the address on the suppression list, and the next e-mail to it is not sent."""
        address = f"bounce+{self.run_id}@simulator.amazonses.com"
        self.state.clerk().create_user("smoke-carol", address, [DEMO_PROJECT], name="Smoke Carol")

        def send(subject: str) -> str:
            sent = self.http.post(
                f"{self.state.urls['mail-api']}/mail/messages",
                json={"recipients": ["smoke-carol"], "subject": subject, "body": "Bounce, please."},
                headers=self.headers(self.alice),
            )
            check(sent.status_code == 202, f"send: {sent.status_code} {sent.text}")
            return str(sent.json()["id"])

        def status(message_id: str) -> str:
            deadline = time.monotonic() + 30
            while True:
                listed = self.http.get(
                    f"{self.state.urls['mail-api']}/mail/messages", headers=self.headers(self.alice)
                )
                check(listed.status_code == 200, f"list: {listed.status_code} {listed.text}")
                entry = next((m for m in listed.json()["messages"] if m["id"] == message_id), None)
                shown = entry["deliveries"][0]["status"] if entry and entry.get("deliveries") else "missing"
                if shown not in ("pending", "sent", "accepted", "missing") or time.monotonic() > deadline:
                    return str(shown)
                time.sleep(0.3)

        first = send(f"Bounce {self.run_id}")
        check(status(first) == "bounced", f"the first e-mail shows {status(first)!r}, expected 'bounced'")
        with urllib.request.urlopen(
            f"{self.state.urls['ses']}/v2/email/suppression/addresses/{address}", timeout=10
        ) as resp:
            reason = json.loads(resp.read())["SuppressedDestination"]["Reason"]
        check(reason == "BOUNCE", f"the address is suppressed for {reason!r}, expected BOUNCE")
        second = send(f"Bounce again {self.run_id}")
        check(
            status(second) == "suppressed",
            f"the second e-mail shows {status(second)!r}, expected 'suppressed'",
        )
        held = [m for m in self._ses_messages() if f"Bounce again {self.run_id}" in m.get("subject", "")]
        check(not held, "SES sent an e-mail to a suppressed address")
        return f"{address}: bounced, put on the suppression list, the next e-mail not sent (suppressed)"

    def _ses_messages(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.state.aws_endpoint}/moto-api/data.json", timeout=10) as resp:
            data = json.loads(resp.read())
        messages: list[dict[str, Any]] = data.get("ses", {}).get("Message", [])
        return messages

    # --- chat ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, url: str, token: str) -> Iterator[ClientConnection]:
        with connect(url, additional_headers=self.headers(token), open_timeout=10) as ws:
            hello = self._receive(ws, "hello")
            check(DEMO_PROJECT in hello["projects"], f"hello lacks the project: {hello}")
            ws.send(json.dumps({"type": "join", "project": DEMO_PROJECT}))
            self._receive(ws, "joined")
            yield ws

    def _receive(self, ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame.get("type") == kind:
                return dict(frame)
            check(frame.get("type") != "error", f"chat error while waiting for {kind}: {frame}")

    def chat_across_instances(self) -> str:
        with (
            self._connect(self.state.urls["chat-a"], self.alice) as alice,
            self._connect(self.state.urls["chat-b"], self.bob_member) as bob,
        ):
            text = f"hi bob ({self.run_id})"
            alice.send(json.dumps({"type": "send", "project": DEMO_PROJECT, "text": text, "ref": 1}))
            ack = self._receive(alice, "ack")
            got = self._receive(bob, "message")
            check(
                got["text"] == text and got["id"] == ack["id"] and got["user"] == "smoke-alice",
                f"bob on chat-b got {got}",
            )
            self.context["chat_id"] = ack["id"]
        return f"alice on chat-a -> bob on chat-b: message {ack['id']}"

    def read_history(self) -> str:
        with self._connect(self.state.urls["chat-b"], self.bob_member) as bob:
            bob.send(json.dumps({"type": "history", "project": DEMO_PROJECT, "limit": 10}))
            history = self._receive(bob, "history")
        ids = [m["id"] for m in history["messages"]]
        check(self.context["chat_id"] in ids, "history lacks the message just sent")
        check(ids == sorted(ids, reverse=True), "history is not newest first")
        return f"history has {len(ids)} message(s), newest first, including the one just sent"

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("upload a file through the pre-signed POST", self.upload_file),
            ("download it through the pre-signed GET", self.download_file),
            ("share it and download as another user", self.share_and_download_as_other_user),
            ("send a mail and read it back (mail API, local SES)", self.send_and_read_mail),
            (
                "a bounce is recorded and the address suppressed (SES events)",
                self.bounce_is_recorded_and_suppressed,
            ),
            ("chat between users on different chat instances", self.chat_across_instances),
            ("read chat history", self.read_history),
        ]


def run(state: State, out: Callable[[str], None] = print) -> bool:
    smoke = Smoke(state, state.issuer())
    passed = True
    for title, step in smoke.steps():
        try:
            detail = step()
        except Exception as err:  # every failure is reported, then the next step runs
            out(f"FAIL  {title}: {type(err).__name__}: {err}")
            passed = False
        else:
            out(f"ok    {title}: {detail}")
    out("smoke: all steps passed" if passed else "smoke: FAILED")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--state", type=Path, default=STATE_FILE, help="the running backend's state file")
    args = parser.parse_args(argv)
    try:
        state = State.load(args.state)
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if run(state) else 1


if __name__ == "__main__":
    raise SystemExit(main())
