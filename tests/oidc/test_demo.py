"""`make demo-sso` works as the README prints it: the provider, then the demo configured to sign in there."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from shared.settings import Settings
from tests.hardening.served import free_port
from tests.oidc.support import require_node

require_node()

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0


def test_demo_sso_serves_the_dashboard_signing_in_at_the_provider_it_started() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    with tempfile.TemporaryFile() as output:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc.demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            config: dict[str, object] | None = None
            while config is None:
                assert demo.poll() is None, "the demo exited during start-up"
                assert time.monotonic() < deadline, "the demo did not start"
                try:
                    response = httpx2.get(base + "/dashboard/sign-in.json", timeout=2)
                    config = response.json() if response.status_code == 200 else None
                except httpx2.TransportError:
                    pass
                if config is None:
                    time.sleep(0.1)  # polling for start-up, bounded by the deadline above
            metadata = httpx2.get(base + "/.well-known/oauth-protected-resource", timeout=5).json()
            ready = httpx2.get(base + "/readyz", timeout=15).json()
        finally:
            demo.send_signal(signal.SIGINT)
            code = demo.wait(timeout=30)
        output.seek(0)
        printed = output.read().decode(errors="replace")
    issuer = re.search(r"Identity provider: (\S+)", printed)
    assert issuer is not None, printed
    assert config["issuer"] == issuer.group(1)
    assert config["redirect_uri"] == base + "/dashboard/"
    assert config["resource"] == base + "/mcp"
    assert metadata["authorization_servers"] == [issuer.group(1)]
    assert ready["signing_keys"] == {"available": True, "detail": "signing keys held"}
    assert code == 0
