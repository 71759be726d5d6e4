"""Caller authentication and authorisation, shared by the REST and MCP faces (no web-framework code here).

Import from the modules (`shared.auth.tokens`, `.scopes`, `.allowlist`, ...): this package imports none of them,
so that `loop-kpi mcp --sandbox` without a token starts without the JWT library and its cryptography.
"""
