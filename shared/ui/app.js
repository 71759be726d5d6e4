/* Loop KPI dashboard: calls /api/kpi/* with the user's bearer token and shows the answers with the views of
 * kpi-render.js (shared with the MCP App).
 *
 * The token is only ever sent as an `Authorization: Bearer` header to this origin; no inline script or style
 * (the page runs under a strict CSP).
 */
(function () {
  "use strict";

  const { Panel, renderers, AuthError, ProblemError, StaleError, hooks } = window.LoopKpi;
  const TOKEN_KEY = "loop-kpi.token";
  const API = "/api/kpi";
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------------------------------ sign-in

  /**
   * Seam for production sign-in through the company's identity provider (OIDC authorization code + PKCE, its
   * own issue). When configured, the sign-in screen offers a button that calls `signIn()`, which resolves to a
   * bearer token for this service (or null when the user gave up). Until then tokens come from the URL
   * fragment (the sandbox banner's link) or are pasted into the form.
   */
  const identityProvider = {
    configured: false,
    async signIn() {
      return null;
    },
  };

  const session = {
    token: null,
    generation: 0,
    set(token) {
      this.token = token;
      this.generation += 1;
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (_) {
        /* storage disabled: the token lives in memory for this page only */
      }
    },
    clear() {
      this.token = null;
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

  function handleAuthError(error) {
    if (error.status === 401) {
      session.clear();
      showSignIn("expired", error.problem && error.problem.detail);
    } else {
      showForbidden(error.problem && error.problem.detail);
    }
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

  function signIn(token) {
    session.set(token);
    loadDashboard();
  }

  function signOut() {
    session.clear();
    for (const panel of Object.values(panels)) panel.clear();
    showSignIn("signed-out");
    $("signin-token").focus();
  }

  function rerenderCharts() {
    for (const panel of Object.values(panels)) if (panel.result) panel.show();
  }

  function start() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("signin-token").value.trim();
      if (token) signIn(token);
    });
    $("signin-idp-button").addEventListener("click", async () => {
      const token = await identityProvider.signIn();
      if (token) signIn(token);
    });
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

    const token = takeFragmentToken() || session.restore();
    if (token) signIn(token);
    else showSignIn("signed-out");
  }

  start();
})();
