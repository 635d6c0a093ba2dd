"""Talking to the running server's management API, for the CLI (stdlib urllib, no reactor).

The server writes its API's address to DATA_DIR/management.json when it
starts; the token, when the API needs one, comes from the configuration
(`management.token`) or $SOFTSWITCH_API_TOKEN. Every failure becomes an
`ApiError` with the exit code and a message that says what to do:
no server (3), the API refused (1, with the server's reason).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from softswitch.cli import exitcodes
from softswitch.cli.server_files import ServerFiles
from softswitch.datadir import running_server
from softswitch.management.address import read_api_address

ENV_TOKEN = "SOFTSWITCH_API_TOKEN"
TIMEOUT = 10.0


class ApiError(Exception):
    def __init__(self, message: str, exit_code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


@dataclass(frozen=True, slots=True)
class ApiClient:
    url: str
    token: str | None = None
    timeout: float = TIMEOUT

    @classmethod
    def for_server(cls, files: ServerFiles) -> ApiClient:
        """The API of the server running on `files.data_dir`; ApiError(NO_SERVER) if none."""
        pid = running_server(files.data_dir)
        if pid is None:
            raise ApiError(f"no running server on data dir {files.where()}", exitcodes.NO_SERVER)
        address = read_api_address(files.data_dir)
        if address is None:
            raise ApiError(f"the server (pid {pid}) has no management API listening: it is "
                           "disabled (management.enabled) or its port was taken; see its log",
                           exitcodes.NO_SERVER)
        secret = files.config.settings.management.token
        token = os.environ.get(ENV_TOKEN) or (secret.get_secret_value() if secret else None)
        return cls(str(address["url"]), token)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, document: Any = None) -> Any:
        return self.request("POST", path, document)

    def request(self, method: str, path: str, document: Any = None) -> Any:
        data = json.dumps(document).encode() if document is not None else b""
        request = urllib.request.Request(self.url + path, data=data if method == "POST" else None,
                                         method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            reason = _reason(exc.read()) or exc.reason
            if exc.code == 401:
                raise ApiError(f"the server refused the token: {reason} (set management.token "
                               f"in the configuration or ${ENV_TOKEN})", exitcodes.FAILED,
                               exc.code) from None
            raise ApiError(str(reason), exitcodes.FAILED, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the server's management API at {self.url}: {why}",
                           exitcodes.NO_SERVER) from None
        if path == "/metrics":
            return body.decode()
        return json.loads(body)


def _reason(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return str(document.get("error")) if isinstance(document, dict) and "error" in document \
        else None
