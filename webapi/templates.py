"""The template check of crear-campana and validar-campana, and how a rich template's parameters are filled.

With the buzón's WhatsApp Business Account id, the template (name + language) is read from the Graph API
listing (`GET /{version}/{waba_id}/message_templates`, cached briefly in Redis without the token) and the
upload is refused, with what to fix, when WhatsApp would refuse its messages: a template missing in that
language or not APPROVED, body columns that do not match its parameters, a header or button parameter it
needs and nobody supplies. Without a WABA id the check is skipped with a note. When the listing cannot be
read for a passing reason (timeout, network, 5xx, rate limit), the upload goes on with a note: sending
stops the campaign at the first message if the template does not fit (132000/132001/132012). When WhatsApp
refuses the listing itself (token, permissions, unknown WABA), the buzón is misconfigured: 422.

Header and button parameters come from the file's columns (webapi/contacts/columns.py names them) or from
the request's campaign-wide fields (encabezado_tipo, encabezado_valor, encabezado_nombre_archivo, botones);
`TemplateReview.plan` records which, for the worker's PayloadBuilder (tasks/templates.py).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from tasks import keys, texts
from tasks.runtime import Runtime
from tasks.store.base import Sender
from webapi.contacts import ContactStream, RichColumn, is_https_link
from webapi.errors import ApiError

log = logging.getLogger("webapi")

LISTING_FIELDS = "name,language,status,category,components,quality_score"
# Pages of the listing read at most for one name (each holds up to 100 templates, every language of it).
_MAX_PAGES = 5
# Graph error codes that say "try again later" rather than "this buzón is misconfigured".
_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80007, 130429, 131000, 131016})
# encabezado_tipo's Spanish values and the Cloud API's parameter types.
HEADER_KINDS = {"texto": "text", "imagen": "image", "video": "video", "documento": "document"}
_HEADER_FORMATS = {"TEXT": "text", "IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
# A `botones` entry's Spanish tipo and the Cloud API's button sub_type.
BUTTON_KINDS = {"url": "url", "respuesta_rapida": "quick_reply"}
_BUTTON_SUB_TYPES = {"URL": "url", "QUICK_REPLY": "quick_reply"}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class ListingUnavailable(Exception):
    """The listing could not be read now (timeout, network, 5xx, rate limit): the check is skipped."""


class ListingRefused(Exception):
    """WhatsApp refused the listing (token, permission, unknown WABA): the buzón must be fixed."""

    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Button:
    """One button of a template: its index, type and whether a send must fill it."""

    index: int
    type: str  # QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE...
    needs_parameter: bool


@dataclass(frozen=True)
class WhatsAppTemplate:
    """A template as the Graph API lists it, reduced to what a send must supply."""

    name: str
    language: str
    status: str
    category: str
    quality: str
    id: str | None
    named: bool
    body_params: tuple[str, ...]
    header_format: str | None
    header_param: str | None  # the placeholder of a TEXT header, when it has one
    buttons: tuple[Button, ...]

    @property
    def header_needs_parameter(self) -> bool:
        """Whether every message must carry a header parameter."""
        return self.header_format in ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION") or self.header_param is not None

    @classmethod
    def from_listing(cls, item: dict[str, Any]) -> WhatsAppTemplate:
        """Read one item of the listing."""
        by_type = {str(c.get("type", "")).upper(): c for c in item.get("components") or [] if isinstance(c, dict)}
        body = _placeholders(by_type.get("BODY", {}).get("text", ""))
        header = by_type.get("HEADER")
        header_format = str(header.get("format", "")).upper() or None if header else None
        header_params = _placeholders(header.get("text", "")) if header and header_format == "TEXT" else []
        buttons = tuple(
            Button(
                i,
                str(b.get("type", "")).upper(),
                str(b.get("type", "")).upper() == "COPY_CODE"
                or (str(b.get("type", "")).upper() == "URL" and bool(_placeholders(b.get("url", "")))),
            )
            for i, b in enumerate(by_type.get("BUTTONS", {}).get("buttons") or [])
            if isinstance(b, dict)
        )
        quality = item.get("quality_score")
        if isinstance(quality, dict):
            quality = quality.get("score")
        fmt = str(item.get("parameter_format") or "").upper()
        return cls(
            name=str(item.get("name")),
            language=str(item.get("language")),
            status=str(item.get("status") or "").upper(),
            category=str(item.get("category") or "").lower(),
            quality=str(quality or "UNKNOWN").upper(),
            id=str(item["id"]) if item.get("id") else None,
            named=fmt == "NAMED" or (fmt != "POSITIONAL" and any(not p.isdigit() for p in body)),
            body_params=tuple(body),
            header_format=header_format,
            header_param=header_params[0] if header_params else None,
            buttons=buttons,
        )


def _placeholders(text: Any) -> list[str]:
    """The distinct {{...}} names of a template text, in order."""
    found: list[str] = []
    for name in _PLACEHOLDER.findall(text if isinstance(text, str) else ""):
        if name not in found:
            found.append(name)
    return found


class TemplateListing:
    """Reads a WABA's templates of one name from the Graph API, keeping the answer briefly in Redis.

    The cached value is the listing's items only: the access token goes in the request header and is
    never stored, logged or part of a cache key.
    """

    def __init__(self, client: redis.Redis, base_url: str, version: str, timeout_s: float, cache_s: float) -> None:
        self.redis = client
        self.url = f"{base_url.rstrip('/')}/{version}"
        self.timeout_s = timeout_s
        self.cache_s = cache_s

    def templates(self, sender: Sender, name: str) -> list[dict[str, Any]]:
        """Every language of template `name` in the buzón's WABA (ListingUnavailable, ListingRefused)."""
        key = f"{keys.TEMPLATES}{sender.waba_id}:{name}"
        try:
            cached = self.redis.get(key) if self.cache_s else None
        except redis.RedisError:
            cached = None
        if cached is not None:
            return json.loads(cached)
        items = self._fetch(sender, name)
        if self.cache_s:
            try:
                self.redis.set(key, json.dumps(items), ex=max(1, round(self.cache_s)))
            except redis.RedisError:
                pass
        return items

    def _fetch(self, sender: Sender, name: str) -> list[dict[str, Any]]:
        """Read the listing's pages for `name`, keeping the items of exactly that name."""
        url = f"{self.url}/{sender.waba_id}/message_templates"
        params: dict[str, Any] = {"name": name, "fields": LISTING_FIELDS, "limit": 100}
        headers = {"Authorization": f"Bearer {sender.access_token}"}
        items: list[dict[str, Any]] = []
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(_MAX_PAGES):
                try:
                    response = session.get(url, params=params, headers=headers, timeout=self.timeout_s)
                except requests.Timeout:
                    raise ListingUnavailable(texts.TEMPLATE_CAUSE_TIMEOUT.format(seconds=self.timeout_s)) from None
                except requests.RequestException as exc:
                    raise ListingUnavailable(texts.TEMPLATE_CAUSE_NETWORK.format(error=type(exc).__name__)) from None
                body = _json(response)
                if response.status_code != 200:
                    error = _object(body.get("error"))
                    code = error.get("code") if isinstance(error.get("code"), int) else None
                    detail = str(_object(error.get("error_data")).get("details") or error.get("message") or "")
                    if response.status_code >= 500 or code is None or code in _TRANSIENT_CODES:
                        raise ListingUnavailable(
                            texts.TEMPLATE_CAUSE_ERROR.format(status=response.status_code, code=code or "-")
                        )
                    raise ListingRefused(code, detail[:300])
                data = body.get("data")
                if not isinstance(data, list):
                    raise ListingUnavailable(texts.TEMPLATE_CAUSE_UNREADABLE.format())
                items += [i for i in data if isinstance(i, dict) and i.get("name") == name]
                paging = _object(body.get("paging"))
                after = _object(paging.get("cursors")).get("after")
                if not paging.get("next") or not after:
                    break
                params = {**params, "after": after}
        return items


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of the answer, or {} when that part is missing or of another type."""
    return value if isinstance(value, dict) else {}


def _json(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass
class TemplateReview:
    """What the check found: the answer's `plantilla_whatsapp`, notes, the campaign's plan, link columns."""

    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    link_columns: list[str] = field(default_factory=list)


def review_template(runtime: Runtime, sender: Sender, form: dict, contacts: ContactStream) -> TemplateReview:
    """Check the template against WhatsApp (when the buzón has a WABA id) and plan its header and buttons."""
    name, language = form["plantilla"], form["idioma"]
    info: dict[str, Any] = {
        "verificada": False,
        "nombre": name,
        "idioma": language,
        "estado": None,
        "categoria": None,
        "calidad": None,
        "id": None,
    }
    review = TemplateReview(info)
    template = None
    if not sender.waba_id:
        review.notes.append(texts.NOTE_TEMPLATE_NOT_CHECKED_NO_WABA.format(buzon=sender.buzon))
    else:
        s = runtime.settings
        listing = TemplateListing(
            runtime.redis, s.api_whatsapp_url, s.whatsapp_api_version, s.template_check_timeout_s, s.template_cache_s
        )
        try:
            items = listing.templates(sender, name)
        except ListingUnavailable as exc:
            log.warning("Template %s of WABA %s could not be checked: %s", name, sender.waba_id, exc)
            review.notes.append(texts.NOTE_TEMPLATE_NOT_CHECKED_UNAVAILABLE.format(cause=exc))
        except ListingRefused as exc:
            raise ApiError(
                422,
                texts.TEMPLATE_LISTING_REFUSED.format(
                    buzon=sender.buzon, waba_id=sender.waba_id, code=exc.code, detail=exc.detail
                ),
                {"field": "buzon", "codigo": exc.code},
            ) from None
        else:
            template = _choose(items, name, language)
            info.update(
                verificada=True,
                estado=template.status,
                categoria=template.category,
                calidad=template.quality,
                id=template.id,
            )
            _check_status(template)
            _check_body(template, form, contacts)
            if template.quality in ("YELLOW", "RED"):
                review.notes.append(texts.NOTE_TEMPLATE_QUALITY.format(quality=template.quality))
    review.plan, review.link_columns = plan_components(form, contacts, template)
    return review


def _choose(items: list[dict[str, Any]], name: str, language: str) -> WhatsAppTemplate:
    """The listed template in the campaign's language, or the 422 that says which languages exist."""
    templates = [WhatsAppTemplate.from_listing(i) for i in items]
    for template in templates:
        if template.language == language:
            return template
    if not templates:
        raise ApiError(422, texts.TEMPLATE_NOT_FOUND.format(name=name), {"field": "plantilla"})
    languages = sorted(t.language for t in templates)
    raise ApiError(
        422,
        texts.TEMPLATE_LANGUAGE_NOT_FOUND.format(name=name, language=language, languages=", ".join(languages)),
        {"field": "idioma", "idiomas": languages},
    )


def _check_status(template: WhatsAppTemplate) -> None:
    """Only an APPROVED template can be sent."""
    if template.status == "APPROVED":
        return
    hint = texts.TEMPLATE_STATUS_HINTS.get(template.status, texts.TEMPLATE_STATUS_HINT_OTHER)
    raise ApiError(
        422,
        texts.TEMPLATE_NOT_APPROVED.format(
            name=template.name, language=template.language, status=template.status, hint=hint
        ),
        {"field": "plantilla", "estado": template.status},
    )


def _check_body(template: WhatsAppTemplate, form: dict, contacts: ContactStream) -> None:
    """The file's body columns must be the template's body parameters: as many, or the same names."""
    columns = contacts.parameter_columns
    expected = list(template.body_params)
    details = {"field": "parametros_nombrados", "parametros_plantilla": expected, "columnas": columns}
    shown_expected = ", ".join(f"{{{{{p}}}}}" for p in expected) or texts.TEMPLATE_NO_PARAMETERS
    if template.named != form["parametros_nombrados"]:
        message = texts.TEMPLATE_WANTS_NAMED if template.named else texts.TEMPLATE_WANTS_POSITIONAL
        raise ApiError(422, message.format(name=template.name, expected=shown_expected), details)
    if not template.named:
        if len(columns) != len(expected):
            raise ApiError(
                422,
                texts.TEMPLATE_BODY_COUNT.format(
                    name=template.name,
                    expected=len(expected),
                    placeholders=shown_expected,
                    count=len(columns),
                    columns=", ".join(columns) or texts.TEMPLATE_NO_COLUMNS,
                ),
                details,
            )
        return
    missing = [p for p in expected if p not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        raise ApiError(
            422,
            texts.TEMPLATE_BODY_NAMES.format(
                name=template.name,
                placeholders=shown_expected,
                missing=", ".join(missing) or texts.TEMPLATE_NONE,
                extra=", ".join(extra) or texts.TEMPLATE_NONE,
            ),
            {**details, "faltan": missing, "sobran": extra},
        )


def plan_components(
    form: dict, contacts: ContactStream, template: WhatsAppTemplate | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """How the header and buttons are filled (None: body only), and the columns whose values are links."""
    rich = {c.kind if c.index is None else (c.kind, c.index): c for c in contacts.rich_columns}
    header, links = _plan_header(form, rich, template)
    buttons = _plan_buttons(form, rich, template)
    if header is None and not buttons and not contacts.rich_columns:
        return None, []
    plan = {
        "header": header,
        "buttons": buttons,
        "columns": [c.name for c in contacts.rich_columns],
        "body_count": len(contacts.parameter_columns),
    }
    return plan, links


def _plan_header(
    form: dict, rich: dict[Any, RichColumn], template: WhatsAppTemplate | None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The header's type and where its value (and a document's filename) come from."""
    column, filename_column = rich.get("header"), rich.get("filename")
    asked = HEADER_KINDS.get(form.get("encabezado_tipo") or "")
    value, filename = form.get("encabezado_valor"), form.get("encabezado_nombre_archivo")
    given = column is not None or value is not None
    if column is not None and value is not None:
        raise ApiError(422, texts.HEADER_GIVEN_TWICE.format(column=column.name), {"field": "encabezado_valor"})
    if template is not None:
        needed = template.header_needs_parameter
        if template.header_format == "LOCATION" and needed:
            raise ApiError(422, texts.HEADER_LOCATION_UNSUPPORTED.format(name=template.name), {"field": "plantilla"})
        kind = _HEADER_FORMATS.get(template.header_format or "")
        if needed and not given:
            raise ApiError(
                422,
                texts.HEADER_MISSING.format(name=template.name, kind=texts.HEADER_KIND_NAMES[kind or "text"]),
                {"field": "encabezado_valor", "encabezado": template.header_format},
            )
        if given and not needed:
            raise ApiError(422, texts.HEADER_NOT_EXPECTED.format(name=template.name), {"field": "encabezado_valor"})
        if asked is not None and needed and asked != kind:
            raise ApiError(
                422,
                texts.HEADER_KIND_MISMATCH.format(
                    name=template.name,
                    kind=texts.HEADER_KIND_NAMES[kind or "text"],
                    asked=texts.HEADER_KIND_NAMES[asked],
                ),
                {"field": "encabezado_tipo", "encabezado": template.header_format},
            )
    else:
        kind = asked
        if given and kind is None:
            raise ApiError(422, texts.HEADER_KIND_NEEDED, {"field": "encabezado_tipo"})
        if kind is not None and not given:
            raise ApiError(422, texts.HEADER_VALUE_NEEDED, {"field": "encabezado_valor"})
    if (filename_column is not None or filename is not None) and (not given or kind != "document"):
        raise ApiError(422, texts.FILENAME_NOT_DOCUMENT, {"field": "encabezado_nombre_archivo"})
    if filename_column is not None and filename is not None:
        raise ApiError(
            422, texts.FILENAME_GIVEN_TWICE.format(column=filename_column.name), {"field": "encabezado_nombre_archivo"}
        )
    if not given or kind is None:
        return None, []
    if value is not None and kind != "text" and not is_https_link(value):
        raise ApiError(422, texts.HEADER_LINK_INVALID.format(value=value[:200]), {"field": "encabezado_valor"})
    name = template.header_param if template is not None else None
    header = {
        "type": kind,
        "value": value,
        "column": column.name if column else None,
        "filename": filename,
        "filename_column": filename_column.name if filename_column else None,
        "parameter_name": name if name and not name.isdigit() else None,
    }
    return header, [column.name] if column is not None and kind != "text" else []


def _plan_buttons(form: dict, rich: dict[Any, RichColumn], template: WhatsAppTemplate | None) -> list[dict[str, Any]]:
    """Each button parameter: its index, sub_type and column or campaign-wide value."""
    supplied: dict[int, dict[str, Any]] = {}
    for key, column in rich.items():
        if isinstance(key, tuple):
            assert column.index is not None
            if column.index in supplied:
                raise ApiError(
                    422,
                    texts.BUTTON_GIVEN_TWICE.format(index=column.index),
                    {"field": "botones", "indice": column.index},
                )
            supplied[column.index] = {"index": column.index, "sub_type": key[0], "value": None, "column": column.name}
    for entry in form.get("botones") or []:
        index = entry["indice"]
        if index in supplied:
            raise ApiError(422, texts.BUTTON_GIVEN_TWICE.format(index=index), {"field": "botones", "indice": index})
        supplied[index] = {
            "index": index,
            "sub_type": BUTTON_KINDS[entry["tipo"]],
            "value": entry["valor"],
            "column": None,
        }
    if template is not None:
        for index, spec in supplied.items():
            if index >= len(template.buttons):
                raise ApiError(
                    422,
                    texts.BUTTON_NO_SUCH.format(name=template.name, index=index, count=len(template.buttons)),
                    {"field": "botones", "indice": index},
                )
            button = template.buttons[index]
            if _BUTTON_SUB_TYPES.get(button.type) != spec["sub_type"]:
                raise ApiError(
                    422,
                    texts.BUTTON_KIND_MISMATCH.format(
                        index=index, kind=button.type, asked=texts.BUTTON_KIND_NAMES[spec["sub_type"]]
                    ),
                    {"field": "botones", "indice": index},
                )
            if button.type == "URL" and not button.needs_parameter:
                raise ApiError(422, texts.BUTTON_URL_FIXED.format(index=index), {"field": "botones", "indice": index})
        for button in template.buttons:
            if not button.needs_parameter or button.index in supplied:
                continue
            if button.type == "COPY_CODE":
                raise ApiError(
                    422, texts.BUTTON_UNSUPPORTED.format(index=button.index, kind=button.type), {"field": "plantilla"}
                )
            raise ApiError(
                422,
                texts.BUTTON_MISSING.format(name=template.name, index=button.index),
                {"field": "botones", "indice": button.index},
            )
    return [supplied[i] for i in sorted(supplied)]
