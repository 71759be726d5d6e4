"""Fake credentials the sandbox emulators accept (loopback only; safe to print)."""

SANDBOX_AMPLITUDE_API_KEY = "sandbox-amplitude-api-key"
SANDBOX_AMPLITUDE_SECRET_KEY = "sandbox-amplitude-secret-key"
SANDBOX_REVENUECAT_API_KEY = "sk_sandbox_revenuecat_v2_key"
SANDBOX_REVENUECAT_PROJECT_ID = "projsandbox1"
