"""Broken and hostile contact files are refused as a whole, naming the row and what to fix; rows never merge."""

from __future__ import annotations

import gzip
import io
import random
import zipfile

import pytest

from tasks.config import ConfigError, load_settings
from webapi.contacts import Contact, ContactsError, open_csv, open_records

ANA = "584141234567"
BO = "584241234567"


def rows_of(count: int, start: int = 4141000000) -> str:
    """`count` valid contact lines (phone,name), one per line."""
    return "".join(f"58{start + i},Cliente {i}\n" for i in range(count))


def refused(data: bytes, **options) -> ContactsError:
    """Parse bytes that must be refused as a whole and return the error."""
    with pytest.raises(ContactsError) as caught:
        open_csv(io.BytesIO(data), **options).collect()
    return caught.value


# --------------------------------------------------------------------------- one record per line


def test_an_unclosed_quote_does_not_swallow_the_following_rows():
    """The reported bug: `+584147000000,"Juan` then 999 rows used to become ONE contact holding them all."""
    data = ('telefono,nombre\n+584147000000,"Juan\n' + rows_of(999)).encode()

    error = refused(data)

    assert error.message.startswith("Fila 2: ")
    assert "comillas" in error.message
    assert error.details["row"] == 2


def test_a_quote_closed_lines_later_is_refused_at_the_row_it_opens():
    """A quoted cell may not run over a line end even when it is closed further down."""
    data = ("telefono,nombre\n" + rows_of(3) + '584241234567,"Bo\n584241234568,Cy"\n' + rows_of(2, 4161000000)).encode()

    error = refused(data)

    assert error.details["row"] == 5 and error.message.startswith("Fila 5: ")


def test_an_unclosed_quote_in_the_last_row_is_refused():
    """At the end of the file the quote has nothing left to swallow, but the line end it holds is still wrong."""
    assert refused(b'telefono,nombre\n04141234567,Ana\n04241234567,"Bo\n').details["row"] == 3


def test_a_multi_line_header_is_refused():
    """The header follows the same rule as the rows."""
    assert refused(b'telefono,"nombre\ncompleto"\n04141234567,Ana\n').details["row"] == 1


def test_blank_lines_above_the_header_keep_row_numbers_right_for_the_quote_check():
    """Row numbers in the error count the blank lines the reader skipped before the header."""
    error = refused(b'\n\ntelefono,nombre\n04141234567,Ana\n04241234567,"Bo\n04161234567,Cy\n')
    assert error.details["row"] == 5


def test_quotes_that_stay_on_their_line_are_read_as_usual():
    """Quoted delimiters, doubled quotes and accents inside quotes are fine."""
    data = 'telefono;nombre;nota\n04141234567;"Muñoz; José";"dijo ""sí"""\n"04241234567";Bo;x\n'.encode()

    result = open_csv(io.BytesIO(data)).collect()

    assert result.contacts == [Contact(2, ANA, ["Muñoz; José", 'dijo "sí"']), Contact(3, BO, ["Bo", "x"])]


# --------------------------------------------------------------------------- parameter length


@pytest.mark.parametrize("quoted", [False, True])
def test_a_parameter_over_the_limit_refuses_the_file_naming_row_and_column(quoted):
    """A cell longer than MAX_PARAM_LENGTH is refused, with or without quotes around it."""
    long_text = "x" * 1025
    cell = f'"{long_text}"' if quoted else long_text
    data = f"telefono,nombre,nota\n04141234567,Ana,a\n04241234567,Bo,{cell}\n".encode()

    error = refused(data)

    assert error.message.startswith("Fila 3: la columna 'nota' tiene 1025 caracteres y el máximo es 1024")
    assert error.details == {"row": 3, "column": "nota", "length": 1025, "max_param_length": 1024}


def test_the_parameter_limit_is_an_option_and_the_limit_itself_is_allowed():
    """Exactly max_param_length characters pass; one more does not."""
    data = b"telefono,nombre\n04141234567," + b"y" * 20 + b"\n"

    assert open_csv(io.BytesIO(data), max_param_length=20).collect().contacts[0].params == ["y" * 20]
    assert refused(data, max_param_length=19).details["length"] == 20


def test_long_lines_of_short_cells_are_fine():
    """A line longer than the limit is only a problem when one of its cells is."""
    params = ["z" * 900] * 4
    data = ("telefono," + ",".join(f"p{i}" for i in range(4)) + "\n04141234567," + ",".join(params) + "\n").encode()

    assert open_csv(io.BytesIO(data)).collect().contacts == [Contact(2, ANA, params)]


def test_a_cell_over_the_csv_readers_own_limit_is_an_upload_error_too():
    """With the parameter limit raised past what csv.reader accepts, the reader's refusal is still a ContactsError."""
    data = b"telefono,nombre\n04141234567,Ana\n04241234567," + b"n" * 200_000 + b"\n"
    error = refused(data, max_param_length=500_000)
    assert error.message.startswith("El archivo no se pudo leer como CSV cerca de la fila 3")


def test_max_param_length_is_a_setting():
    """MAX_PARAM_LENGTH is read like the other limits, with a clear error for a bad value."""
    assert load_settings({}, dotenv=False).max_param_length == 1024
    assert load_settings({"MAX_PARAM_LENGTH": "200"}, dotenv=False).max_param_length == 200
    with pytest.raises(ConfigError, match="MAX_PARAM_LENGTH"):
        load_settings({"MAX_PARAM_LENGTH": "0"}, dotenv=False)


def test_json_values_over_the_limit_refuse_the_list():
    """The JSON body follows the CSV's length rule, naming the record."""
    records = [{"telefono": "04141234567", "nombre": "Ana"}, {"telefono": "04241234567", "nombre": "b" * 1025}]
    with pytest.raises(ContactsError) as caught:
        open_records(records).collect()
    assert caught.value.details["row"] == 2 and caught.value.message.startswith("Fila 2: ")


# --------------------------------------------------------------------------- columns


def test_ten_thousand_columns_are_refused_with_the_limit():
    """More columns than any template has parameters for is refused before a row is read."""
    header = "telefono," + ",".join(f"p{i}" for i in range(9_999))
    error = refused((header + "\n04141234567," + ",".join("x" * 9_999) + "\n").encode())

    assert "10000 columnas" in error.message and "100" in error.message
    assert error.details == {"columns_count": 10_000, "max_columns": 100}


def test_a_header_too_long_to_read_whole_is_refused_for_its_columns():
    """Even a header past the readable length says how many columns it has at least."""
    header = "telefono," + ",".join(f"parametro_{i}" for i in range(9_999))
    assert len(header) > 64 * 1024
    assert "al menos" in refused((header + "\n").encode()).message


def test_one_hundred_columns_are_still_accepted():
    """The limit itself is allowed: the phone and 99 parameters."""
    header = "telefono," + ",".join(f"p{i}" for i in range(99))
    data = (header + "\n04141234567," + ",".join("v" for _ in range(99)) + "\n").encode()
    assert len(open_csv(io.BytesIO(data)).collect().contacts[0].params) == 99


# --------------------------------------------------------------------------- what the bytes are


def test_gzip_and_zip_files_are_recognised_as_compressed():
    """A compressed CSV named .csv gets the instruction to decompress it."""
    csv_bytes = b"telefono,nombre\n04141234567,Ana\n"
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("contactos.csv", csv_bytes)

    for data, kind in [(gzip.compress(csv_bytes), "gzip"), (zipped.getvalue(), "zip")]:
        error = refused(data)
        assert "parece comprimido (gzip/zip): descomprímalo y suba el CSV" in error.message
        assert error.details == {"detected": kind}


def test_a_real_workbook_is_still_called_a_workbook():
    """An .xlsx is a zip too, but the operator is told to save it as CSV rather than to decompress it."""
    workbook = io.BytesIO()
    with zipfile.ZipFile(workbook, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    assert "CSV UTF-8" in refused(workbook.getvalue()).message


def test_binary_data_is_refused_as_not_a_csv():
    """Random bytes are not read as a Windows-1252 text full of garbage."""
    data = random.Random(7).randbytes(20_000)
    error = refused(data)
    assert "no es un CSV de texto" in error.message and error.details == {"detected": "binary"}


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"], ids=["NUL", "BEL", "ESC", "DEL"])
def test_control_characters_in_a_cell_refuse_the_file_with_the_row(char):
    """NUL and other invisible control characters name the row and the character."""
    data = f"telefono,nombre\n04141234567,Ana\n04241234567,B{char}o\n04161234567,Cy\n".encode()

    error = refused(data)

    assert error.message.startswith("Fila 3: ")
    assert error.details == {"row": 3, "code": f"U+{ord(char):04X}"}


def test_a_control_character_far_into_a_large_file_names_its_row():
    """The row is counted across read chunks (Windows line ends included)."""
    data = ("telefono,nombre\r\n" + rows_of(20_000).replace("\n", "\r\n") + "04241234567,B\x00o\r\n").encode()
    assert len(data) > 4 * 64 * 1024
    assert refused(data).details["row"] == 20_002


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_read(codec):
    """UTF-16 without a byte order mark is recognised by its zero bytes and decoded correctly."""
    data = "telefono;nombre\r\n04141234567;José Muñoz\r\n04241234567;Zoë 😀\r\n".encode(codec)

    result = open_csv(io.BytesIO(data)).collect()

    assert result.encoding == codec
    assert result.contacts == [Contact(2, ANA, ["José Muñoz"]), Contact(3, BO, ["Zoë 😀"])]


@pytest.mark.parametrize(
    "codec, broken",
    [
        ("utf-16", "\ud800".encode("utf-16-le", "surrogatepass")),  # a lone surrogate
        ("utf-16-le", "\udc00".encode("utf-16-le", "surrogatepass")),
    ],
    ids=["with-bom", "without-bom"],
)
def test_utf16_with_lone_surrogates_is_refused_with_the_row(codec, broken):
    """Half of a surrogate pair cannot be decoded; the error names its row instead of storing garbage."""
    head = "telefono,nombre\n04141234567,Ana\n04241234567,B".encode(codec)
    data = head + broken + "o\n".encode("utf-16-le")

    error = refused(data)

    assert error.message.startswith("Fila 3: ") and "UTF-16" in error.message


def test_utf16_with_an_odd_last_byte_is_refused():
    """A truncated UTF-16 file is refused rather than read with a replacement character."""
    data = "telefono,nombre\n04141234567,Ana\n".encode("utf-16") + b"\x41"
    assert "UTF-16" in refused(data).message


def test_damaged_utf8_is_refused_instead_of_read_as_windows_1252():
    """Once accents decoded as UTF-8, a bad byte is damage, not a sign of an ANSI file: reading the file as
    Windows-1252 would garble every name."""
    data = "telefono,nombre\n04141234567,José\n04241234567,Bo\n".encode() + b"04161234567,Cy\xff\n"

    error = refused(data)

    assert error.message.startswith("Fila 4: ") and "UTF-8" in error.message


def test_windows_1252_letters_that_pair_up_as_utf8_make_the_file_look_damaged_and_refused():
    """ "Ñ¿" in Windows-1252 is the bytes of one UTF-8 letter: the later "é" then reads as damage, and the file
    is refused with the row to look at (saved again as CSV UTF-8 it is read), never read garbled."""
    data = "telefono,nombre\n04141234567,Ñ¿Que?\n04241234567,José\n".encode("cp1252")

    error = refused(data)

    assert error.message.startswith("Fila 3: ") and "UTF-8" in error.message
    resaved = data.decode("cp1252").encode("utf-8")
    assert [c.params for c in open_csv(io.BytesIO(resaved)).collect().contacts] == [["Ñ¿Que?"], ["José"]]


def test_bytes_windows_1252_does_not_define_are_refused():
    """0x81 is neither UTF-8 nor a Windows-1252 character."""
    data = b"telefono,nombre\n04141234567,Ana\n04241234567,B\x81o\n"
    error = refused(data)
    assert error.message.startswith("Fila 3: ") and "Windows-1252" in error.message


def test_json_strings_with_control_characters_or_lone_surrogates_reject_the_row():
    """JSON can spell what a CSV cannot hold; such a record is rejected with its field, the others kept."""
    records = [
        {"telefono": "04141234567", "nombre": "Ana"},
        {"telefono": "04241234567", "nombre": "B\x00o"},
        {"telefono": "04161234567", "nombre": "\ud800"},
    ]

    result = open_records(records).collect()

    assert [c.row for c in result.contacts] == [1]
    assert [(r.row, "nombre" in r.reason) for r in result.rejected] == [(2, True), (3, True)]


def test_the_caller_stream_stays_open_after_a_zip_is_sniffed():
    """Listing a zip's entries does not close the upload's stream."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("contactos.csv", "telefono\n04141234567\n")
    stream = io.BytesIO(zipped.getvalue())
    with pytest.raises(ContactsError):
        open_csv(stream)
    assert not stream.closed and stream.read(2) == b"PK"
