"""Loopback emulators of the Amplitude Dashboard REST and RevenueCat REST APIs (see docs/upstream-apis.md).

A seeded synthetic dataset, fault injection and per-endpoint request counters, served by one Starlette app.
"""

from .credentials import (
    SANDBOX_AMPLITUDE_API_KEY,
    SANDBOX_AMPLITUDE_SECRET_KEY,
    SANDBOX_REVENUECAT_API_KEY,
    SANDBOX_REVENUECAT_PROJECT_ID,
)
from .dataset import Dataset, generate_dataset
from .faults import ENDPOINTS, FaultSpec, SandboxConnectionResetError
from .server import SandboxServer, create_sandbox_app
from .state import SandboxState

__all__ = [
    "ENDPOINTS",
    "SANDBOX_AMPLITUDE_API_KEY",
    "SANDBOX_AMPLITUDE_SECRET_KEY",
    "SANDBOX_REVENUECAT_API_KEY",
    "SANDBOX_REVENUECAT_PROJECT_ID",
    "Dataset",
    "FaultSpec",
    "SandboxConnectionResetError",
    "SandboxServer",
    "SandboxState",
    "create_sandbox_app",
    "generate_dataset",
]
