"""``python -m shared.sandbox --port N``: serve both emulators on one loopback port until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .credentials import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SANDBOX_REVENUECAT_PROJECT_ID,
)
from .server import create_sandbox_app, quiet_injected_resets
from .state import SandboxState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=2500)
    args = parser.parse_args(argv)
    state = SandboxState(seed=args.seed, users=args.users)
    dataset = state.dataset
    base_url = f"http://{args.host}:{args.port}"
    # These are fake sandbox credentials, printed on purpose so the demo can be wired up.
    sys.stdout.write(
        f"Loop KPI sandbox on {base_url} (seed={args.seed}, users={len(dataset.users)}, "
        f"{dataset.start}..{dataset.end}, {len(dataset.events)} events)\n"
        f"  AMPLITUDE_BASE_URL={base_url}\n"
        f"  AMPLITUDE_API_KEY={SANDBOX_AMPLITUDE_API_KEY}\n"
        f"  AMPLITUDE_SECRET_KEY={SANDBOX_AMPLITUDE_SECRET_KEY}\n"
        f"  REVENUECAT_BASE_URL={base_url}\n"
        f"  REVENUECAT_API_KEY={SANDBOX_REVENUECAT_API_KEY}\n"
        f"  REVENUECAT_PROJECT_ID={SANDBOX_REVENUECAT_PROJECT_ID}\n"
        f"  control: {base_url}/_sandbox/stats, POST/DELETE {base_url}/_sandbox/faults\n"
    )
    sys.stdout.flush()
    quiet_injected_resets()
    uvicorn.run(create_sandbox_app(state), host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
