"""What the API does with campaigns, as plain functions over the runtime (no HTTP here)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import redis

from tasks import costs, metrics, texts
from tasks.errors import describe
from tasks.pipeline import CampaignNotFound, InvalidTransition
from tasks.portfolio import estimate_days, limit_text
from tasks.runtime import Runtime
from tasks.scheduling import SendWindow, local_text, parse_start, zone
from tasks.store.base import EXPORT_PAGE_SIZE, Sender
from tasks.vocabulary import COUNTERS, SETTLED_RECIPIENT_STATUSES, CampaignStatus
from webapi import exports
from webapi.access import Caller
from webapi.contacts import Contact, ContactsError, ContactStream, RichColumn, mask_value, open_csv, open_records
from webapi.errors import MAX_ID_LENGTH, ApiError
from webapi.templates import TemplateReview, review_template

log = logging.getLogger("webapi")

MAX_REJECTED_STORED = 10_000
#: Accepted rows a validation shows, as they would be sent.
PREVIEW_ROWS = 10
# What slugify (plus the store's "-2" suffixes) can produce; anything else cannot name a campaign.
_CAMPAIGN_ID = re.compile(rf"[a-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


def slugify(title: str) -> str:
    """A readable id from the campaign title: 'Promo Enero 2026!' -> 'promo-enero-2026'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80].strip("-")
    return slug or "campana"


def open_contacts(runtime: Runtime, form: dict, upload) -> ContactStream:
    """Check the uploaded CSV or the JSON contact list as a whole, turning problems into 4xx errors.

    The rows themselves are read later, while they are stored.
    """
    s = runtime.settings
    options = dict(
        default_region=s.default_region,
        phone_column=form["columna_telefono"],
        named_params=form["parametros_nombrados"],
        max_contacts=s.max_messages_per_campaign,
        max_param_length=s.max_param_length,
    )
    try:
        if upload is not None:
            upload.stream.seek(0, 2)
            size = upload.stream.tell()
            upload.stream.seek(0)
            if size > s.max_csv_bytes:
                raise ApiError(
                    413,
                    texts.CSV_TOO_LARGE.format(size_mb=size / 1048576, limit_mb=s.max_csv_size_mb),
                    {"max_csv_size_mb": s.max_csv_size_mb},
                )
            return open_csv(upload.stream, **options)
        if form["contactos"] is not None:
            return open_records(form["contactos"], **options)
    except ContactsError as exc:
        raise ApiError(422, exc.message, exc.details) from None
    raise ApiError(400, texts.FILE_OR_CONTACTS_MISSING, {"field": "archivo_csv"})


def check_campaign_id(campaign_id: str) -> None:
    """Refuse, before any store or Redis call, an id no campaign can have (NUL, quotes, slashes, 5,000 chars)."""
    if not _CAMPAIGN_ID.fullmatch(campaign_id):
        raise ApiError(
            404, texts.CAMPAIGN_ID_INVALID.format(max_length=MAX_ID_LENGTH), {"campaign_id_length": len(campaign_id)}
        )


def rejected_report(contacts: ContactStream) -> list[dict]:
    """The rejected rows in the API's Spanish field names."""
    return [{"fila": r.row, "valor": r.value, "motivo": r.reason} for r in contacts.rejected]


def check_sender(store, form: dict, caller: Caller) -> Sender:
    """Refuse a buzón the caller may not use (403) or that is not registered (422); return its credentials."""
    if not caller.may_use(form["buzon"]):
        allowed = caller.scope or []
        raise ApiError(
            403,
            texts.SENDER_NOT_ALLOWED.format(buzon=form["buzon"], allowed=", ".join(allowed) or texts.NO_SENDERS),
            {"field": "buzon", "buzones": allowed},
        )
    sender = store.get_sender(form["buzon"])
    if sender is None:
        # Only the buzones this caller may use: the full list would tell anyone every sender of the company.
        known = [s["buzon"] for s in list_senders(store, caller.scope)["buzones"]]
        raise ApiError(
            422,
            texts.SENDER_UNKNOWN.format(buzon=form["buzon"], known=", ".join(known) or texts.NO_SENDERS),
            {"field": "buzon", "buzones": known},
        )
    return sender


def review_upload(runtime: Runtime, sender: Sender, form: dict, contacts: ContactStream) -> TemplateReview:
    """Check the template and plan its header and buttons before any row is read; a refusal closes the upload."""
    try:
        review = review_template(runtime, sender, form, contacts)
    except BaseException:
        contacts.close()
        raise
    contacts.require_links(review.link_columns)
    return review


def campaign_timing(runtime: Runtime, form: dict) -> dict:
    """The campaign's time zone, sending window and start (None: now) from the form, or a 422 saying what to fix."""
    s = runtime.settings
    zone_name = (form.get("zona_horaria") or "").strip() or s.default_time_zone
    try:
        tz = zone(zone_name)
    except ValueError:
        raise ApiError(422, texts.TIME_ZONE_UNKNOWN.format(zone=zone_name[:100]), {"field": "zona_horaria"}) from None
    window_text = s.send_window if form.get("horario_envio") is None else form["horario_envio"]
    try:
        window = SendWindow.parse(window_text)
    except ValueError as exc:
        raise ApiError(422, str(exc), {"field": "horario_envio"}) from None
    start = None
    if (form.get("programar_para") or "").strip():
        start = check_start(runtime, form["programar_para"], tz)
    return {"tz": tz, "time_zone": tz.key, "send_window": window.text if window else "", "start": start}


def check_start(runtime: Runtime, value: str, tz) -> datetime:
    """programar_para as an aware time in the future (within MAX_SCHEDULE_DAYS), or a 422."""
    try:
        start = parse_start(value, tz)
    except ValueError as exc:
        raise ApiError(422, str(exc), {"field": "programar_para"}) from None
    now = datetime.now(UTC)
    if start <= now:
        raise ApiError(422, texts.SCHEDULE_IN_PAST.format(at=local_text(start, tz)), {"field": "programar_para"})
    days = runtime.settings.max_schedule_days
    if start > now + timedelta(days=days):
        raise ApiError(
            422, texts.SCHEDULE_TOO_FAR.format(at=local_text(start, tz), days=days), {"field": "programar_para"}
        )
    return start.astimezone(UTC)


def daily_limit(runtime: Runtime, buzon: str, total: int) -> tuple[int, dict | None, str | None]:
    """How many days `total` recipients take at the buzón's portfolio limit now, the limit's figures, and a
    note when it takes more than one day."""
    sender = runtime.store.get_sender(buzon)
    if sender is None or sender.portfolio_id is None:
        return 1, None, None
    limit = sender.messaging_limit
    try:
        used: int | None = runtime.budget.used(sender.portfolio_id) if limit is not None else 0
    except redis.RedisError:  # the count cannot be read now: the estimate assumes the whole limit is free
        used = None
    available = None if limit is None or used is None else max(0, limit - used)
    figures = {"portafolio": sender.portfolio_id, "limite": limit, "usados_24h": used, "disponibles": available}
    days = estimate_days(total, limit, used or 0)
    note = None
    if days > 1:
        note = texts.DAYS_ESTIMATE_NOTE.format(
            portfolio=sender.portfolio_id,
            limit=limit_text(limit),
            available=limit_text(available) if available is not None else "?",
            days=days,
        )
    return days, figures, note


def create_campaign(runtime: Runtime, form: dict, upload, idempotency_key: str | None, caller: Caller) -> dict:
    """Validate, store and start a campaign; nothing is stored or enqueued when any step fails."""
    store = runtime.store
    sender = check_sender(store, form, caller)
    timing = campaign_timing(runtime, form)
    contacts = open_contacts(runtime, form, upload)
    contacts.exclude(store.suppressed_phones(form["buzon"]), texts.ROW_SUPPRESSED)
    review = review_upload(runtime, sender, form, contacts)
    start = timing["start"]
    campaign = {
        "id": slugify(form["titulo_campana"]),
        "title": form["titulo_campana"],
        "template": form["plantilla"],
        "language": form["idioma"],
        "buzon": form["buzon"],
        "named_params": form["parametros_nombrados"],
        "batch_size": runtime.settings.batch_size,
        "chunk_size": min(runtime.settings.chunk_size, runtime.settings.batch_size),
        "idempotency_key": idempotency_key,
        "created_by": caller.label,
        "template_plan": review.plan,
        "retry_deferred": form["reintentar_diferidos"],
        "time_zone": timing["time_zone"],
        "send_window": timing["send_window"],
        "scheduled_for": start.isoformat() if start else None,
        "status_reason": texts.SCHEDULED_FOR.format(at=local_text(start, timing["tz"])) if start else None,
    }
    # Rows are validated while they are copied into the store, so a 50 MB file is never held in memory;
    # a problem found half-way (too many contacts, none valid) rolls the whole campaign back.
    leads = ({"phone": c.phone, "parameters": c.params} for c in contacts)
    try:
        with contacts:
            stored = store.create_campaign(
                campaign, leads, lambda: {"rejected_rows": rejected_report(contacts)[:MAX_REJECTED_STORED]}
            )
            # With the same Idempotency-Key nothing is stored again, but the answer reports the file as before.
            contacts.finish()
    except ContactsError as exc:
        metrics.UPLOADS.labels("refused").inc()
        raise ApiError(422, exc.message, exc.details) from None
    report = rejected_report(contacts)
    campaign_id = stored["id"]
    metrics.UPLOADS.labels("created" if stored["created"] else "duplicate").inc()
    if stored["created"]:
        metrics.UPLOAD_ROWS.labels("accepted").inc(stored["total"])
        metrics.UPLOAD_ROWS.labels("rejected").inc(len(report))
    # Estimated before the start: once workers send, the campaign's own recipients would count as places taken.
    days, figures, days_note = daily_limit(runtime, form["buzon"], stored["total"])
    if stored["created"]:
        try:
            runtime.pipeline.start(campaign_id)
        except Exception as exc:
            log.error("Campaign %s could not be enqueued (%s); removing it", campaign_id, type(exc).__name__)
            store.delete_campaign(campaign_id)
            raise ApiError(503, texts.QUEUE_UNAVAILABLE, {"error": type(exc).__name__}) from exc
        message = texts.CAMPAIGN_CREATED.format(total=stored["total"])
        if start:
            message += texts.CAMPAIGN_SCHEDULED_NOTE.format(at=local_text(start, timing["tz"]))
    else:
        message = texts.CAMPAIGN_ALREADY_CREATED
    if report:
        message += texts.ROWS_EXCLUDED.format(count=len(report))
    live = runtime.state.fields(campaign_id)
    return {
        "success": True,
        "message": message + ".",
        "campaign_id": campaign_id,
        "total_messages": stored["total"],
        "status": live.get("status") or "queued",
        "duplicate_request": not stored["created"],
        "total_rechazados": len(report),
        "rechazados": report,
        "notas": review.notes + contacts.notes + ([days_note] if days_note else []),
        "plantilla_whatsapp": review.info,
        "motivo": live.get("reason") or None,
        "programada_para": live.get("scheduled_for") or None,
        "zona_horaria": live.get("time_zone") or timing["time_zone"],
        "horario_envio": live.get("send_window", timing["send_window"]),
        "dias_estimados": days,
        "limite_diario": figures,
    }


def parameter_labels(contacts: ContactStream, named: bool) -> list[str]:
    """How the template names each parameter column: {{1}}, {{2}}... in column order, or the column's name."""
    columns = contacts.parameter_columns
    return list(columns) if named else [f"{{{{{i}}}}}" for i in range(1, len(columns) + 1)]


def validate_campaign(runtime: Runtime, form: dict, upload, caller: Caller, full_phones: bool = True) -> dict:
    """Read an upload exactly as create_campaign does and say what would be sent, storing and sending nothing."""
    sender = check_sender(runtime.store, form, caller)
    timing = campaign_timing(runtime, form)
    contacts = open_contacts(runtime, form, upload)
    contacts.exclude(runtime.store.suppressed_phones(form["buzon"]), texts.ROW_SUPPRESSED)
    review = review_upload(runtime, sender, form, contacts)
    named = form["parametros_nombrados"]
    labels = parameter_labels(contacts, named)
    rich_labels = [(rich_label(c), c.name) for c in contacts.rich_columns]
    preview: list[Contact] = []
    by_code: Counter[str | None] = Counter()  # recipients per country calling code, for the cost estimate
    try:
        with contacts:
            for contact in contacts:
                by_code[costs.calling_code(contact.phone)] += 1
                if len(preview) < PREVIEW_ROWS:
                    preview.append(contact)
    except ContactsError as exc:
        raise ApiError(422, exc.message, exc.details) from None
    rows = []
    body_count = len(contacts.parameter_columns)
    for contact in preview:
        params = contact.params
        if isinstance(params, dict):
            values = [params.get(c, "") for c in contacts.parameter_columns]
            rich_values = [params.get(c, "") for _, c in rich_labels]
        else:
            values, rich_values = params[:body_count], params[body_count:]
        rows.append(
            {
                "fila": contact.row,
                "telefono": contact.phone if full_phones else mask_value(contact.phone),
                "parametros": [
                    {"parametro": label, "columna": column, "valor": value}
                    for label, column, value in zip(labels, contacts.parameter_columns, values, strict=False)
                ]
                + [
                    {"parametro": label, "columna": column, "valor": value}
                    for (label, column), value in zip(rich_labels, rich_values, strict=False)
                ],
            }
        )
    report = rejected_report(contacts)
    message = texts.CAMPAIGN_VALIDATED.format(total=contacts.accepted)
    if report:
        message += texts.ROWS_EXCLUDED.format(count=len(report))
    days, figures, days_note = daily_limit(runtime, form["buzon"], contacts.accepted)
    start = timing["start"]
    estimate, cost_notes = cost_estimate(runtime, form, by_code, review.info.get("categoria"))
    return {
        "success": True,
        "message": message + ".",
        "columna_telefono": contacts.phone_column,
        "columnas_parametros": [
            {"parametro": label, "columna": column}
            for label, column in [*zip(labels, contacts.parameter_columns, strict=False), *rich_labels]
        ],
        "parametros_nombrados": named,
        "codificacion": contacts.encoding,
        "separador": contacts.delimiter,
        "total_messages": contacts.accepted,
        "total_rechazados": len(report),
        "filas": rows,
        "rechazados": report[:MAX_REJECTED_STORED],
        "notas": review.notes + contacts.notes + cost_notes + ([days_note] if days_note else []),
        "plantilla_whatsapp": review.info,
        "costo_estimado": estimate,
        "programada_para": start.isoformat() if start else None,
        "zona_horaria": timing["time_zone"],
        "horario_envio": timing["send_window"],
        "dias_estimados": days,
        "limite_diario": figures,
    }


def rich_label(column: RichColumn) -> str:
    """How validar-campana names what a header or button column fills."""
    if column.kind == "header":
        return texts.PREVIEW_HEADER
    if column.kind == "filename":
        return texts.PREVIEW_FILENAME
    return texts.PREVIEW_BUTTON.format(index=column.index, kind=texts.BUTTON_KIND_NAMES[column.kind])


def rate_card(runtime: Runtime) -> costs.RateCard | None:
    """The rate card of RATE_CARD_FILE, or None when there is none or it cannot be read (estado-sistema says why)."""
    try:
        return costs.load_rate_card(runtime.settings.rate_card_file)
    except costs.RateCardError:
        return None


def cost_estimate(
    runtime: Runtime, form: dict, by_code: Counter, template_category: str | None = None
) -> tuple[dict | None, list[str]]:
    """The cost of sending to these recipients at the rate card's prices, and notes on what it assumed.

    The category is the template's as WhatsApp reports it when a template check gave one, else the form's
    `categoria`, else marketing (the dearest, so an estimate never falls short).
    """
    try:
        card = costs.load_rate_card(runtime.settings.rate_card_file)
    except costs.RateCardError as exc:
        return None, [str(exc)]
    if card is None:
        return None, []
    if template_category:
        category, note = template_category.lower(), texts.NOTE_COST_CATEGORY_TEMPLATE
    elif form.get("categoria"):
        category, note = form["categoria"], texts.NOTE_COST_CATEGORY_FORM
    else:
        category, note = costs.DEFAULT_CATEGORY, texts.NOTE_COST_CATEGORY_DEFAULT
    result = costs.estimate(card, by_code, category)
    notes = [note.format(category=category)]
    if result["sin_tarifa"]:
        notes.append(
            texts.NOTE_COST_NO_RATE.format(
                category=category,
                count=sum(result["sin_tarifa"].values()),
                codes=", +".join(sorted(result["sin_tarifa"])),
            )
        )
    return result, notes


def describe_caller(caller: Caller) -> dict:
    """Who the caller is, as the console shows it."""
    return {
        "success": True,
        "tipo": caller.kind,
        "id": caller.id,
        "email": caller.email,
        "nombre": caller.label,
        "rol": caller.role,
        "buzones": caller.scope,
        "puede_operar": caller.can("operator"),
    }


def _not_found(campaign_id: str) -> ApiError:
    """The answer for a campaign that does not exist, or that the caller may not see (the two look alike)."""
    return ApiError(404, texts.CAMPAIGN_NOT_FOUND.format(campaign_id=campaign_id), {"campaign_id": campaign_id})


def check_scope(runtime: Runtime, campaign_id: str, scope: list[str] | None) -> None:
    """404 when a caller limited to some buzones asks for a campaign of another one."""
    if scope is None:
        return
    buzon = runtime.state.fields(campaign_id).get("buzon")
    if not buzon:
        row = runtime.store.get_campaign(campaign_id)
        buzon = row["buzon"] if row else None
    if buzon not in scope:
        raise _not_found(campaign_id)


def queue_status(runtime: Runtime, campaign_id: str, scope: list[str] | None = None) -> dict:
    """A campaign's live counters and status, read from Redis."""
    check_campaign_id(campaign_id)
    try:
        snapshot = live_snapshot(runtime, campaign_id)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    if scope is not None and snapshot[0].get("buzon") not in scope:
        raise _not_found(campaign_id)
    return summarize(campaign_id, *snapshot, card=rate_card(runtime))


def live_snapshot(runtime: Runtime, campaign_id: str) -> tuple[dict, float, list[dict], int]:
    """The campaign's Redis state in one round trip, rebuilt from the store first if Redis lost it."""
    snapshot = runtime.state.snapshot(campaign_id)
    if snapshot[0]:
        return snapshot
    runtime.pipeline.ensure_live_state(campaign_id)
    return runtime.state.snapshot(campaign_id)


def summarize(
    campaign_id: str,
    fields: dict[str, str],
    rate: float,
    error_rows: list[dict],
    in_flight: int,
    card: costs.RateCard | None = None,
) -> dict:
    """Turn a campaign's Redis state into the figures the front end shows (with the cost so far, given a card)."""
    counts = {k: int(fields.get(k) or 0) for k in ("total", *COUNTERS)}
    settled = sum(counts[k] for k in SETTLED_RECIPIENT_STATUSES)
    # Deferred recipients (131049) wait for their retry: neither pending nor processed yet.
    pending = max(0, counts["total"] - settled - counts["deferred"])
    unsettled = pending + counts["deferred"]
    progress = 100.0 if unsettled == 0 else round(min(settled, counts["total"]) * 100 / counts["total"], 1)
    running = fields.get("status") == CampaignStatus.RUNNING
    eta = round(pending / rate) if running and rate > 0 else (0 if pending == 0 else None)
    errors = [
        {
            "codigo": e["code"],
            "cantidad": e["count"],
            "detalle": e["detail"],
            "descripcion": describe(int(e["code"]) if e["code"].isdigit() else None, e["detail"]),
        }
        for e in error_rows
    ]
    billable = costs.billable_counts(fields)
    return {
        "success": True,
        "campaign_id": campaign_id,
        "titulo": fields.get("title") or None,
        "status": fields.get("status"),
        "motivo": fields.get("reason") or None,
        "programada_para": fields.get("scheduled_for") or None,
        "reanuda_en": fields.get("resume_at") or None,
        "zona_horaria": fields.get("time_zone") or None,
        "horario_envio": fields.get("send_window") if "send_window" in fields else None,
        "pending": pending,
        "progress": progress,
        **counts,
        "errores": errors,
        "eta_seconds": eta,
        "delivery_rate": round(counts["delivered"] * 100 / counts["sent"], 1) if counts["sent"] else 0.0,
        "read_rate": round(counts["read"] * 100 / counts["sent"], 1) if counts["sent"] else 0.0,
        "last_delivered_at": _iso(fields.get("last_delivered_at")),
        "last_read_at": _iso(fields.get("last_read_at")),
        "messages_per_second": round(rate, 1),
        "batches_in_flight": in_flight,
        "created_at": fields.get("created_at") or None,
        "started_at": fields.get("started_at") or None,
        "finished_at": fields.get("finished_at") or None,
        "creado_por": fields.get("created_by") or None,
        "facturables": costs.by_category(billable),
        "total_facturables": sum(billable.values()),
        "costo": costs.spent(card, billable) if card is not None else None,
    }


def _iso(epoch: str | None) -> str | None:
    """A Unix-seconds field as an ISO timestamp."""
    if not epoch:
        return None
    return datetime.fromtimestamp(int(epoch), UTC).isoformat()


def list_campaigns(runtime: Runtime, page: int, per_page: int, scope: list[str] | None = None) -> dict:
    """A page of campaigns, newest first, each with its live counters (only of the `scope` buzones if given)."""
    rows, total = runtime.store.list_campaigns(per_page, (page - 1) * per_page, scope)
    card = rate_card(runtime)
    campaigns = []
    for row in rows:
        summary = summarize(row["id"], *live_snapshot(runtime, row["id"]), card=card)
        del summary["success"], summary["campaign_id"]
        summary.update(
            id=row["id"],
            titulo=row["title"],
            plantilla=row["template"],
            buzon=row["buzon"],
            idioma=row["language"],
            creado_por=row.get("created_by"),
        )
        campaigns.append(summary)
    return {"success": True, "campaigns": campaigns, "total_campaigns": total, "pagina": page, "por_pagina": per_page}


_ACTIONS = {
    "pausar": ("pause", texts.CAMPAIGN_PAUSED),
    "reanudar": ("resume", texts.CAMPAIGN_RESUMED),
    "cancelar": ("cancel", texts.CAMPAIGN_CANCELLED),
}


def act_on_campaign(runtime: Runtime, campaign_id: str, action: str, scope: list[str] | None = None) -> dict:
    """Pause, resume or cancel a campaign."""
    check_campaign_id(campaign_id)
    check_scope(runtime, campaign_id, scope)
    method, message = _ACTIONS[action]
    try:
        result = getattr(runtime.pipeline, method)(campaign_id)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    except InvalidTransition as exc:
        raise ApiError(
            409, texts.ACTION_REFUSED.format(action=action, reason=exc), {"campaign_id": campaign_id}
        ) from None
    if method == "cancel":
        message += texts.CANCELLED_UNSENT.format(count=result)
    return {
        "success": True,
        "message": message + ".",
        "campaign_id": campaign_id,
        "status": runtime.state.status(campaign_id),
    }


def reschedule_campaign(runtime: Runtime, campaign_id: str, value: str, scope: list[str] | None = None) -> dict:
    """Move the start of a campaign that has not started yet."""
    check_campaign_id(campaign_id)
    check_scope(runtime, campaign_id, scope)
    try:
        fields = runtime.pipeline.ensure_live_state(campaign_id)
        tz = zone(fields.get("time_zone") or runtime.settings.default_time_zone)
        start = check_start(runtime, value, tz)
        reason = runtime.pipeline.reschedule(campaign_id, start)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    except InvalidTransition as exc:
        raise ApiError(409, texts.RESCHEDULE_REFUSED.format(reason=exc), {"campaign_id": campaign_id}) from None
    return {
        "success": True,
        "message": texts.CAMPAIGN_RESCHEDULED.format(at=local_text(start, tz)) + ".",
        "campaign_id": campaign_id,
        "status": runtime.state.status(campaign_id),
        "programada_para": start.isoformat(),
        "motivo": reason,
    }


def retry_campaign(runtime: Runtime, campaign_id: str, statuses: list[str], scope: list[str] | None = None) -> dict:
    """Send again the recipients left unknown and/or failed."""
    check_campaign_id(campaign_id)
    check_scope(runtime, campaign_id, scope)
    try:
        moved = runtime.pipeline.retry(campaign_id, statuses)
    except CampaignNotFound:
        raise _not_found(campaign_id) from None
    except InvalidTransition as exc:
        raise ApiError(409, texts.RETRY_REFUSED.format(reason=exc), {"campaign_id": campaign_id}) from None
    total = sum(moved.values())
    detail = ", ".join(
        texts.RETRIED_COUNT.format(count=n, status=texts.RETRIED_STATUS_NAMES[s]) for s, n in moved.items()
    )
    return {
        "success": True,
        "message": texts.RETRIED.format(total=total, detail=detail),
        "campaign_id": campaign_id,
        "status": runtime.state.status(campaign_id),
        "reencolados": total,
    }


def list_recipients(
    runtime: Runtime,
    campaign_id: str,
    status: str | None,
    page: int,
    per_page: int,
    scope: list[str] | None = None,
    full_phones: bool = True,
) -> dict:
    """A page of a campaign's recipients, for example the unknown ones an operator must decide about."""
    check_campaign_id(campaign_id)
    row = runtime.store.get_campaign(campaign_id)
    if row is None or (scope is not None and row["buzon"] not in scope):
        raise _not_found(campaign_id)
    result = runtime.store.list_recipients(campaign_id, status, per_page, (page - 1) * per_page)
    recipients = result["recipients"]
    if not full_phones:
        recipients = [{**r, "phone": mask_value(r["phone"])} for r in recipients]
    return {
        "success": True,
        "campaign_id": campaign_id,
        "estado": status,
        "pagina": page,
        "por_pagina": per_page,
        "total": result["total"],
        "destinatarios": recipients,
    }


def export_results(
    runtime: Runtime,
    campaign_id: str,
    status: str | None,
    separator: str,
    scope: list[str] | None = None,
    full_phones: bool = True,
) -> Iterator[bytes]:
    """Every recipient of a campaign as CSV bytes, streamed; the same checks (and 404s) as list_recipients.

    The checks and the first page happen before this returns, so a campaign the caller may not see, or a
    database that is away, still gets its JSON answer instead of a broken download.
    """
    check_campaign_id(campaign_id)
    row = runtime.store.get_campaign(campaign_id)
    if row is None or (scope is not None and row["buzon"] not in scope):
        raise _not_found(campaign_id)
    page_size = EXPORT_PAGE_SIZE
    first = runtime.store.export_page(campaign_id, status, 0, page_size)

    def rows() -> Iterator[dict]:
        full, last_seq = len(first) == page_size, first[-1]["seq"] if first else 0
        first.reverse()  # dropped as they are written, like the store's later pages
        while first:
            yield first.pop()
        if full:
            try:
                yield from runtime.store.iter_recipients_after(campaign_id, status, last_seq, page_size)
            except Exception as exc:
                # The answer has begun: all that is left is to cut it short, which the client sees as a
                # download that failed (the chunked body never ends), not as a complete file.
                log.error("Export of campaign %s cut short (%s)", campaign_id, type(exc).__name__)
                raise

    return exports.csv_stream(rows(), separator, full_phones)


def list_senders(store, scope: list[str] | None) -> dict:
    """The registered buzones a caller may use, without tokens."""
    senders = [s for s in store.list_senders() if scope is None or s["buzon"] in scope]
    return {"success": True, "buzones": senders}


def audit_page(store, query: dict) -> dict:
    """A page of the audit log with the same paging fields as the other lists."""
    page, per_page = query["pagina"], query["por_pagina"]
    since, until = (query[k].astimezone(UTC).isoformat() if query[k] else None for k in ("desde", "hasta"))
    entries, total = store.list_audit(query["campaign_id"], since, until, per_page, (page - 1) * per_page)
    return {"success": True, "entradas": entries, "total": total, "pagina": page, "por_pagina": per_page}
