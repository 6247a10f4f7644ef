"""The demo never starts Flower open: it uses FLOWER_BASIC_AUTH or a generated password only the user can read."""

from __future__ import annotations

import stat

from demo.__main__ import flower_credentials


def test_a_generated_password_is_kept_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    auth, user, where = flower_credentials(tmp_path)
    password = auth.split(":", 1)[1]
    assert user == "demo" and auth.startswith("demo:") and len(password) >= 20
    assert (tmp_path / "flower-password.txt").read_text().strip() == password and where.endswith("flower-password.txt")
    assert stat.S_IMODE((tmp_path / "flower-password.txt").stat().st_mode) == 0o600
    assert flower_credentials(tmp_path)[0] == auth


def test_a_configured_login_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ana:clave-larga")
    assert flower_credentials(tmp_path) == ("ana:clave-larga", "ana", "FLOWER_BASIC_AUTH")
    assert not (tmp_path / "flower-password.txt").exists()
