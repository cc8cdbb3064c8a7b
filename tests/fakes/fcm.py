"""A local stand-in for Google's OAuth2 token endpoint and the FCM HTTP v1 send API.

firebase-admin talks to it unchanged: the service-account JSON made here has its `token_uri`
pointing at `/token`, and the send URL (`fcm_send_url`) at `/v1/projects/{project_id}/messages:send`.
Answers use FCM's real shapes, including the FcmError details for UNREGISTERED and INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.server import LoopbackServer, QuietHandler

PROJECT_ID = "spotless-test"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


class FcmFake(LoopbackServer):
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []  # each request body, in arrival order
        self.unregistered: set[str] = set()
        self.invalid: set[str] = set()
        self.unavailable = False
        self.token_requests = 0
        self.lock = threading.Lock()
        self.access_token = f"ya29.fake-{secrets.token_hex(8)}"
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.reply_json(*fake.route(self.path, body, self.headers.get("Authorization", "")))

        super().__init__(Handler)


    def route(self, path: str, body: bytes, authorization: str) -> tuple[int, dict[str, Any]]:
        if path == "/token":
            with self.lock:
                self.token_requests += 1
            return 200, {"access_token": self.access_token, "expires_in": 3600, "token_type": "Bearer"}
        if path == f"/v1/projects/{PROJECT_ID}/messages:send":
            if authorization != f"Bearer {self.access_token}":
                return 401, _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            message = json.loads(body)
            token = message["message"].get("token") or message["message"].get("fid", "")
            if self.unavailable:
                return 503, _error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")
            with self.lock:
                self.sent.append(message)
            if token in self.unregistered:
                return 404, _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
            if token in self.invalid:
                return 400, _error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM "
                                   "registration token", "INVALID_ARGUMENT")
            return 200, {"name": f"projects/{PROJECT_ID}/messages/{secrets.token_hex(8)}"}
        return 404, _error(404, "NOT_FOUND", f"no route {path}")

    def service_account(self, directory: Path) -> Path:
        """A service-account JSON whose token_uri is this fake; returns its path."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path = directory / "fcm-service-account.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT_ID, "private_key_id": "fake-key-1",
            "private_key": pem, "client_email": f"firebase-adminsdk@{PROJECT_ID}.iam.gserviceaccount.com",
            "client_id": "1234567890", "token_uri": f"{self.url}/token",
        }))
        return path

    def settings_update(self, directory: Path) -> dict[str, Any]:
        return {"fcm_credentials_file": str(self.service_account(directory)),
                "fcm_send_url": self.url + "/v1/projects/{project_id}/messages:send"}

    def sent_to(self, token: str) -> list[dict[str, Any]]:
        return [m["message"] for m in self.sent if token in (m["message"].get("token"), m["message"].get("fid"))]


def _error(code: int, status: str, message: str, fcm_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR, "errorCode": fcm_code}]
    return {"error": error}
