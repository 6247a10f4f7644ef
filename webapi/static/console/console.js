// The campaign console: signs in (API key or Supabase Auth), prepares a campaign with validar-campana,
// launches it with an Idempotency-Key, watches it and acts on it, all through the same /api routes.
"use strict";

(() => {
  const POLL_MS = 1500; // estado-cola is read at least every 2 s
  const CHART_SAMPLES = 240;
  const REFRESH_MARGIN_S = 60; // a Supabase session is refreshed this long before it expires
  const STORE_KEY = "wcq.consola.credencial";

  const $ = (id) => document.getElementById(id);
  const state = {
    credential: null, // {kind: "key", key} or {kind: "session", access_token, refresh_token, expires_at, refresh_at}
    config: { supabase_url: null, supabase_anon_key: null },
    caller: null,
    refreshTimer: null,
    pollTimer: null,
    pollCampaign: null,
    samples: [],
    prepared: null, // {file, idempotencyKey, valid}
    validating: 0,
    pending: null, // the validation under way, if any
    launching: false,
    page: 1,
  };

  const STATUS_NAMES = {
    queued: "en cola",
    scheduled: "programada",
    running: "enviando",
    waiting: "en espera",
    paused: "pausada",
    cancelled: "cancelada",
    completed: "completada",
    failed: "fallida",
  };
  const ROLE_NAMES = { viewer: "lector", operator: "operador", admin: "administrador" };

  // ------------------------------------------------------------------ helpers

  function show(el, visible) {
    el.hidden = !visible;
  }

  function notice(text, kind) {
    const el = $("aviso");
    el.textContent = text || "";
    el.className = kind === "error" ? "error" : "aviso";
    show(el, Boolean(text));
  }

  function fmt(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("es");
  }

  function pct(part, total) {
    return total ? `${((part * 100) / total).toLocaleString("es", { maximumFractionDigits: 1 })} %` : "0 %";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function headerRow(thead, names) {
    thead.textContent = "";
    const tr = document.createElement("tr");
    for (const name of names) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      tr.appendChild(th);
    }
    thead.appendChild(tr);
  }

  // ------------------------------------------------------------------ credentials

  function saveCredential(credential) {
    state.credential = credential;
    if (credential) sessionStorage.setItem(STORE_KEY, JSON.stringify(credential));
    else sessionStorage.removeItem(STORE_KEY);
    scheduleRefresh();
  }

  function loadCredential() {
    try {
      return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    } catch {
      return null;
    }
  }

  function authHeaders() {
    const c = state.credential;
    if (!c) return {};
    return c.kind === "key" ? { "X-API-Key": c.key } : { Authorization: `Bearer ${c.access_token}` };
  }

  // Supabase Auth's error codes (error_code, or error in older versions) in the operator's words.
  const AUTH_ERRORS = {
    invalid_credentials: "Correo o contraseña incorrectos. Revíselos e intente de nuevo.",
    invalid_grant: "Correo o contraseña incorrectos. Revíselos e intente de nuevo.",
    email_not_confirmed: "Su correo todavía no está confirmado: abra el enlace que le enviaron e intente de nuevo.",
    user_banned: "Su usuario está bloqueado; consulte al administrador.",
    over_request_rate_limit: "Demasiados intentos seguidos; espere un minuto e intente de nuevo.",
  };

  class AuthFailure extends Error {}

  async function supabaseToken(grant, body) {
    const { supabase_url: url, supabase_anon_key: anon } = state.config;
    let res;
    try {
      res = await fetch(`${url}/auth/v1/token?grant_type=${grant}`, {
        method: "POST",
        headers: { apikey: anon, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch {
      throw new AuthFailure(
        "No se pudo contactar al servicio de inicio de sesión. Revise la conexión e intente de nuevo.",
      );
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok || !data.access_token) {
      const code = data.error_code || data.error || (res.status === 429 ? "over_request_rate_limit" : "");
      const other =
        `No se pudo iniciar sesión (error ${code || res.status}). ` + "Intente de nuevo o consulte al administrador.";
      throw new AuthFailure(AUTH_ERRORS[code] || other);
    }
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = data.expires_at || now + (data.expires_in || 3600);
    // Renewed a minute before it expires, or earlier in the token's life when it lives only minutes.
    const margin = Math.min(REFRESH_MARGIN_S, (expiresAt - now) / 4);
    return {
      kind: "session",
      access_token: data.access_token,
      refresh_token: data.refresh_token,
      expires_at: expiresAt,
      refresh_at: expiresAt - margin,
      email: (data.user && data.user.email) || body.email || null,
    };
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    const c = state.credential;
    if (!c || c.kind !== "session" || !c.refresh_token) return;
    const refreshAt = c.refresh_at || c.expires_at - REFRESH_MARGIN_S;
    const wait = Math.max(1, refreshAt - Date.now() / 1000);
    state.refreshTimer = setTimeout(refreshSession, wait * 1000);
  }

  async function refreshSession() {
    const c = state.credential;
    if (!c || c.kind !== "session") return;
    try {
      const renewed = await supabaseToken("refresh_token", { refresh_token: c.refresh_token });
      if (state.credential === c) saveCredential({ ...renewed, email: renewed.email || c.email });
    } catch (err) {
      if (state.credential === c) signOut(`La sesión no se pudo renovar; inicie sesión de nuevo. ${err.message}`);
    }
  }

  function endSupabaseSession(c) {
    // Supabase's sign-out: the session's refresh token stops working. Best effort; the page forgets it anyway.
    const { supabase_url: url, supabase_anon_key: anon } = state.config;
    if (!url || !c || c.kind !== "session") return;
    fetch(`${url}/auth/v1/logout`, {
      method: "POST",
      headers: { apikey: anon, Authorization: `Bearer ${c.access_token}` },
    }).catch(() => {});
  }

  // ------------------------------------------------------------------ API calls

  class ApiFailure extends Error {
    constructor(status, body) {
      super((body && body.message) || `Error HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, options = {}) {
    const headers = { ...authHeaders(), ...(options.headers || {}) };
    let res;
    try {
      res = await fetch(path, { ...options, headers });
    } catch {
      throw new ApiFailure(0, { message: "No se pudo contactar al servidor. Revise la conexión e intente de nuevo." });
    }
    const body = await res.json().catch(() => null);
    const c = state.credential;
    if (res.status === 401 && c && c.kind === "session" && !options.renewed) {
      // A timer that fired late (a sleeping laptop) leaves an expired token: renew it once and ask again.
      await refreshSession();
      if (state.credential && state.credential !== c) return api(path, { ...options, renewed: true });
    }
    if (res.status === 401) {
      signOut((body && body.message) || "Su credencial ya no es válida; inicie sesión de nuevo.");
      throw new ApiFailure(401, body);
    }
    if (!res.ok) throw new ApiFailure(res.status, body);
    return body;
  }

  // ------------------------------------------------------------------ sign-in

  async function signIn(credential) {
    saveCredential(credential);
    try {
      state.caller = await api("/api/yo");
    } catch (err) {
      if (err.status !== 401) signOut(err.message);
      return;
    }
    $("quien-nombre").textContent = state.caller.nombre;
    $("quien-rol").textContent = `${ROLE_NAMES[state.caller.rol] || state.caller.rol} (${state.caller.rol})`;
    show($("quien"), true);
    show($("entrar"), false);
    show($("app"), true);
    const canOperate = state.caller.puede_operar;
    show($("nav-nueva"), canOperate);
    for (const b of document.querySelectorAll("#c-acciones button")) b.dataset.permitido = canOperate ? "1" : "";
    notice("");
    if (canOperate) loadSenders();
    route();
    $("principal").focus(); // the next Tab goes into the page, not back to the hidden sign-in forms
  }

  function signOut(message) {
    stopPolling();
    endSupabaseSession(state.credential);
    saveCredential(null);
    state.caller = null;
    show($("quien"), false);
    show($("app"), false);
    show($("entrar"), true);
    notice(message || "", message ? "error" : undefined);
    $("clave").value = "";
    $("clave").focus();
  }

  // ------------------------------------------------------------------ prepare and launch

  async function loadSenders() {
    const select = $("buzon");
    try {
      const data = await api("/api/buzones");
      select.textContent = "";
      for (const s of data.buzones) {
        const opt = document.createElement("option");
        opt.value = s.buzon;
        opt.textContent = s.messages_per_second ? `${s.buzon} (${s.messages_per_second} msg/s)` : s.buzon;
        select.appendChild(opt);
      }
      if (!data.buzones.length) {
        const opt = document.createElement("option");
        opt.value = "";
        opt.textContent = "Sin buzones disponibles";
        select.appendChild(opt);
      }
    } catch (err) {
      if (err.status !== 401) notice(err.message, "error");
    }
  }

  // An instant as the operator reads it, in the campaign's time zone.
  function localWhen(iso, zone) {
    try {
      return new Date(iso).toLocaleString("es", { timeZone: zone, dateStyle: "medium", timeStyle: "short" });
    } catch {
      return iso;
    }
  }

  function campaignForm() {
    const form = new FormData();
    form.append("titulo_campana", $("titulo").value.trim() || "revision");
    form.append("plantilla", $("plantilla").value.trim());
    form.append("buzon", $("buzon").value);
    form.append("idioma", $("idioma").value.trim() || "es");
    if ($("columna").value.trim()) form.append("columna_telefono", $("columna").value.trim());
    form.append("parametros_nombrados", $("nombrados").checked ? "true" : "false");
    // A datetime-local value has no offset: the API reads it in the campaign's time zone.
    const timing = [["programar", "programar_para"], ["zona-horaria", "zona_horaria"], ["horario", "horario_envio"]];
    for (const [id, field] of timing) {
      if ($(id).value.trim()) form.append(field, $(id).value.trim());
    }
    form.append("archivo_csv", state.prepared.file, state.prepared.file.name);
    return form;
  }

  function formError(text) {
    const el = $("error-campana");
    el.textContent = text || "";
    show(el, Boolean(text));
  }

  function prepareFile(file) {
    if (!file) return;
    // One key per prepared file: launching it twice (a double click, a retry) creates one campaign.
    state.prepared = { file, idempotencyKey: crypto.randomUUID(), valid: false };
    validate();
  }

  function formSignature() {
    const fields = ["buzon", "plantilla", "idioma", "columna", "programar", "zona-horaria", "horario"];
    return fields.map((id) => $(id).value.trim()).join("|") +
      `|${$("nombrados").checked}`;
  }

  function validate() {
    if (!state.prepared) return Promise.resolve();
    const signature = formSignature();
    if (state.pending && state.prepared.signature === signature) return state.pending;
    if (!state.pending && state.prepared.valid && state.prepared.signature === signature) return Promise.resolve();
    state.prepared.signature = signature;
    const pending = checkFile().finally(() => {
      if (state.pending === pending) state.pending = null;
      updateLaunch();
    });
    state.pending = pending;
    updateLaunch();
    return pending;
  }

  async function checkFile() {
    formError("");
    if (!$("plantilla").value.trim()) {
      // validar-campana needs the template name too; without it ask for it instead of sending.
      formError("Escriba el nombre de la plantilla para revisar el archivo.");
      state.prepared.valid = false;
      updateLaunch();
      return;
    }
    const ticket = ++state.validating;
    state.prepared.valid = false;
    updateLaunch();
    $("revision-mensaje").textContent = "Revisando el archivo…";
    show($("revision"), true);
    try {
      const data = await api("/api/validar-campana", { method: "POST", body: campaignForm() });
      if (ticket !== state.validating) return;
      renderValidation(data);
      state.prepared.valid = data.total_messages > 0;
    } catch (err) {
      if (ticket !== state.validating) return;
      show($("revision"), false);
      formError(err.message);
    }
    updateLaunch();
  }

  function renderValidation(data) {
    $("revision-mensaje").textContent = data.message;
    $("rev-columna").textContent = data.columna_telefono;
    $("rev-total").textContent = fmt(data.total_messages);
    $("rev-rechazadas").textContent = fmt(data.total_rechazados);
    $("rev-plantilla").textContent = templateSummary(data.plantilla_whatsapp);
    $("rev-inicio").textContent = data.programada_para
      ? `${localWhen(data.programada_para, data.zona_horaria)} (${data.zona_horaria})`
      : "al lanzar";
    $("rev-horario").textContent = data.horario_envio
      ? `${data.horario_envio} (${data.zona_horaria})`
      : "a cualquier hora";
    $("rev-dias").textContent = fmt(data.dias_estimados);
    const notes = $("rev-notas");
    notes.textContent = "";
    for (const n of data.notas) {
      const li = document.createElement("li");
      li.textContent = n;
      notes.appendChild(li);
    }
    const table = $("rev-filas");
    headerRow(
      table.tHead,
      ["Fila", "Teléfono", ...data.columnas_parametros.map((p) => `${p.parametro} ← ${p.columna}`)],
    );
    const body = table.tBodies[0];
    body.textContent = "";
    for (const row of data.filas) {
      const tr = document.createElement("tr");
      cell(tr, row.fila);
      cell(tr, row.telefono).className = "tel";
      for (const p of row.parametros) cell(tr, p.valor);
      body.appendChild(tr);
    }
    const rejected = $("rev-rechazos-tabla").tBodies[0];
    rejected.textContent = "";
    for (const r of data.rechazados) {
      const tr = document.createElement("tr");
      cell(tr, r.fila);
      cell(tr, r.valor);
      cell(tr, r.motivo);
      rejected.appendChild(tr);
    }
    show($("rev-rechazos"), data.rechazados.length > 0);
  }

  // The template as WhatsApp lists it: category and quality, or why it was not checked (see the notes).
  const CATEGORIES = { marketing: "Marketing", utility: "Utilidad", authentication: "Autenticación" };
  const QUALITY = { GREEN: "alta", YELLOW: "media", RED: "baja", UNKNOWN: "sin calificar" };
  function templateSummary(info) {
    if (!info || !info.verificada) return "sin comprobar (ver notas)";
    const category = CATEGORIES[info.categoria] || info.categoria || "?";
    const quality = QUALITY[info.calidad] || info.calidad || "?";
    return `${category} · calidad ${quality} (${info.calidad})`;
  }

  function updateLaunch() {
    // While a check runs the button stays usable: launching waits for the check's answer.
    const usable = state.prepared && (state.prepared.valid || state.pending);
    $("lanzar").disabled = state.launching || !usable || !$("titulo").value.trim();
  }

  async function launch(event) {
    event.preventDefault();
    if (state.launching || !state.prepared) return;
    state.launching = true;
    await validate();
    state.launching = false;
    if (!state.prepared || !state.prepared.valid) return;
    if (!$("titulo").value.trim()) {
      formError("Escriba un título para la campaña.");
      $("titulo").focus();
      return;
    }
    state.launching = true;
    updateLaunch();
    formError("");
    try {
      const data = await api("/api/crear-campana", {
        method: "POST",
        headers: { "Idempotency-Key": state.prepared.idempotencyKey },
        body: campaignForm(),
      });
      notice(data.message);
      resetPrepare();
      location.hash = `#/campana/${encodeURIComponent(data.campaign_id)}`;
    } catch (err) {
      formError(err.message);
    } finally {
      state.launching = false;
      updateLaunch();
    }
  }

  function resetPrepare() {
    state.prepared = null;
    $("form-campana").reset();
    show($("revision"), false);
  }

  // ------------------------------------------------------------------ campaign list

  async function loadList() {
    const body = $("lista").tBodies[0];
    try {
      const data = await api(`/api/listar-campanas?pagina=${state.page}&por_pagina=20`);
      body.textContent = "";
      for (const c of data.campaigns) {
        const tr = document.createElement("tr");
        const td = cell(tr, "");
        const a = document.createElement("a");
        a.href = `#/campana/${encodeURIComponent(c.id)}`;
        a.textContent = c.titulo || c.id;
        td.appendChild(a);
        const shown = cell(tr, STATUS_NAMES[c.status] || c.status);
        if (["scheduled", "waiting"].includes(c.status) && c.motivo) {
          // Until when it waits, under its status (a scheduled start, quiet hours, the daily limit).
          const why = document.createElement("small");
          why.className = "espera";
          why.textContent = c.motivo;
          shown.appendChild(why);
        }
        cell(tr, `${c.progress} %`);
        cell(tr, fmt(c.sent));
        cell(tr, fmt(c.failed));
        cell(tr, c.buzon);
        cell(tr, c.creado_por || "");
        body.appendChild(tr);
      }
      if (!data.campaigns.length) {
        const tr = document.createElement("tr");
        cell(tr, "Todavía no hay campañas.").colSpan = 7;
        body.appendChild(tr);
      }
      const pages = Math.max(1, Math.ceil(data.total_campaigns / data.por_pagina));
      $("pagina").textContent = `Página ${data.pagina} de ${pages}`;
      $("anterior").disabled = data.pagina <= 1;
      $("siguiente").disabled = data.pagina >= pages;
    } catch (err) {
      if (err.status !== 401) notice(err.message, "error");
    }
  }

  // ------------------------------------------------------------------ one campaign

  function stopPolling() {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
    state.pollCampaign = null;
  }

  function watch(campaignId) {
    stopPolling();
    state.pollCampaign = campaignId;
    state.samples = [];
    $("campana-titulo").textContent = campaignId;
    $("c-resultado").hidden = true;
    const exportLink = $("c-exportar");
    exportLink.href = `/api/campanas/${encodeURIComponent(campaignId)}/resultados.csv`;
    exportLink.download = `${campaignId}-resultados.csv`;
    poll();
  }

  async function poll() {
    const id = state.pollCampaign;
    if (!id) return;
    try {
      const data = await api(`/api/estado-cola/${encodeURIComponent(id)}`);
      if (id !== state.pollCampaign) return;
      renderStatus(data);
    } catch (err) {
      if (id !== state.pollCampaign) return;
      if (err.status === 401) return;
      notice(err.message, "error");
      if (err.status === 404) return stopPolling();
    }
    if (id === state.pollCampaign) state.pollTimer = setTimeout(poll, POLL_MS);
  }

  function renderStatus(s) {
    $("campana-titulo").textContent = s.titulo ? `${s.titulo} (${s.campaign_id})` : s.campaign_id;
    $("c-estado").textContent = STATUS_NAMES[s.status] || s.status || "–";
    $("c-estado").dataset.estado = s.status || "";
    $("c-creador").textContent = s.creado_por || "–";
    $("c-eta").textContent = s.status === "running" ? duration(s.eta_seconds) : s.pending ? "–" : "terminada";
    const reason = $("c-motivo");
    reason.textContent = s.motivo ? `Motivo: ${s.motivo}` : "";
    show(reason, Boolean(s.motivo));
    $("c-barra").value = s.progress;
    $("c-progreso").textContent = `${s.progress.toLocaleString("es")} %`;
    const total = s.total;
    const figure = (id, value, share) => {
      const el = $(id);
      el.textContent = fmt(value);
      if (share !== undefined) {
        const small = document.createElement("small");
        small.textContent = ` ${share}`;
        el.appendChild(small);
      }
    };
    figure("c-total", total);
    figure("c-pendientes", s.pending);
    figure("c-enviados", s.sent, pct(s.sent, total));
    figure("c-fallidos", s.failed, pct(s.failed, total));
    figure("c-desconocidos", s.unknown, pct(s.unknown, total));
    figure("c-diferidos", s.deferred || 0, pct(s.deferred || 0, total));
    figure("c-bajas", s.suppressed || 0, pct(s.suppressed || 0, total));
    figure("c-entregados", s.delivered, `${s.delivery_rate.toLocaleString("es")} %`);
    figure("c-leidos", s.read, `${s.read_rate.toLocaleString("es")} %`);
    figure("c-velocidad", s.messages_per_second);
    figure("c-retenidos", s.held || 0, pct(s.held || 0, total));
    const billable = Object.entries(s.facturables || {});
    figure("c-facturables", s.total_facturables || 0);
    if (billable.length) {
      const small = document.createElement("small");
      small.textContent = " " + billable.map(([category, n]) => `${category}: ${fmt(n)}`).join(", ");
      $("c-facturables").appendChild(small);
    }
    show($("c-costo-cifra"), Boolean(s.costo));
    $("c-costo").textContent = s.costo
      ? `${s.costo.total.toLocaleString("es", { maximumFractionDigits: 4 })} ${s.costo.moneda}`
      : "";

    const errors = $("c-errores-tabla").tBodies[0];
    errors.textContent = "";
    for (const e of s.errores) {
      const tr = document.createElement("tr");
      cell(tr, e.codigo);
      cell(tr, fmt(e.cantidad));
      cell(tr, e.descripcion + (e.detalle ? ` (${e.detalle})` : ""));
      errors.appendChild(tr);
    }
    show($("c-errores"), s.errores.length > 0);

    state.samples.push({ t: Date.now(), rate: s.messages_per_second || 0 });
    if (state.samples.length > CHART_SAMPLES) state.samples.shift();
    drawChart();
    updateActions(s);
  }

  function updateActions(s) {
    const allowed = Boolean(state.caller && state.caller.puede_operar);
    const open = !["cancelled", "completed"].includes(s.status);
    const enable = {
      pausar: ["queued", "running", "waiting"].includes(s.status),
      reanudar: s.status === "paused" || s.status === "failed",
      cancelar: open,
      "reintentar-fallidos": s.status !== "cancelled" && s.failed > 0,
      "reintentar-desconocidos": s.status !== "cancelled" && s.unknown > 0,
    };
    for (const b of document.querySelectorAll("#c-acciones button")) {
      b.disabled = !allowed || !enable[b.dataset.accion];
    }
  }

  function drawChart() {
    const canvas = $("c-grafico");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 640;
    const height = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const pad = { left: 40, right: 8, top: 10, bottom: 20 };
    const w = width - pad.left - pad.right;
    const h = height - pad.top - pad.bottom;
    const samples = state.samples;
    const max = Math.max(1, ...samples.map((p) => p.rate));
    ctx.strokeStyle = "#d5d9de";
    ctx.fillStyle = "#5b6470";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = pad.top + (h * i) / 2;
      ctx.beginPath();
      ctx.moveTo(pad.left, y);
      ctx.lineTo(pad.left + w, y);
      ctx.stroke();
      ctx.fillText(((max * (2 - i)) / 2).toLocaleString("es", { maximumFractionDigits: 1 }), 4, y + 4);
    }
    if (samples.length > 1) {
      const t0 = samples[0].t;
      const span = Math.max(1, samples[samples.length - 1].t - t0);
      ctx.strokeStyle = "#1f7a4d";
      ctx.lineWidth = 2;
      ctx.beginPath();
      samples.forEach((p, i) => {
        const x = pad.left + ((p.t - t0) / span) * w;
        const y = pad.top + h - (p.rate / max) * h;
        if (i === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = "#5b6470";
      ctx.fillText(`hace ${duration(span / 1000)}`, pad.left, height - 4);
    }
  }

  const ACTIONS = {
    pausar: {
      title: "Pausar la campaña",
      text: "Los mensajes en curso terminan y no se envían más hasta reanudarla.",
      path: (id) => `/api/pausar-campana/${id}`,
    },
    reanudar: {
      title: "Reanudar la campaña",
      text: "Se vuelven a enviar los mensajes pendientes.",
      path: (id) => `/api/reanudar-campana/${id}`,
    },
    cancelar: {
      title: "Cancelar la campaña",
      text: "Los mensajes pendientes no se enviarán. Una campaña cancelada no se puede reanudar.",
      path: (id) => `/api/cancelar-campana/${id}`,
    },
    "reintentar-fallidos": {
      title: "Reintentar los fallidos",
      text: "Los mensajes fallidos vuelven a la cola.",
      path: (id) => `/api/reintentar-campana/${id}`,
      body: { estados: ["failed"] },
    },
    "reintentar-desconocidos": {
      title: "Reintentar los desconocidos",
      text: "Los mensajes cuyo resultado no se conoce vuelven a la cola.",
      warning:
        "Atención: de un mensaje desconocido no se sabe si WhatsApp lo recibió; reintentarlo puede hacer que " +
        "el destinatario lo reciba dos veces.",
      path: (id) => `/api/reintentar-campana/${id}`,
      body: { estados: ["unknown"] },
    },
  };

  function confirmDialog(action) {
    const dialog = $("confirmar");
    $("confirmar-titulo").textContent = action.title;
    $("confirmar-texto").textContent = action.text;
    $("confirmar-advertencia").textContent = action.warning || "";
    show($("confirmar-advertencia"), Boolean(action.warning));
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirmar-si").removeEventListener("click", yes);
        $("confirmar-no").removeEventListener("click", no);
        dialog.removeEventListener("close", no);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const yes = () => done(true);
      const no = () => done(false);
      $("confirmar-si").addEventListener("click", yes);
      $("confirmar-no").addEventListener("click", no);
      dialog.addEventListener("close", no); // Escape closes it too
      dialog.showModal();
      $("confirmar-no").focus();
    });
  }

  async function act(name, button) {
    const id = state.pollCampaign;
    const action = ACTIONS[name];
    if (!id || !action) return;
    if (!(await confirmDialog(action))) {
      button.focus();
      return;
    }
    const result = $("c-resultado");
    const options = { method: "POST" };
    if (action.body) {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(action.body);
    }
    button.disabled = true;
    try {
      const data = await api(action.path(encodeURIComponent(id)), options);
      result.className = "aviso";
      result.textContent = data.message;
    } catch (err) {
      result.className = "error";
      result.textContent = err.message;
    }
    show(result, true);
    button.focus();
    clearTimeout(state.pollTimer);
    poll();
  }

  async function download(event) {
    event.preventDefault();
    const link = event.currentTarget;
    const result = $("c-resultado");
    try {
      const res = await fetch(link.href, { headers: authHeaders() });
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        throw new Error((body && body.message) || `Error HTTP ${res.status}`);
      }
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = link.download || "resultados.csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      result.className = "error";
      result.textContent = `No se pudo descargar: ${err.message}`;
      show(result, true);
    }
  }

  // ------------------------------------------------------------------ routing

  function route() {
    if (!state.caller) return;
    const hash = location.hash || "";
    const match = hash.match(/^#\/campana\/(.+)$/);
    let view = "campanas";
    if (match) view = "campana";
    else if (hash === "#/nueva" || (hash === "" && state.caller.puede_operar)) view = "nueva";
    if (view === "nueva" && !state.caller.puede_operar) view = "campanas";
    show($("vista-nueva"), view === "nueva");
    show($("vista-campanas"), view === "campanas");
    show($("vista-campana"), view === "campana");
    $("nav-nueva").toggleAttribute("aria-current", false);
    $("nav-campanas").toggleAttribute("aria-current", false);
    if (view !== "campana") $(`nav-${view}`).setAttribute("aria-current", "page");
    if (view === "campana") watch(decodeURIComponent(match[1]));
    else stopPolling();
    if (view === "campanas") loadList();
  }

  // ------------------------------------------------------------------ start

  async function start() {
    $("form-clave").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("clave").value.trim();
      if (!key) {
        notice("Escriba la clave de API.", "error");
        $("clave").focus();
        return;
      }
      signIn({ kind: "key", key });
    });
    $("form-email").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const session = await supabaseToken("password", {
          email: $("email").value.trim(),
          password: $("password").value,
        });
        $("password").value = "";
        signIn(session);
      } catch (err) {
        notice(err.message, "error");
        $("password").select();
        $("password").focus();
      }
    });
    $("salir").addEventListener("click", () => signOut());
    $("form-campana").addEventListener("submit", launch);
    $("archivo").addEventListener("change", (e) => prepareFile(e.target.files[0]));
    $("revisar").addEventListener("click", () => {
      if (state.prepared) {
        state.prepared.valid = false;
        state.prepared.signature = null;
        validate();
      }
      else formError("Elija primero un archivo CSV.");
    });
    for (const id of ["buzon", "nombrados"]) $(id).addEventListener("change", validate);
    for (const id of ["plantilla", "idioma", "columna", "programar", "zona-horaria", "horario"]) {
      $(id).addEventListener("change", validate);
    }
    $("titulo").addEventListener("input", updateLaunch);
    const zone = $("zona");
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("encima");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("encima"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("encima");
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) prepareFile(file);
    });
    $("refrescar").addEventListener("click", loadList);
    $("anterior").addEventListener("click", () => {
      state.page = Math.max(1, state.page - 1);
      loadList();
    });
    $("siguiente").addEventListener("click", () => {
      state.page += 1;
      loadList();
    });
    for (const b of document.querySelectorAll("#c-acciones button")) {
      b.addEventListener("click", () => act(b.dataset.accion, b));
    }
    $("c-exportar").addEventListener("click", download);
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", drawChart);

    try {
      const res = await fetch("/consola/config.json");
      if (res.ok) state.config = await res.json();
    } catch {
      // without the configuration only API keys are offered
    }
    show($("form-email"), Boolean(state.config.supabase_url && state.config.supabase_anon_key));
    const saved = loadCredential();
    if (saved) {
      const refreshAt = saved.refresh_at || saved.expires_at - REFRESH_MARGIN_S;
      if (saved.kind === "session" && refreshAt <= Date.now() / 1000) {
        state.credential = saved;
        await refreshSession();
        if (state.credential) signIn(state.credential);
      } else {
        signIn(saved);
      }
    } else {
      show($("entrar"), true);
      $("clave").focus();
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
