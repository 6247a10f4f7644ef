"""The console's files and configuration, in process: served at /, under a strict CSP, with no inline code."""

from __future__ import annotations

import re
from dataclasses import replace

from webapi import create_app
from webapi.console import STATIC


def test_the_page_and_its_files_are_served_under_a_csp_without_inline_code(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp
    html = page.get_data(as_text=True)
    # Every script is a file of this origin: no inline script, handler or style attribute.
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/consola/console.js" defer>']
    assert not re.search(r"\son[a-z]+=|\sstyle=", html)
    for name, mimetype in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = client.get(f"/consola/{name}")
        assert asset.status_code == 200 and asset.mimetype == mimetype
        assert asset.headers["Content-Security-Policy"] == csp
    assert client.get("/consola/otro.js").status_code == 404
    assert (STATIC / "index.html").exists()


def test_without_supabase_the_page_offers_only_api_keys(client):
    assert client.get("/consola/config.json").json == {"supabase_url": None, "supabase_anon_key": None}


def test_with_supabase_the_page_gets_the_url_and_anon_key_and_may_call_it(fast_settings, queue, clean_slate):
    settings = replace(
        fast_settings, supabase_url="https://proyecto.supabase.co", supabase_anon_key="anon-key", supabase_key="svc"
    )
    app = create_app({"TESTING": True}, settings=settings, queue=queue)
    try:
        client = app.test_client()
        config = client.get("/consola/config.json").json
        assert config == {"supabase_url": "https://proyecto.supabase.co", "supabase_anon_key": "anon-key"}
        assert "svc" not in client.get("/consola/config.json").get_data(as_text=True)
        csp = client.get("/").headers["Content-Security-Policy"]
        assert "connect-src 'self' https://proyecto.supabase.co;" in csp
    finally:
        app.extensions["campaigns"].close()


def test_api_answers_keep_their_own_csp(client):
    assert client.get("/api/yo").headers["Content-Security-Policy"].startswith("default-src 'none'")
