"""The sandbox's template catalogue: the Graph API listing of a WABA's templates, and the send-time checks.

A catalogue entry (settings `templates`: name -> {language -> entry}) is either a shorthand, a positional
parameter count (2) or a list of parameter names (["nombre", "plan"]) for an approved body-only template, or
a template as the Graph API describes it: {"status", "category", "quality_score", "components": [HEADER,
BODY, FOOTER, BUTTONS]}. A send is checked against it the way the Cloud API does: a missing template
132001, paused 132015, disabled 132016, a parameter count that does not match 132000, a parameter of the
wrong kind 132012; a component of the wrong shape 131008/131009 whatever the catalogue.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

STATUSES = ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL", "ARCHIVED", "DELETED")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
QUALITY_SCORES = ("GREEN", "YELLOW", "RED", "UNKNOWN")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
# The send parameter a media header format takes.
MEDIA_TYPES = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document"}
# A button's send sub_type by its template type.
BUTTON_SUB_TYPES = {"QUICK_REPLY": "quick_reply", "URL": "url", "COPY_CODE": "copy_code"}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_LINK = re.compile(r"https?://[^\s/]+\S*")


class TemplateMismatch(Exception):
    """A send that the Cloud API would refuse: the Graph error code and its details text."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details


def placeholders(text: str) -> list[str]:
    """The distinct {{...}} names of a template text, in order of first appearance."""
    seen: list[str] = []
    for name in _PLACEHOLDER.findall(text or ""):
        if name not in seen:
            seen.append(name)
    return seen


def shorthand_components(entry: int | list[str]) -> list[dict[str, Any]]:
    """The BODY component of a catalogue shorthand: a count of positional parameters or their names."""
    if isinstance(entry, int):
        names = [str(i) for i in range(1, entry + 1)]
        example: dict[str, Any] = {"body_text": [[f"ejemplo {n}" for n in names]]} if names else {}
    else:
        names = list(entry)
        example = {"body_text_named_params": [{"param_name": n, "example": f"ejemplo {n}"} for n in names]}
    text = "Hola " + " ".join(f"{{{{{n}}}}}" for n in names) if names else "Hola"
    return [{"type": "BODY", "text": text, **({"example": example} if example else {})}]


def check_entry(entry: Any) -> int | list[str] | dict[str, Any]:
    """Validate one language entry of the catalogue (ValueError/TypeError when it is not one)."""
    if isinstance(entry, bool):
        raise TypeError(f"expected a count, a list of names or a template object, got {entry!r}")
    if isinstance(entry, int):
        if entry < 0:
            raise ValueError(f"{entry} out of range")
        return entry
    if isinstance(entry, list):
        if not all(isinstance(n, str) and n for n in entry):
            raise TypeError(f"parameter names must be non-empty strings, got {entry!r}")
        if len(set(entry)) != len(entry):
            raise ValueError(f"duplicate parameter names in {entry!r}")
        return entry
    if not isinstance(entry, dict):
        raise TypeError(f"expected a count, a list of names or a template object, got {entry!r}")
    unknown = set(entry) - {"status", "category", "quality_score", "components", "id", "parameter_format"}
    if unknown:
        raise ValueError(f"unknown template fields {sorted(unknown)}")
    for key, allowed in (("status", STATUSES), ("category", CATEGORIES), ("quality_score", QUALITY_SCORES)):
        if key in entry and entry[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {entry[key]!r}")
    components = entry.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise TypeError("components must be a list of objects")
    kinds = [c.get("type") for c in components]
    for kind in kinds:
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise ValueError(f"component type must be HEADER, BODY, FOOTER or BUTTONS, got {kind!r}")
    if any(kinds.count(k) > 1 for k in kinds):
        raise ValueError("each component type may appear once")
    for component in components:
        if component["type"] == "HEADER" and component.get("format") not in HEADER_FORMATS:
            raise ValueError(f"HEADER format must be one of {', '.join(HEADER_FORMATS)}")
        if component["type"] == "BUTTONS":
            buttons = component.get("buttons")
            if not isinstance(buttons, list) or not buttons:
                raise ValueError("BUTTONS needs a non-empty buttons list")
            for button in buttons:
                if not isinstance(button, dict) or button.get("type") not in BUTTON_TYPES:
                    raise ValueError(f"each button type must be one of {', '.join(BUTTON_TYPES)}")
    return entry


@dataclass(frozen=True)
class Template:
    """One approved (or not) template in one language, as the listing shows it and sends are checked against."""

    name: str
    language: str
    id: str
    status: str
    category: str
    quality_score: str
    components: list[dict[str, Any]]
    parameter_format: str  # POSITIONAL or NAMED
    body_params: tuple[str, ...]  # "1", "2"... or the names
    header_format: str | None
    header_params: int  # 0 or 1: a TEXT header with a placeholder, or any media header
    buttons: tuple[tuple[str, bool], ...]  # (type, takes a parameter) in template order

    @classmethod
    def from_entry(cls, name: str, language: str, entry: int | list[str] | dict[str, Any]) -> Template:
        """Build a template from a checked catalogue entry."""
        full = entry if isinstance(entry, dict) else {"components": shorthand_components(entry)}
        components = full.get("components", [])
        by_type = {c["type"]: c for c in components}
        body_params = tuple(placeholders(by_type.get("BODY", {}).get("text", "")))
        named = any(not p.isdigit() for p in body_params)
        header = by_type.get("HEADER")
        header_format = header["format"] if header else None
        if header_format == "TEXT":
            header_params = min(1, len(placeholders(header.get("text", ""))))  # type: ignore[union-attr]
        else:
            header_params = 1 if header_format in MEDIA_TYPES or header_format == "LOCATION" else 0
        buttons = tuple(
            (b["type"], b["type"] == "COPY_CODE" or (b["type"] == "URL" and bool(placeholders(b.get("url", "")))))
            for b in by_type.get("BUTTONS", {}).get("buttons", [])
        )
        return cls(
            name=name,
            language=language,
            id=str(full.get("id") or zlib.crc32(f"{name}/{language}".encode()) + 10**14),
            status=full.get("status", "APPROVED"),
            category=full.get("category", "UTILITY"),
            quality_score=full.get("quality_score", "GREEN"),
            components=components,
            parameter_format=full.get("parameter_format") or ("NAMED" if named else "POSITIONAL"),
            body_params=body_params,
            header_format=header_format,
            header_params=header_params,
            buttons=buttons,
        )

    def listing(self, fields: list[str]) -> dict[str, Any]:
        """This template as one item of GET /{waba_id}/message_templates, with the fields asked for."""
        values: dict[str, Any] = {
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "components": self.components,
            "parameter_format": self.parameter_format,
            "quality_score": {"score": self.quality_score, "date": 1_767_225_600},
        }
        chosen = fields or ["name", "language", "status", "category"]
        return {**{f: values[f] for f in chosen if f in values}, "id": self.id}


def catalogue(templates: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Template]:
    """Every template of the settings, by (name, language)."""
    return {
        (name, language): Template.from_entry(name, language, entry)
        for name, languages in templates.items()
        for language, entry in languages.items()
    }


# ---- send-time checks ----------------------------------------------------------------------------


def require(container: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """container[key]: 131008 when missing, 131009 when of the wrong type (or an empty string)."""
    value = container.get(key)
    if value is None:
        raise TemplateMismatch(131008, f"The parameter {where}{key} is required.")
    if not isinstance(value, kind) or (kind is str and not value):
        raise TemplateMismatch(131009, f"The parameter {where}{key} has an invalid value.")
    return value


@dataclass
class SentComponents:
    """What a template message's components carry: body, header and button parameters by index."""

    body: list[dict[str, str]]
    header: list[dict[str, Any]] | None
    buttons: dict[int, tuple[str, list[dict[str, Any]]]]  # index -> (sub_type, parameters)

    @property
    def rich(self) -> bool:
        """Whether anything beyond the body was sent."""
        return self.header is not None or bool(self.buttons)


def _media_parameter(parameter: dict[str, Any], kind: str, where: str) -> None:
    """Check an image/video/document parameter: a link (http or https) or an uploaded media id."""
    media = require(parameter, kind, dict, where)
    link, media_id = media.get("link"), media.get("id")
    if link is None and media_id is None:
        raise TemplateMismatch(131008, f"The parameter {where}{kind}.link or {where}{kind}.id is required.")
    if link is not None and (not isinstance(link, str) or not _LINK.fullmatch(link)):
        raise TemplateMismatch(131009, f"The parameter {where}{kind}.link is not a valid URL.")
    if media_id is not None and (not isinstance(media_id, str) or not media_id):
        raise TemplateMismatch(131009, f"The parameter {where}{kind}.id has an invalid value.")
    filename = media.get("filename")
    if filename is not None and (kind != "document" or not isinstance(filename, str) or not filename):
        raise TemplateMismatch(131009, f"The parameter {where}{kind}.filename has an invalid value.")


def _header_parameters(parameters: list[Any]) -> list[dict[str, Any]]:
    """Check each header parameter's own shape (text, image, video, document, location)."""
    where = "template.components[header].parameters[]."
    for parameter in parameters:
        if not isinstance(parameter, dict):
            raise TemplateMismatch(131009, "Each header parameter must be an object.")
        kind = require(parameter, "type", str, where)
        if kind == "text":
            require(parameter, "text", str, where)
        elif kind in ("image", "video", "document"):
            _media_parameter(parameter, kind, where)
        elif kind == "location":
            require(parameter, "location", dict, where)
        else:
            raise TemplateMismatch(131009, f"The parameter {where}type has an invalid value: {kind!r}.")
    return parameters


def _button_parameters(component: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """Check one button component: its sub_type, index and parameters (text for url, payload for quick_reply)."""
    where = "template.components[button]."
    sub_type = require(component, "sub_type", str, where)
    if sub_type not in ("url", "quick_reply", "copy_code"):
        raise TemplateMismatch(131009, f"The parameter {where}sub_type has an invalid value: {sub_type!r}.")
    index = component.get("index")
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if index is None:
        raise TemplateMismatch(131008, f"The parameter {where}index is required.")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 10:
        raise TemplateMismatch(131009, f"The parameter {where}index has an invalid value.")
    parameters = component.get("parameters")
    if not isinstance(parameters, list) or len(parameters) != 1 or not isinstance(parameters[0], dict):
        raise TemplateMismatch(131009, f"The parameter {where}parameters must hold one parameter.")
    parameter = parameters[0]
    expected = {"url": "text", "quick_reply": "payload", "copy_code": "coupon_code"}[sub_type]
    if require(parameter, "type", str, where + "parameters[].") != expected:
        raise TemplateMismatch(132012, f"button {index}: a {sub_type} button takes a parameter of type {expected}.")
    require(parameter, expected, str, where + "parameters[].")
    return index, sub_type, parameters


def read_components(components: Any) -> SentComponents:
    """Check template.components' shape and sort its parameters into body, header and buttons."""
    sent = SentComponents([], None, {})
    if components is None:
        return sent
    if not isinstance(components, list):
        raise TemplateMismatch(131009, "The parameter template.components must be a list.")
    seen_body = False
    for component in components:
        if not isinstance(component, dict):
            raise TemplateMismatch(131009, "Each template component must be an object.")
        kind = require(component, "type", str, "template.components[].").lower()
        if kind == "button":
            index, sub_type, parameters = _button_parameters(component)
            if index in sent.buttons:
                raise TemplateMismatch(131009, f"The button with index {index} is given twice.")
            sent.buttons[index] = (sub_type, parameters)
            continue
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            raise TemplateMismatch(131009, "The parameter template.components[].parameters must be a list.")
        if kind == "header":
            if sent.header is not None:
                raise TemplateMismatch(131009, "The template has more than one header component.")
            sent.header = _header_parameters(parameters)
        elif kind == "body":
            if seen_body:
                raise TemplateMismatch(131009, "The template has more than one body component.")
            seen_body = True
            sent.body = _body_parameters(parameters)
        else:
            raise TemplateMismatch(131009, f"The parameter template.components[].type has an invalid value: {kind!r}.")
    return sent


def _body_parameters(parameters: list[Any]) -> list[dict[str, str]]:
    """The body parameters as [{text, parameter_name?}]; only text parameters are supported."""
    result: list[dict[str, str]] = []
    where = "template.components[].parameters[]."
    for parameter in parameters:
        if not isinstance(parameter, dict):
            raise TemplateMismatch(131009, "Each body parameter must be an object.")
        if require(parameter, "type", str, where) != "text":
            raise TemplateMismatch(131009, "Only body parameters of type 'text' are supported.")
        entry = {"text": require(parameter, "text", str, where)}
        name = parameter.get("parameter_name")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TemplateMismatch(131009, f"The parameter {where}parameter_name must be a string.")
            entry["parameter_name"] = name
        result.append(entry)
    return result


def check_send(template: Template | None, name: str, language: str, sent: SentComponents) -> None:
    """Raise what the Cloud API answers when a template message does not fit its template."""
    if template is None or template.status not in ("APPROVED", "PAUSED", "DISABLED"):
        raise TemplateMismatch(132001, f"template name ({name}) does not exist in {language}")
    if template.status == "PAUSED":
        raise TemplateMismatch(132015, f"Template {name} is paused because of low quality.")
    if template.status == "DISABLED":
        raise TemplateMismatch(132016, f"Template {name} has been disabled because of low quality.")
    _check_body(template, sent.body)
    _check_header(template, sent.header)
    _check_buttons(template, sent.buttons)


def _check_body(template: Template, parameters: list[dict[str, str]]) -> None:
    """Positional templates take their count of unnamed parameters; named ones exactly their names."""
    names = [p.get("parameter_name") for p in parameters]
    expected = list(template.body_params)
    if template.parameter_format == "POSITIONAL":
        if any(names):
            raise TemplateMismatch(132012, "This template takes positional parameters, without parameter_name.")
        if len(parameters) != len(expected):
            raise TemplateMismatch(
                132000,
                f"body: number of localizable_params ({len(parameters)}) does not match "
                f"the expected number of params ({len(expected)})",
            )
    else:
        if not all(names):
            raise TemplateMismatch(
                132012, "This template takes named parameters; every parameter needs parameter_name."
            )
        if sorted(names) != sorted(expected):  # type: ignore[type-var]  # all names are strings here
            raise TemplateMismatch(
                132000, f"body: parameters {sorted(names)} do not match the expected parameters {sorted(expected)}"
            )


def _check_header(template: Template, parameters: list[dict[str, Any]] | None) -> None:
    """A header with a variable (text placeholder or media) needs exactly one parameter of its format."""
    given = len(parameters or [])
    if given != template.header_params:
        raise TemplateMismatch(
            132000,
            f"header: number of localizable_params ({given}) does not match "
            f"the expected number of params ({template.header_params})",
        )
    if not parameters:
        return
    kind = parameters[0]["type"]
    expected = "text" if template.header_format == "TEXT" else MEDIA_TYPES.get(template.header_format or "", "location")
    if kind != expected:
        raise TemplateMismatch(
            132012, f"header: parameter type {kind} does not match the header format {template.header_format}"
        )


def _check_buttons(template: Template, buttons: dict[int, tuple[str, list[dict[str, Any]]]]) -> None:
    """Every button with a variable gets its parameter; a parameter only goes to a button of its kind."""
    for index, (kind, takes_parameter) in enumerate(template.buttons):
        if takes_parameter and index not in buttons:
            raise TemplateMismatch(
                132000, f"buttons: button {index} ({kind}) needs a parameter and the message has none"
            )
    for index, (sub_type, _) in sorted(buttons.items()):
        if index >= len(template.buttons):
            raise TemplateMismatch(
                132000, f"buttons: the template has {len(template.buttons)} buttons, there is none at index {index}"
            )
        kind, takes_parameter = template.buttons[index]
        if BUTTON_SUB_TYPES.get(kind) != sub_type:
            raise TemplateMismatch(132012, f"buttons: button {index} is a {kind} button, not {sub_type}")
        if kind == "URL" and not takes_parameter:
            raise TemplateMismatch(132000, f"buttons: the URL of button {index} has no variable to fill")
