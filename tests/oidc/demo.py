"""`make demo-sso`: the sandbox demo with sign-in at a real OpenID Connect provider on loopback (needs Node).

Starts the test provider (README.md here: panva's oidc-provider; any login name signs in, `exec-*` get the role
`exec`) with the dashboard's public client registered for this demo's address, then `loop-kpi serve --sandbox` with
`KPI_JWT_ISSUER` and `KPI_OIDC_CLIENT_ID` pointing at it. Open the dashboard and choose "Sign in with your company
account"; remote MCP clients can sign in at `/mcp` the same way (dynamic registration). Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.oidc.support import node_missing, running_provider

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.oidc.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface the service listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port of the service (default 8000)")
    args = parser.parse_args(argv)
    if node_missing():
        sys.stderr.write("demo-sso: Node.js (node and npm) is needed for the test identity provider.\n")
        return 2
    public_url = f"http://{args.host}:{args.port}"
    with running_provider(
        dashboard_redirect_uris=[public_url + "/dashboard/"], default_resource=public_url + "/mcp", refresh_tokens=True
    ) as provider:
        env = os.environ | {
            "KPI_PUBLIC_URL": public_url,
            "KPI_JWT_ISSUER": provider.issuer,
            "KPI_OIDC_CLIENT_ID": provider.dashboard_client_id,
            "KPI_OIDC_SCOPES": "openid,kpi:read,offline_access",
        }
        sys.stdout.write(
            f"  Identity provider: {provider.issuer} (test provider: any login name and password; "
            "exec-* get the role exec)\n"
            f"  Sign in at:        {public_url}/dashboard/ -> 'Sign in with your company account'\n"
        )
        sys.stdout.flush()
        command = [sys.executable, "-m", "api.cli", "serve", "--sandbox", "--host", args.host, "--port", str(args.port)]
        service = subprocess.Popen(command, env=env, cwd=ROOT)
        try:
            return service.wait()
        except KeyboardInterrupt:
            service.send_signal(signal.SIGINT)
            return service.wait(timeout=20)


if __name__ == "__main__":
    raise SystemExit(main())
