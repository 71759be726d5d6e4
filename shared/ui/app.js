/* Loop KPI dashboard: calls /api/kpi/* with the user's bearer token and shows the answers with the views of
 * kpi-render.js (shared with the MCP App).
 *
 * The token is only ever sent as an `Authorization: Bearer` header to this origin; no inline script or style
 * (the page runs under a strict CSP). It comes from the company's identity provider (OpenID Connect,
 * authorization code + PKCE, when the page names /dashboard/sign-in.json), from the sandbox banner's link
 * (`#token=`), or is pasted.
 */
(function () {
  "use strict";

  const { Panel, renderers, AuthError, ProblemError, StaleError, hooks } = window.LoopKpi;
  const TOKEN_KEY = "loop-kpi.token";
  const SIGN_IN_START = "#sign-in";
  const API = "/api/kpi";
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------------ sign-in

  /**
   * Sign-in through the company's identity provider: OpenID Connect authorization code + PKCE in this tab, with
   * the vendored oidc-client-ts (loaded only when the page names a sign-in configuration, /dashboard/sign-in.json).
   * The access token asked for is for this service (`resource`, RFC 8707). Tokens and the in-flight sign-in state (PKCE verifier,
   * state, nonce) live in this tab's sessionStorage: they survive the round trip to the provider and a reload,
   * are not shared with other tabs and are gone when the tab closes (localStorage would keep them on disk
   * indefinitely). The code comes back in the URL fragment (response_mode=fragment), so it never reaches a
   * server log; a refresh token, when the provider gives one, renews the access token before it expires; without
   * one (or when renewal fails) the page shows the signed-out screen at expiry.
   */
  const identityProvider = {
    configured: false,
    config: null,
    manager: null,
    onRenewed: null,
    onExpired: null,

    /** Fetch the configuration and load the library; false when sign-in through a provider is not configured. */
    async init() {
      const meta = document.querySelector('meta[name="loop-kpi-sign-in"]');
      const url = meta && meta.content;
      if (!url) return false; // not configured: the page offers the paste-a-token path only
      const response = await fetch(url, { credentials: "omit", headers: { Accept: "application/json" } });
      if (!response.ok) return false;
      this.config = await response.json();
      await loadScript(this.config.library);
      const { UserManager, WebStorageStateStore } = window.oidc;
      const scopes = this.config.scopes;
      this.manager = new UserManager({
        authority: this.config.issuer,
        client_id: this.config.client_id,
        redirect_uri: this.config.redirect_uri,
        post_logout_redirect_uri: this.config.post_logout_redirect_uri,
        response_type: "code",
        response_mode: "fragment",
        scope: scopes.join(" "),
        resource: this.config.resource,
        extraTokenParams: { resource: this.config.resource },
        // OpenID Connect Core 11: a provider grants offline access (a refresh token) only with prompt=consent.
        prompt: scopes.includes("offline_access") ? "consent" : undefined,
        loadUserInfo: false,
        automaticSilentRenew: false, // renewed below with the refresh token only: no iframe (the CSP forbids it)
        monitorSession: false,
        userStore: new WebStorageStateStore({ store: sessionStorage }),
        stateStore: new WebStorageStateStore({ store: sessionStorage }),
      });
      this.manager.events.addAccessTokenExpiring(() => this.renew());
      this.manager.events.addAccessTokenExpired(() => {
        if (this.onExpired) this.onExpired();
      });
      this.configured = true;
      return true;
    },

    /** Whether this URL is the provider sending the browser back: `#code=`/`#error=` with `state`. */
    isCallback() {
      const params = new URLSearchParams(location.hash.replace(/^#/, ""));
      return params.has("state") && (params.has("code") || params.has("error"));
    },

    /** Whether this URL is the provider's return after sign-out (`?state=` on the redirect URI). */
    isSignOutReturn() {
      return new URLSearchParams(location.search).has("state");
    },

    /** Finish the sign-in the provider sent back; the access token, or an Error saying why not. */
    async completeSignIn() {
      const url = location.href;
      history.replaceState(null, "", location.pathname);
      const user = await this.manager.signinRedirectCallback(url);
      return user.access_token;
    },

    async completeSignOut() {
      const url = location.href;
      history.replaceState(null, "", location.pathname);
      try {
        await this.manager.signoutRedirectCallback(url);
      } catch (_) {
        /* an unknown or stale state: signed out all the same */
      }
    },

    /** The access token of a session kept in this tab, if it is still valid. */
    async currentToken() {
      const user = await this.manager.getUser();
      return user && !user.expired && user.access_token ? user.access_token : null;
    },

    /** Whether this page was opened to start a sign-in at once (see `signIn`). */
    isSignInStart() {
      return location.hash === SIGN_IN_START;
    },

    /**
     * Go to the provider's sign-in page (the page unloads; `completeSignIn` runs when it comes back). A sign-in
     * starts on the origin the provider sends the browser back to, since its state and PKCE verifier are kept in
     * that origin's sessionStorage: opened at another address of this service (localhost for 127.0.0.1, say),
     * the page goes to the registered address first and starts there.
     */
    async signIn() {
      const home = new URL(this.config.redirect_uri);
      if (home.origin !== location.origin) {
        location.assign(home.origin + home.pathname + home.search + SIGN_IN_START);
        return null;
      }
      if (this.isSignInStart()) history.replaceState(null, "", location.pathname + location.search);
      await this.manager.signinRedirect();
      return null;
    },

    /** A new access token from the refresh token, or null when there is none or the provider refuses. */
    async refresh() {
      try {
        const user = await this.manager.getUser();
        if (!user || !user.refresh_token) return null;
        const renewed = await this.manager.signinSilent({ resource: this.config.resource });
        return renewed && renewed.access_token ? renewed.access_token : null;
      } catch (_) {
        return null; // refused (revoked, session ended)
      }
    },

    /** Ahead of expiry; without a new token the access token runs out and the signed-out screen follows. */
    async renew() {
      const token = await this.refresh();
      if (token && this.onRenewed) this.onRenewed(token);
    },

    /** Forget the session here, revoke its refresh token, and end it at the provider when the provider can. */
    async signOut() {
      const user = await this.manager.getUser();
      if (!user) return;
      const metadata = await this.manager.metadataService.getMetadata().catch(() => ({}));
      if (user.refresh_token && metadata.revocation_endpoint) {
        await this.manager.revokeTokens(["refresh_token"]).catch(() => null);
      }
      if (metadata.end_session_endpoint) {
        await this.manager.signoutRedirect({ id_token_hint: user.id_token }); // removes the user, then leaves
      } else {
        await this.manager.removeUser();
      }
    },

    async forget() {
      if (this.manager) await this.manager.removeUser();
    },
  };

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error("could not load " + src));
      document.head.appendChild(script);
    });
  }

  /** The bearer token in use; `source` is "pasted" (kept under TOKEN_KEY) or "provider" (kept by the library). */
  const session = {
    token: null,
    source: null,
    generation: 0,
    set(token, source) {
      this.token = token;
      this.source = source;
      this.generation += 1;
      try {
        if (source === "pasted") sessionStorage.setItem(TOKEN_KEY, token);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) {
        /* storage disabled: the token lives in memory for this page only */
      }
    },
    /** A renewed token of the same session: requests in flight stay valid. */
    renew(token) {
      this.token = token;
    },
    clear() {
      this.token = null;
      this.source = null;
      this.generation += 1;
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) {
        /* nothing stored */
      }
    },
    restore() {
      try {
        return sessionStorage.getItem(TOKEN_KEY);
      } catch (_) {
        return null;
      }
    },
  };

  /** `#token=...` from the banner link: read once, then removed from the address bar and history. */
  function takeFragmentToken() {
    const fragment = location.hash.replace(/^#/, "");
    if (!fragment) return null;
    const params = new URLSearchParams(fragment);
    const token = params.get("token");
    if (token === null) return null;
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return token.trim() || null;
  }

  // ------------------------------------------------------------------------------------------ API

  async function call(path, init) {
    const generation = session.generation;
    const headers = new Headers((init && init.headers) || {});
    headers.set("Authorization", "Bearer " + session.token);
    headers.set("Accept", "application/json");
    let response;
    try {
      response = await fetch(path, Object.assign({}, init, { headers, credentials: "omit", referrerPolicy: "no-referrer" }));
    } catch (error) {
      throw new ProblemError(0, { title: "Network error", detail: "The service did not answer: " + error.message });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (generation !== session.generation) throw new StaleError();
    if (response.headers.get("X-KPI-Data-Source") === "sandbox") showSandbox();
    if (response.status === 401 || response.status === 403) throw new AuthError(response.status, body);
    if (!response.ok) throw new ProblemError(response.status, body);
    return body;
  }

  const getJson = (path) => call(path);
  const postJson = (path, payload) =>
    call(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });

  // ------------------------------------------------------------------------------------------ screens

  const SCREENS = ["screen-loading", "screen-signin", "screen-forbidden", "screen-dashboard"];

  function showScreen(id, focusId) {
    for (const screen of SCREENS) $(screen).hidden = screen !== id;
    $("sign-out").hidden = id !== "screen-dashboard" && id !== "screen-forbidden";
    if (focusId) $(focusId).focus();
  }

  const REASONS = {
    "signed-out": "You are signed out.",
    expired: "Your sign-in has expired or the token was not accepted. Sign in again.",
    failed: "Signing in with your company account did not work. Try again.",
  };

  function showSignIn(reason, detail) {
    const p = $("signin-reason");
    p.dataset.reason = reason;
    p.textContent = REASONS[reason] + (detail ? " (" + detail + ")" : "");
    $("signin-idp").hidden = !identityProvider.configured;
    $("signin-token").value = "";
    showScreen("screen-signin", reason === "signed-out" ? null : "signin-title");
  }

  function showForbidden(detail) {
    $("forbidden-detail").textContent = detail || "";
    showScreen("screen-forbidden", "forbidden-title");
  }

  function showSandbox() {
    $("sandbox-banner").hidden = false;
  }

  /**
   * The one renewal a provider session gets when the service refuses its access token (401) before it expires
   * (the provider rotated its signing keys, say): every panel refused with that token waits for the same
   * renewal; a new token reloads the dashboard, and a token refused again, or no new token, ends the session.
   */
  const recovery = { token: null, renewed: null, used: false };

  function handleAuthError(error) {
    const detail = error.problem && error.problem.detail;
    if (error.status !== 401) {
      showForbidden(detail);
      return;
    }
    const refused = session.token;
    if (session.source !== "provider" || (recovery.used && recovery.token !== refused)) {
      expire(detail);
      return;
    }
    if (!recovery.used) {
      recovery.used = true;
      recovery.token = refused;
      recovery.renewed = identityProvider.refresh();
    }
    recovery.renewed.then((token) => {
      if (session.token !== refused) return; // another panel's refusal already settled it
      if (token) {
        session.set(token, "provider");
        loadDashboard();
      } else {
        expire(detail);
      }
    });
  }

  hooks.onAuthError = handleAuthError;
  hooks.onSandbox = showSandbox;

  // ------------------------------------------------------------------------------------------ wiring

  const panels = {
    overview: new Panel("panel-overview", renderers.overview),
    mau: new Panel("panel-mau", renderers.mau),
    funnel: new Panel("panel-funnel", renderers.funnel),
    refunds: new Panel("panel-refunds", renderers.refunds),
    journey: new Panel("panel-journey", renderers.journey),
  };

  /** First day of the month `back` months before `day` (YYYY-MM-DD), by calendar arithmetic on the string. */
  function monthsBefore(day, back) {
    let year = Number(day.slice(0, 4));
    let month = Number(day.slice(5, 7)) - back;
    while (month < 1) {
      month += 12;
      year -= 1;
    }
    return year + "-" + String(month).padStart(2, "0") + "-01";
  }

  function loadRefunds() {
    const payload = {
      start_date: $("refunds-start").value,
      end_date: $("refunds-end").value,
      resolution: $("refunds-resolution").value,
    };
    const segment = $("refunds-segment").value;
    if (segment) payload.segment = segment;
    return panels.refunds.load(() => postJson(API + "/refund-analysis", payload));
  }

  function loadJourney() {
    const user = $("journey-user").value.trim();
    if (!user) return null;
    return panels.journey.load(() => getJson(API + "/user/" + encodeURIComponent(user)));
  }

  async function loadDashboard() {
    showScreen("screen-dashboard");
    for (const panel of Object.values(panels)) panel.clear();
    const overview = panels.overview.load(() => getJson(API + "/overview"));
    panels.mau.load(() => getJson(API + "/mau"));
    panels.funnel.load(() => getJson(API + "/conversion"));
    // The refund range defaults to the service's today (the overview's as_of), not the browser's clock.
    const result = await overview;
    if (!session.token) return;
    const today = (result && result.as_of) || new Date().toISOString().slice(0, 10);
    if (!$("refunds-end").value) $("refunds-end").value = today;
    if (!$("refunds-start").value) $("refunds-start").value = monthsBefore(today, 5);
    $("refunds-end").max = today;
    $("refunds-start").max = today;
    loadRefunds();
    if ($("journey-user").value.trim()) loadJourney();
  }

  /** A new session (not a renewed token): it gets its own renewal after a refusal. */
  function signIn(token, source) {
    session.set(token, source || "pasted");
    recovery.used = false;
    recovery.token = null;
    loadDashboard();
  }

  function clearPanels() {
    for (const panel of Object.values(panels)) panel.clear();
  }

  /** The session ended (token expired, refused, or not renewed): the sign-in screen says so. */
  function expire(detail) {
    const fromProvider = session.source === "provider";
    session.clear();
    clearPanels();
    if (fromProvider) identityProvider.forget();
    showSignIn("expired", detail);
  }

  async function signOut() {
    const fromProvider = session.source === "provider";
    session.clear();
    clearPanels();
    showSignIn("signed-out");
    $("signin-token").focus();
    if (fromProvider) await identityProvider.signOut(); // may leave for the provider's sign-out page
  }

  function rerenderCharts() {
    for (const panel of Object.values(panels)) if (panel.result) panel.show();
  }

  /** How the page starts: a banner link, the provider coming back, a session kept in this tab, or signed out. */
  async function resume() {
    const fragmentToken = takeFragmentToken();
    if (fragmentToken) {
      signIn(fragmentToken);
      identityProvider.init().catch(() => null);
      return;
    }
    let configured = false;
    try {
      configured = await identityProvider.init();
    } catch (_) {
      configured = false; // the library did not load: the paste-a-token path still works
    }
    if (configured) {
      if (identityProvider.isCallback()) {
        try {
          signIn(await identityProvider.completeSignIn(), "provider");
        } catch (error) {
          showSignIn("failed", error && error.message);
        }
        return;
      }
      if (identityProvider.isSignInStart()) {
        await identityProvider.signIn(); // opened from another address of this service to sign in here
        return;
      }
      if (identityProvider.isSignOutReturn()) {
        await identityProvider.completeSignOut();
        showSignIn("signed-out");
        return;
      }
      const token = await identityProvider.currentToken();
      if (token) {
        signIn(token, "provider");
        return;
      }
    }
    const token = session.restore();
    if (token) signIn(token);
    else showSignIn("signed-out");
  }

  function start() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("signin-token").value.trim();
      if (token) signIn(token);
    });
    $("signin-idp-button").addEventListener("click", async () => {
      try {
        await identityProvider.signIn();
      } catch (error) {
        showSignIn("failed", error && error.message);
      }
    });
    identityProvider.onRenewed = (token) => {
      if (session.source !== "provider") return;
      session.renew(token);
      recovery.used = false; // a token renewed ahead of expiry may get its own renewal after a refusal
      recovery.token = null;
    };
    identityProvider.onExpired = () => {
      if (session.source === "provider") expire();
    };
    $("sign-out").addEventListener("click", signOut);
    $("forbidden-switch").addEventListener("click", signOut);
    $("refunds-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadRefunds();
    });
    $("journey-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadJourney();
    });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rerenderCharts);
    window.addEventListener("hashchange", () => {
      const token = takeFragmentToken();
      if (token) signIn(token);
    });
    resume();
  }

  start();
})();
