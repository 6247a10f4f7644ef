"""The HTTP routes the front end calls; each reads the request, calls one function and answers."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify, request

from tasks import texts
from webapi import campaigns, exports, limits, optouts, schemas, system
from webapi.access import current_caller, requires
from webapi.context import runtime
from webapi.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_IDEMPOTENCY_KEY_LENGTH = 200

# Built once: creating a Schema deep-copies its declared fields, which showed in request profiles.
_campaign_action = schemas.CampaignActionSchema()
_campaign_created = schemas.CampaignCreatedSchema()
_campaign_validated = schemas.CampaignValidatedSchema()
_caller_schema = schemas.CallerSchema()
_campaign_list = schemas.CampaignListSchema()
_export_query = schemas.ExportQuerySchema()
_list_query = schemas.CampaignListQuerySchema()
_queue_status = schemas.QueueStatusSchema()
_recipient_list = schemas.RecipientListSchema()
_recipient_query = schemas.RecipientQuerySchema()
_request_schema = schemas.CampaignRequestSchema()
_reschedule_request = schemas.RescheduleRequestSchema()
_reschedule_result = schemas.RescheduleResultSchema()
_retry_request = schemas.RetryRequestSchema()
_retry_result = schemas.RetryResultSchema()
_system_status = schemas.SystemStatusSchema()
_audit_query = schemas.AuditQuerySchema()
_audit_list = schemas.AuditListSchema()
_sender_list = schemas.SenderListSchema()
_optout_query = schemas.OptOutQuerySchema()
_optout_request = schemas.OptOutRequestSchema()
_optout_lift_query = schemas.OptOutLiftQuerySchema()
_optout_list = schemas.OptOutListSchema()
_optout_added = schemas.OptOutAddedSchema()
_optout_lifted = schemas.OptOutLiftedSchema()


@bp.post("/crear-campana")
@requires("operator")
@limits.uploads
def create_campaign():
    """Create a campaign from a CSV upload (multipart) or a JSON list of contacts."""
    form, upload = _campaign_input()
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(400, texts.IDEMPOTENCY_KEY_TOO_LONG.format(limit=MAX_IDEMPOTENCY_KEY_LENGTH))
    result = campaigns.create_campaign(runtime(), form, upload, key, current_caller())
    return jsonify(_campaign_created.dump(result)), 201


@bp.post("/validar-campana")
@requires("operator")
@limits.validations
def validate_campaign():
    """Read an upload as crear-campana would and answer what it would send; nothing is stored or sent."""
    form, upload = _campaign_input()
    caller = current_caller()
    result = campaigns.validate_campaign(runtime(), form, upload, caller, full_phones=caller.can("operator"))
    return jsonify(_campaign_validated.dump(result))


@bp.get("/yo")
@requires("viewer")
def whoami():
    """Who is calling: the key or user, its role and the buzones it may use."""
    return jsonify(_caller_schema.dump(campaigns.describe_caller(current_caller())))


def _campaign_input():
    """The form fields and the uploaded file of crear-campana (multipart), or its JSON body and no file."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, texts.JSON_BODY_INVALID)
        form = _request_schema.load(body)
        upload = None
    else:
        form = _request_schema.load(request.form.to_dict())
        upload = request.files.get("archivo_csv")
        if upload is None and form["contactos"] is None:
            raise ApiError(400, texts.FILE_MISSING, {"field": "archivo_csv"})
    return form, upload


@bp.get("/estado-cola/<campaign_id>")
@requires("viewer")
@limits.reads
def queue_status(campaign_id: str):
    """Live progress of one campaign."""
    return jsonify(_queue_status.dump(campaigns.queue_status(runtime(), campaign_id, current_caller().scope)))


@bp.get("/listar-campanas")
@requires("viewer")
@limits.reads
def list_campaigns():
    """Campaigns, newest first, paginated (only those of the caller's buzones)."""
    query = _list_query.load(request.args.to_dict())
    page = campaigns.list_campaigns(runtime(), query["pagina"], query["por_pagina"], current_caller().scope)
    return jsonify(_campaign_list.dump(page))


@bp.post("/<any(pausar, reanudar, cancelar):action>-campana/<campaign_id>")
@requires("operator")
@limits.actions
def campaign_action(action: str, campaign_id: str):
    """Pause, resume or cancel a campaign."""
    result = campaigns.act_on_campaign(runtime(), campaign_id, action, current_caller().scope)
    return jsonify(_campaign_action.dump(result))


@bp.post("/programar-campana/<campaign_id>")
@requires("operator")
@limits.actions
def reschedule_campaign(campaign_id: str):
    """Move the start time of a campaign that is still scheduled."""
    body = request.get_json(silent=True) if request.is_json else None
    options = _reschedule_request.load(body or request.form.to_dict() or {})
    result = campaigns.reschedule_campaign(runtime(), campaign_id, options["programar_para"], current_caller().scope)
    return jsonify(_reschedule_result.dump(result))


@bp.post("/reintentar-campana/<campaign_id>")
@requires("operator")
@limits.actions
def retry_campaign(campaign_id: str):
    """Send again a campaign's unknown and/or failed recipients."""
    body = request.get_json(silent=True) if request.is_json else None
    options = _retry_request.load(body or request.form.to_dict(flat=False) or {})
    result = campaigns.retry_campaign(runtime(), campaign_id, options["estados"], current_caller().scope)
    return jsonify(_retry_result.dump(result))


@bp.get("/destinatarios/<campaign_id>")
@requires("viewer")
@limits.reads
def list_recipients(campaign_id: str):
    """A campaign's recipients, optionally only those in one status; phones are masked below the operator role."""
    query = _recipient_query.load(request.args.to_dict())
    caller = current_caller()
    page = campaigns.list_recipients(
        runtime(),
        campaign_id,
        query["estado"],
        query["pagina"],
        query["por_pagina"],
        caller.scope,
        full_phones=caller.can("operator"),
    )
    return jsonify(_recipient_list.dump(page))


@bp.get("/campanas/<campaign_id>/resultados.csv")
@requires("viewer")
@limits.reads
def export_results(campaign_id: str):
    """Every recipient of a campaign as a CSV download, streamed; phones are masked below the operator role."""
    query = _export_query.load(request.args.to_dict())
    caller = current_caller()
    body = campaigns.export_results(
        runtime(),
        campaign_id,
        query["estado"],
        texts.EXPORT_SEPARATORS[query["separador"]],
        caller.scope,
        full_phones=caller.can("operator"),
    )
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{exports.filename(campaign_id)}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/estado-sistema")
@requires("viewer")
@limits.reads
def system_status():
    """Whether Redis, the database, the workers and beat are up, and how busy the queue is."""
    uptime = time.monotonic() - current_app.config["STARTED_AT"]
    return jsonify(_system_status.dump(system.system_status(runtime(), uptime, current_caller().scope)))


@bp.get("/buzones")
@requires("viewer")
def list_senders():
    """The buzones the caller may send with (no tokens)."""
    return jsonify(_sender_list.dump(campaigns.list_senders(runtime().store, current_caller().scope)))


@bp.get("/auditoria")
@requires("admin")
def audit_log():
    """The audit log, newest first, filtered by campaign and time range, paginated."""
    query = _audit_query.load(request.args.to_dict())
    return jsonify(_audit_list.dump(campaigns.audit_page(runtime().store, query)))


@bp.get("/bajas")
@requires("viewer")
@limits.reads
def list_optouts():
    """The opt-outs in force for the caller's buzones, newest first, paginated (phones masked for roles that may
    not see whole numbers)."""
    query = _optout_query.load(request.args.to_dict())
    caller = current_caller()
    page = optouts.list_optouts(runtime(), query, caller, full_phones=caller.can("operator"))
    return jsonify(_optout_list.dump(page))


@bp.post("/bajas")
@requires("operator")
@limits.actions
def add_optout():
    """Put a number on the suppression list (of one buzón, or of every buzón)."""
    body = request.get_json(silent=True) if request.is_json else request.form.to_dict()
    if not isinstance(body, dict):
        raise ApiError(400, texts.JSON_BODY_INVALID)
    result, added = optouts.add_optout(runtime(), _optout_request.load(body), current_caller())
    return jsonify(_optout_added.dump(result)), 201 if added else 200


@bp.delete("/bajas")
@requires("operator")
@limits.actions
def lift_optout():
    """Lift a number's opt-outs (of one buzón, or of all the caller may act on)."""
    query = _optout_lift_query.load(request.args.to_dict())
    return jsonify(_optout_lifted.dump(optouts.lift_optout(runtime(), query, current_caller())))
