"""Unit tests for reading an operator's contacts file (or JSON list) into WhatsApp recipients."""

from __future__ import annotations

import io
import random

import phonenumbers
import pytest

from webapi import contacts
from webapi.contacts import (
    Contact,
    ContactsError,
    InvalidPhone,
    RejectedRow,
    encodings,
    mask_value,
    normalize_phone,
    open_csv,
    open_records,
    phones,
)

ANA = "584141234567"
BO = "584241234567"


def parse_text(text: str, encoding: str = "utf-8", **options) -> contacts.ParsedContacts:
    """Parse CSV text as if it had been uploaded in the given encoding."""
    return open_csv(io.BytesIO(text.encode(encoding)), **options).collect()


def csv_error(text: str, **options) -> ContactsError:
    """Parse CSV text that must be refused as a whole and return the error."""
    with pytest.raises(ContactsError) as caught:
        parse_text(text, **options)
    return caught.value


# --------------------------------------------------------------------------- encodings and delimiters


@pytest.mark.parametrize(
    "encoding, reported",
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("cp1252", "cp1252"),
        ("utf-16", "utf-16"),
    ],
)
def test_names_with_accents_arrive_intact_whatever_the_encoding(encoding, reported):
    """Excel's UTF-8, UTF-8 with BOM and ANSI (Windows-1252) exports all give "Muñoz" and "José" back."""
    result = parse_text("telefono;nombre\r\n04141234567;José Muñoz\r\n", encoding)

    assert result.contacts == [Contact(2, ANA, ["José Muñoz"])]
    assert result.encoding == reported
    assert result.phone_column == "telefono"  # no BOM residue glued to the first header


def test_windows_1252_is_detected_even_after_the_first_chunk():
    """A single "é" deep into a large file still switches the reading to Windows-1252."""
    rows = [f"5841400{i:05d},Cliente" for i in range(8000)]
    text = "telefono,nombre\n" + "\n".join(rows) + "\n04141234567,Andrés\n"
    assert len(text) > 2 * encodings.CHUNK_SIZE

    result = parse_text(text, "cp1252")

    assert result.encoding == "cp1252"
    assert result.contacts[-1].params == ["Andrés"]
    assert any("Windows-1252" in note for note in result.notes)


def test_utf8_character_split_across_chunks_is_still_utf8():
    """A two-byte "ñ" straddling the detection chunk boundary must not be mistaken for Windows-1252."""
    head = "telefono,nombre\n04141234567,"
    filler = "x" * (encodings.CHUNK_SIZE - len(head.encode()) - 1)
    data = (head + filler + "ñ\n").encode("utf-8")
    assert data[encodings.CHUNK_SIZE - 1 : encodings.CHUNK_SIZE + 1] == "ñ".encode()

    # The cell is longer than a template parameter may be; the limit is lifted to test the encoding alone.
    result = open_csv(io.BytesIO(data), max_param_length=len(data)).collect()

    assert result.encoding == "utf-8"
    assert result.contacts[0].params == [filler + "ñ"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_taken_from_the_header(delimiter):
    """Comma (default Excel), semicolon (Excel in Spanish) and tab all split the columns."""
    text = delimiter.join(["telefono", "nombre", "plan"]) + "\n" + delimiter.join(["04141234567", "Ana", "Oro"])

    result = parse_text(text + "\n")

    assert result.delimiter == delimiter
    assert result.contacts == [Contact(2, ANA, ["Ana", "Oro"])]


def test_delimiter_inside_a_quoted_header_does_not_count():
    """A quoted header containing commas does not outvote the real semicolon separator."""
    result = parse_text('"nombre, apellido";"saldo, deuda";telefono\nAna;10;04141234567\n')

    assert result.delimiter == ";"
    assert result.parameter_columns == ["nombre, apellido", "saldo, deuda"]


def test_caller_stream_is_left_open():
    """The upload's stream still belongs to the caller after parsing."""
    stream = io.BytesIO(b"telefono\n04141234567\n")
    open_csv(stream).collect()
    assert not stream.closed


def test_non_seekable_stream_is_read_too():
    """A stream that cannot seek (e.g. a socket) is spooled instead of refused."""

    class OneWay(io.RawIOBase):
        """A read-only, non-seekable byte stream."""

        def __init__(self, data: bytes) -> None:
            """Serve `data` once."""
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            """It can be read."""
            return True

        def seekable(self) -> bool:
            """It cannot seek."""
            return False

        def readinto(self, buffer) -> int:
            """Copy the next bytes into `buffer`."""
            return self._inner.readinto(buffer)

    result = open_csv(OneWay(b"telefono;nombre\n04141234567;Ana\n")).collect()
    assert result.contacts == [Contact(2, ANA, ["Ana"])]


def test_excel_workbook_is_refused_with_instructions():
    """Uploading the .xlsx itself tells the operator to save it as CSV."""
    with pytest.raises(ContactsError) as caught:
        open_csv(io.BytesIO(b"PK\x03\x04" + b"\x00" * 100)).collect()
    assert "CSV UTF-8" in caught.value.message


# --------------------------------------------------------------------------- the phone column


@pytest.mark.parametrize(
    "header",
    [
        "telefono",
        "teléfono",
        " TELÉFONO ",
        "Phone",
        "celular",
        "movil",
        "Móvil",
        "WhatsApp",
        "numero",
        "Número",
        "phone_number",
        "numero_telefono",
        "telefono movil",
        "Número de teléfono",
        "Nº celular",
        "Mobile",
    ],
)
def test_phone_column_is_found_by_its_usual_names(header):
    """Every usual spelling of the phone header is recognised; the result names it as written (trimmed)."""
    result = parse_text(f"nombre;{header}\nAna;04141234567\n")

    assert result.phone_column == header.strip()
    assert result.parameter_columns == ["nombre"]
    assert result.contacts == [Contact(2, ANA, ["Ana"])]


@pytest.mark.parametrize("header", ["numero de cliente", "telefono2", "nombre", "monto"])
def test_lookalike_headers_are_not_taken_for_the_phone(header):
    """A header that only resembles a phone header ("numero de cliente") is not guessed."""
    error = csv_error(f"{header};plan\n04141234567;Oro\n")
    assert error.message.startswith("No se encontró la columna de teléfono.")


def test_explicit_phone_column_wins_and_ignores_case_and_accents():
    """columna_telefono picks the column even when another one looks like a phone."""
    result = parse_text("telefono;Contacto Móvil\n02125551234;04141234567\n", phone_column="contacto movil")

    assert result.phone_column == "Contacto Móvil"
    assert result.parameter_columns == ["telefono"]
    assert result.contacts == [Contact(2, ANA, ["02125551234"])]


def test_explicit_phone_column_that_does_not_exist():
    """A wrong columna_telefono names the column and lists the real ones."""
    error = csv_error("telefono;nombre\n04141234567;Ana\n", phone_column="celular")

    assert error.message == (
        "No existe la columna 'celular' indicada en 'columna_telefono'. Columnas del archivo: telefono, nombre."
    )
    assert error.details["columns"] == ["telefono", "nombre"]


def test_several_phone_columns_use_the_first_and_say_so():
    """With two phone-like columns the first is used and a note tells the operator."""
    result = parse_text("celular;telefono;nombre\n04141234567;02125551234;Ana\n")

    assert result.phone_column == "celular"
    assert result.parameter_columns == ["telefono", "nombre"]
    assert result.notes == [
        "Hay varias columnas que parecen de teléfono (celular, telefono); se usó 'celular' "
        "y las demás se envían como parámetros de la plantilla."
    ]


def test_a_bare_numero_column_loses_to_an_explicit_phone_column():
    """ "numero" (often an order number) yields to a column that says "teléfono"."""
    result = parse_text("numero;telefono\n17;04141234567\n")

    assert result.phone_column == "telefono"
    assert result.contacts == [Contact(2, ANA, ["17"])]
    assert "numero" in result.notes[0]


def test_missing_phone_column_says_how_to_fix_it():
    """The error lists the file's columns and the two ways to fix it."""
    error = csv_error("nombre,plan\nAna,Oro\n")

    assert error.message == (
        "No se encontró la columna de teléfono. Columnas del archivo: nombre, plan. "
        "Renombre la columna a 'telefono' o indíquela en el campo 'columna_telefono'."
    )
    assert error.details == {"columns": ["nombre", "plan"]}


def test_file_without_header_row_is_explained_without_echoing_the_number():
    """When the first row is a contact, the operator is told to add headers and the number stays masked."""
    error = csv_error("04141234567;Ana\n04241234567;Bo\n")

    assert "no una fila de encabezados" in error.message
    assert error.details["first_row"] == ["*******4567", "Ana"]
    assert "4141234567" not in str(error.details)


# --------------------------------------------------------------------------- phone formats


@pytest.mark.parametrize(
    "raw",
    [
        "+58 414-123-4567",
        "0414 1234567",
        "584141234567",
        "00584141234567",
        "4141234567",
        "(0414) 123.45.67",
        "0414-123-45-67",
        "+58 (0) 414 1234567",
        "(+58) 414 123 4567",
        "+58\u00a0414\u00a0123\u00a04567",
        "5.84141234567E+11",
        "5,84141234567E+11",
        "'04141234567",
    ],
)
def test_accepted_phone_formats_become_e164_digits(raw):
    """Whatever the operator typed, WhatsApp gets international digits without "+"."""
    assert normalize_phone(raw, "VE") == ANA


@pytest.mark.parametrize(
    "raw, region, expected",
    [
        ("300 123 4567", "CO", "573001234567"),
        ("+57 300 123 4567", "VE", "573001234567"),
        ("612 34 56 78", "ES", "34612345678"),
        ("0212 555 1234", "VE", "582125551234"),
    ],
)
def test_default_region_applies_only_without_country_code(raw, region, expected):
    """The region fills in the country code only when the number has none."""
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("", "celda de teléfono vacía"),
        ("   ", "celda de teléfono vacía"),
        ("-", "el teléfono no contiene dígitos"),
        ("no tiene", "el teléfono contiene letras"),
        ("0414-ABC-4567", "el teléfono contiene letras"),
        ("0414/1234567", "el teléfono contiene caracteres no permitidos"),
        ("0414123456", "número inválido para la región VE; si es de otro país, escríbalo con + y el código de país"),
        ("041412345678901", "número inválido para la región VE: sobran dígitos"),
        ("04141", "número inválido para la región VE: faltan dígitos"),
        ("+57 300 123", "número inválido para el código de país +57 (CO): faltan dígitos"),
        ("+999 1234567", "el código de país no existe"),
        (
            "5.84141E+11",
            "Excel convirtió el número a notación científica y se perdieron dígitos; "
            "dé formato de texto a la columna y vuelva a exportar el archivo",
        ),
        (
            "5.8414123456E+11",
            "Excel convirtió el número a notación científica y se perdieron dígitos; "
            "dé formato de texto a la columna y vuelva a exportar el archivo",
        ),
    ],
)
def test_unusable_phones_say_why(raw, reason):
    """Each kind of bad value gets a reason an operator can act on."""
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(raw, "VE")
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "raw, masked",
    [
        ("04141234567", "*******4567"),
        ("+58 414-123-4567", "+** ***-***-4567"),
        ("123", "**3"),
        ("no tiene", "no tiene"),
        ("", ""),
    ],
)
def test_masking_keeps_at_most_the_last_four_digits(raw, masked):
    """A rejected value is recognisable by its end but never shows the whole number."""
    assert mask_value(raw) == masked


def _fast_path_corpus(region: str, rng: random.Random) -> list[tuple[str, bool]]:
    """Digit strings in every shape an operator writes, built around the region's example numbers."""
    cc = str(phonenumbers.country_code_for_region(region))
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = meta.national_prefix or "0"
    corpus = []
    for kind in phonenumbers.PhoneNumberType.values():
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        nsn = phonenumbers.national_significant_number(example)
        for _ in range(40):
            keep = rng.randrange(1, len(nsn) + 1)
            extra = rng.choice([-1, 0, 0, 0, 1])
            tail = "".join(rng.choice("0123456789") for _ in range(max(0, len(nsn) - keep + extra)))
            variant = nsn[:keep] + tail
            corpus += [
                (cc + variant, True),
                (cc + variant, False),
                (trunk + variant, False),
                (variant, False),
                (cc + trunk + variant, True),
                (trunk + cc + variant, False),
            ]
    return corpus


@pytest.mark.parametrize("region", ["VE", "CO", "PE", "EC", "MX", "CL", "ES", "DE", "PA", "UY", "PY", "GT"])
def test_fast_path_agrees_with_phonenumbers(region):
    """The shortcut for clean digit strings never accepts or rewrites a number differently from the library."""
    rules = phones.region_rules(region)
    rng = random.Random(region)
    hits = 0
    for digits, international in _fast_path_corpus(region, rng):
        fast = rules.fast_normalize(digits, international)
        if fast is None:
            continue
        hits += 1
        number = phonenumbers.parse(("+" if international else "") + digits, region)
        assert phonenumbers.is_valid_number(number), (digits, international)
        assert fast == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    assert hits > 50  # the shortcut is actually exercised for this region


@pytest.mark.parametrize(
    "digits, international",
    [
        ("584141234567", False),
        ("04141234567", False),
        ("4141234567", False),
        ("584141234567", True),
    ],
)
def test_usual_venezuelan_shapes_take_the_fast_path(digits, international):
    """The formats that fill real files skip the slow full parse (this is what keeps 100k rows under a second)."""
    assert phones.region_rules("VE").fast_normalize(digits, international) == ANA


# --------------------------------------------------------------------------- rows


def test_invalid_and_duplicate_rows_are_reported_with_spreadsheet_row_numbers():
    """Rejected rows carry the row number Excel shows (blank lines count), a masked value and a reason."""
    text = (
        "telefono;nombre\n"  # row 1
        "04141234567;Ana\n"  # row 2
        "abc;Bo\n"  # row 3
        "\n"  # row 4: blank, skipped
        "+58 414 123 4567;Ana\n"  # row 5: same number as row 2
        '04241234567;"Bo; Pérez"\n'  # row 6: a quoted cell may hold the delimiter
        "0414;Cy\n"  # row 7
        ";Di\n"  # row 8
        "0424-123-4567;Bo\n"  # row 9: duplicate of row 6
    )
    result = parse_text(text)

    assert [c.row for c in result.contacts] == [2, 6]
    assert result.contacts[1].params == ["Bo; Pérez"]
    assert result.rejected == [
        RejectedRow(3, "abc", "el teléfono contiene letras"),
        RejectedRow(5, "+** *** *** 4567", "duplicado de la fila 2"),
        RejectedRow(7, "**14", "número inválido para la región VE: faltan dígitos"),
        RejectedRow(8, "", "celda de teléfono vacía"),
        RejectedRow(9, "****-***-4567", "duplicado de la fila 6"),
    ]
    assert "Se ignoró 1 fila vacía." in result.notes
    assert all("4141234567" not in r.value and "4241234567" not in r.value for r in result.rejected)


def test_blank_lines_before_the_header_shift_row_numbers():
    """Blank lines above the header are skipped but still counted, as in the spreadsheet."""
    result = parse_text("\n;;\ntelefono;nombre;plan\nabc;Ana;Oro\n04141234567;Bo;Oro\n")

    assert result.rejected[0].row == 4
    assert result.contacts[0].row == 5


def test_duplicate_counts_only_against_accepted_rows():
    """A number first seen on a rejected row is not a duplicate when it appears again complete."""
    result = parse_text("telefono;nombre\n04141234567;\n04141234567;Ana\n")

    assert result.rejected == [RejectedRow(2, "*******4567", "parámetro 'nombre' vacío")]
    assert result.contacts == [Contact(3, ANA, ["Ana"])]


def test_positional_params_follow_column_order():
    """By default each contact's parameters are a list in the file's column order, phone left out."""
    result = parse_text("nombre; telefono ;plan\n  Ana  ;04141234567; Oro \n")

    assert result.parameter_columns == ["nombre", "plan"]
    assert result.contacts == [Contact(2, ANA, ["Ana", "Oro"])]


def test_named_params_use_the_trimmed_headers():
    """With named parameters each value is keyed by its column header."""
    result = parse_text("nombre; telefono ; Plan \nAna;04141234567;Oro\n", named_params=True)

    assert result.contacts == [Contact(2, ANA, {"nombre": "Ana", "Plan": "Oro"})]


def test_named_params_refuse_repeated_headers():
    """Two columns with the same name cannot both be a named parameter."""
    error = csv_error("telefono;nombre;nombre\n04141234567;Ana;Bo\n", named_params=True)
    assert "repetidas (nombre)" in error.message


def test_phone_only_file_has_no_params():
    """A single-column file gives contacts with no parameters."""
    result = parse_text("telefono\n04141234567\n04241234567\n")
    assert result.contacts == [Contact(2, ANA, []), Contact(3, BO, [])]


def test_ragged_rows_are_rejected_but_excel_padding_is_not():
    """Missing or extra data cells reject the row; trailing empty cells that Excel adds are harmless."""
    text = "telefono;nombre;plan;\n04141234567;Ana;Oro;\n04241234567;Bo\n04161234567;Cy;Oro;extra\n"
    result = parse_text(text)

    assert result.parameter_columns == ["nombre", "plan"]
    assert result.contacts == [Contact(2, ANA, ["Ana", "Oro"])]
    assert result.rejected == [
        RejectedRow(3, "*******4567", "la fila tiene 2 celdas y el encabezado 3 columnas"),
        RejectedRow(4, "*******4567", "la fila tiene 4 celdas y el encabezado 3 columnas"),
    ]


@pytest.mark.parametrize(
    "row, reason",
    [
        ("04141234567;;Oro", "parámetro 'nombre' vacío"),
        ("04141234567; ;  ", "parámetros 'nombre', 'plan' vacíos"),
    ],
)
def test_empty_params_reject_the_row(row, reason):
    """WhatsApp refuses empty text parameters, so such rows are rejected up front and say which one."""
    result = parse_text(f"telefono;nombre;plan\n{row}\n04241234567;Bo;Oro\n")

    assert result.rejected == [RejectedRow(2, "*******4567", reason)]
    assert [c.phone for c in result.contacts] == [BO]


def test_unnamed_column_in_the_middle_is_refused():
    """Data under a column without a header would be sent as a nameless parameter, so the file is refused."""
    error = csv_error("telefono;;plan\n04141234567;x;Oro\n")
    assert error.message.startswith("La columna 2 no tiene nombre")


# --------------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize(
    "text, start",
    [
        ("", "El archivo está vacío."),
        ("\n\n", "El archivo está vacío."),
        ("telefono;nombre\n", "La lista no tiene contactos"),
        ("telefono;nombre\n\n;\n", "La lista no tiene contactos"),
    ],
)
def test_files_without_contacts_are_refused(text, start):
    """An empty file or one with only headers says what is missing."""
    assert csv_error(text).message.startswith(start)


def test_no_valid_row_is_an_error_with_examples():
    """If every row is rejected the upload fails and the details show the first problems, masked."""
    error = csv_error("telefono;nombre\n0414;Ana\nabc;Bo\n")

    assert error.message == (
        "Ningún contacto es válido: se rechazaron las 2 filas. Revise la columna 'telefono' "
        "y que la región (VE) sea la de los números sin código de país."
    )
    assert error.details["rejected_count"] == 2
    assert error.details["rejected_sample"][0] == {
        "row": 2,
        "value": "**14",
        "reason": "número inválido para la región VE: faltan dígitos",
    }


def test_too_many_contacts_stops_with_the_limit_and_the_count():
    """Going over max_contacts fails, naming the limit, and reading stops at the first contact too many."""
    rows = "".join(f"5841412345{i:02d};Cliente\n" for i in range(10))
    error = csv_error("telefono;nombre\n" + rows, max_contacts=3)

    assert error.message.startswith("Hay más de 3 contactos válidos y el máximo por envío es 3")
    assert error.details == {"max_contacts": 3, "found_at_least": 4, "stopped_at_row": 5}


def test_rejected_rows_do_not_count_toward_the_limit():
    """Only valid, unique recipients count toward max_contacts."""
    result = parse_text("telefono\n04141234567\n04141234567\nabc\n04241234567\n", max_contacts=2)
    assert len(result.contacts) == 2
    assert len(result.rejected) == 2


def test_unknown_region_is_an_upload_error():
    """A misconfigured region is reported instead of rejecting every row."""
    error = csv_error("telefono\n04141234567\n", default_region="XX")
    assert "Región desconocida" in error.message


# --------------------------------------------------------------------------- JSON records


def test_records_follow_the_same_rules_numbered_from_one():
    """The JSON list is checked like a file, with rows numbered by position in the list."""
    records = [
        {"telefono": "+58 414-123-4567", "nombre": "Ana", "saldo": 10},
        {"telefono": 4241234567, "nombre": "Bo", "saldo": 2.5},
        {"telefono": 584141234567.0, "nombre": "Dup", "saldo": 1},
        {"telefono": "abc", "nombre": "Cy", "saldo": 1},
        {"telefono": "04161234567", "nombre": "", "saldo": 1},
        {"telefono": "04261234567", "nombre": "Di"},
        {"telefono": "04121234567", "nombre": "Ed", "saldo": 1, "extra": "x"},
        ["04141234567", "Fe", 1],
        {"telefono": "04161234567", "nombre": True, "saldo": 1},
        {},
    ]
    result = open_records(records).collect()

    assert result.contacts == [Contact(1, ANA, ["Ana", "10"]), Contact(2, BO, ["Bo", "2.5"])]
    assert result.rejected == [
        RejectedRow(3, "********4567", "duplicado de la fila 1"),
        RejectedRow(4, "abc", "el teléfono contiene letras"),
        RejectedRow(5, "*******4567", "parámetro 'nombre' vacío"),
        RejectedRow(6, "*******4567", "falta el campo 'saldo'"),
        RejectedRow(7, "*******4567", "campo no reconocido 'extra'"),
        RejectedRow(8, "", "el contacto no es un objeto con campos"),
        RejectedRow(9, "*******4567", "valor no admitido en 'nombre' (verdadero/falso)"),
    ]
    assert (result.phone_column, result.parameter_columns, result.encoding) == ("telefono", ["nombre", "saldo"], "json")


def test_records_with_named_params_and_explicit_phone_field():
    """Named parameters and columna_telefono work the same for JSON."""
    result = open_records([{"Nombre": "Ana", "tlf": "04141234567"}], phone_column="TLF", named_params=True).collect()
    assert result.contacts == [Contact(1, ANA, {"Nombre": "Ana"})]


def test_records_without_phone_field():
    """A JSON list with no phone field explains how to name it."""
    with pytest.raises(ContactsError) as caught:
        open_records([{"nombre": "Ana"}]).collect()
    assert caught.value.message == (
        "No se encontró la columna de teléfono. Campos de los contactos: nombre. "
        "Renombre el campo a 'telefono' o indíquelo en el campo 'columna_telefono'."
    )


@pytest.mark.parametrize(
    "records, start",
    [
        ([], "La lista 'contactos' está vacía."),
        ("584141234567", "El campo 'contactos' debe ser una lista"),
        (["584141234567"], "Los contactos deben ser objetos"),
    ],
)
def test_unusable_record_lists(records, start):
    """Lists that cannot hold contacts are refused as a whole."""
    with pytest.raises(ContactsError) as caught:
        open_records(records).collect()
    assert caught.value.message.startswith(start)


def test_records_stop_at_the_limit_without_reading_further():
    """Over the limit, the records after the first extra contact are never looked at."""

    class Untouchable(dict):
        """A record that fails the test if anything reads it."""

        def items(self):
            """Reading this record means the limit did not stop the loop."""
            raise AssertionError("read past the limit")

    records = [{"telefono": f"5841412345{i:02d}"} for i in range(3)] + [Untouchable(telefono="x")]
    with pytest.raises(ContactsError) as caught:
        open_records(records, max_contacts=2).collect()
    assert caught.value.details == {"max_contacts": 2, "found_at_least": 3, "stopped_at_row": 3}


def test_too_many_rejected_rows_stop_the_upload(monkeypatch):
    """A file that is mostly errors is refused early instead of piling up an endless rejection list."""
    monkeypatch.setattr(contacts.stream, "_MIN_REJECTED_CAP", 3)
    error = csv_error("telefono\n04141234567\nabc\nabc\nabc\nabc\nabc\n", max_contacts=1)

    assert error.message.startswith("Hay más de 3 filas con errores (se dejó de leer en la fila 6)")
    assert len(error.details["rejected_sample"]) == 4


def test_broken_csv_names_the_row():
    """A cell too large for a CSV (usually a stray quote swallowing the file) is reported near its row."""
    huge = "x" * 200_000
    error = csv_error(f"telefono;nombre\n04141234567;Ana\n04241234567;{huge}\n")

    assert error.message.startswith("El archivo no se pudo leer como CSV cerca de la fila 3")
    assert error.details["row"] == 3


def test_a_stream_yields_contacts_as_it_reads_and_reports_rejections_once_read():
    stream = contacts.open_csv(io.BytesIO(b"telefono;nombre\n04141234567;Ana\n123;Bo\n04141234568;Cy\n"))
    assert (stream.phone_column, stream.parameter_columns, stream.rejected) == ("telefono", ["nombre"], [])
    first = next(iter(stream))
    assert (first.row, first.phone) == (2, "584141234567")
    stream.finish()  # reads the rest without yielding it
    assert [r.row for r in stream.rejected] == [3] and stream.accepted == 2
    stream.finish()  # already read: nothing happens
    assert list(stream) == []


def test_a_stream_raises_the_whole_file_checks_only_when_read_to_the_end():
    stream = contacts.open_csv(io.BytesIO(b"telefono;nombre\n123;Ana\n"))  # header fine, no valid row
    with pytest.raises(ContactsError, match="Ningún contacto es válido"):
        stream.finish()
